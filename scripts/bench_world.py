"""Benchmark: the world's pre-period throughput and peak memory by population size.

    .venv/bin/python scripts/bench_world.py [--preset lifelong] [--users 10000 100000 1000000]
                                            [--sample 500] [--days 0.5]

For each population size, in a fresh subprocess (so peak RSS is that size's alone): build
the world (catalog materialised; users and lifelong histories on demand), run the
logging-policy pre-period over ``--sample`` users for ``--days`` days, then build feature
batches with the full lifelong sequences for all logged rows (what training reads), and
report pre-period samples (exposures) per second, lifelong feature rows per second and peak
RSS.  Finally it runs ``simab world PRESET --users <largest>`` and reports its peak RSS
(the issue's 4 GB budget for the 1M-user ``lifelong`` world with 2,000-event histories).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _child(preset: str, users: int, sample: int, days: float) -> dict:
    import numpy as np

    from simab.cli.world import sample_pre_period
    from simab.policies.world_features import FeatureBuilder, Snapshot
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    t0 = time.perf_counter()
    w = World.build(world_spec({"preset": preset, "n_users": users}), 0)
    build_s = time.perf_counter() - t0
    # spread the sample over the whole id range: the last users cost what the first do
    ids = np.unique(np.linspace(0, users - 1, sample).astype(np.int64))
    log = sample_pre_period(w, ids, days)
    e = log.exposures
    rows = min(e.num_rows, 4096)
    fb = FeatureBuilder(w)
    t1 = time.perf_counter()
    for s in range(0, rows, 512):
        n = min(512, rows - s)
        u = e.column("user").to_numpy()[s : s + n]
        snap = Snapshot(u, e.column("ts").to_numpy()[s : s + n], np.zeros(n, np.int64),
                        {}, {})
        fb.build(snap, e.column("item").to_numpy()[s : s + n, None], ("profile", "target", "lifelong"))
    ll_s = time.perf_counter() - t1
    return {
        "preset": preset, "users": users, "sample": int(len(ids)), "days": days, "build_s": build_s,
        "exposures": e.num_rows, "simulate_s": log.wall_s, "samples_per_s": e.num_rows / log.wall_s,
        "lifelong_rows_per_s": rows / ll_s, "lifelong_len": w.spec.lifelong.source_length,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="lifelong")
    p.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--sample", type=int, default=500)
    p.add_argument("--days", type=float, default=0.5)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(_child(a.preset, a.users[0], a.sample, a.days)))
        return 0
    env = {**os.environ, "SIMAB_QUIET": "1"}
    print(f"| users | sampled users x days | exposures | samples/s | lifelong rows/s ({a.preset}) | build s | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in a.users:
        out = subprocess.run([sys.executable, __file__, "--child", "--preset", a.preset, "--users", str(n),
                              "--sample", str(a.sample), "--days", str(a.days)],
                             check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {n:,} | {r['sample']} x {r['days']:g} | {r['exposures']:,} | {r['samples_per_s']:,.0f} | "
              f"{r['lifelong_rows_per_s']:,.0f} ({r['lifelong_len']:,} events) | {r['build_s']:.2f} | {r['peak_rss_mb']:,.0f} |",
              flush=True)
    n = max(a.users)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["world", a.preset, "--users", str(n), "--sample", str(a.sample), "--days", str(a.days), "--out", tmp]
        code = ("import resource, sys; from simab.cli.main import main; rc = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True,
                             env=env).stdout
        peak_mb = int(out.strip().splitlines()[-1]) / 1024
        print(f"\n`simab world {a.preset} --users {n} --sample {a.sample} --days {a.days:g}`: "
              f"{time.perf_counter() - t0:.1f}s wall, peak RSS {peak_mb:,.0f} MB (budget 4,096 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
