"""Campaign scaling: wall time and peak memory against the number of users and workers.

Every (users, workers) point runs in a fresh child process (so its peak RSS is its own):
the default world with ``--users`` users, popularity against popularity, a pre-period of
``--pre-days`` and a campaign of ``--days`` (the simulated time is fixed, so the work grows
with the population), ``--shards`` shards, no report (the statistics have their
own benchmark).  The child reports the phases' wall times and two peak RSS figures:
its own (the coordinating process) and the largest of its worker processes (with
``--workers 1`` everything runs in the coordinating process).

    .venv/bin/python scripts/bench_scaling.py --users 10000 100000 1000000 --workers 1 2 --days 1

Figures go to stdout as a Markdown table (copy into docs/benchmarks.md).
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
from pathlib import Path

os.environ.setdefault("SIMAB_QUIET", "1")


def child(users: int, workers: int, days: float, shards: int, out: Path, pre_days: float) -> dict:
    import simab
    from simab.run.preperiod import pre_period
    from simab.simulators.world import World

    arms = {"control": {"policy": "popularity", "share": 0.5}, "treatment": {"policy": "popularity", "share": 0.5}}
    spec = simab.load_campaign(overrides={
        "name": "bench-scaling", "duration_days": days, "shards": shards, "arms": arms, "metrics": ["ctr"],
        "world": {"n_users": users, "pre_period_days": pre_days}, "training": {"cache_dir": str(out / "cache")},
    })
    t0 = time.perf_counter()
    pre_period(World.build(spec.world, spec.seed), Path(spec.training.cache_dir), workers=workers)
    t_pre = time.perf_counter() - t0
    res = simab.run_campaign(spec, out=out / "run", workers=workers, report=False)
    t_total = time.perf_counter() - t0
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    shard_wall = sum(s["wall_s"] for s in manifest["shards"].values())
    kib = 1024.0
    return {
        "users": users, "workers": workers, "days": days, "pre_days": pre_days, "shards": shards,
        "exposures": res.exposures,
        "pre_period_s": t_pre, "campaign_s": res.wall_s, "total_s": t_total, "shard_sum_s": shard_wall,
        "exposures_per_s": res.exposures / max(res.wall_s, 1e-9),
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
        "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--days", type=float, default=1.0, help="campaign length (simulated days)")
    ap.add_argument("--pre-days", type=float, default=0.05, help="pre-period length (simulated days; it only "
                    "supplies the CUPED covariates here)")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--child", nargs=3, metavar=("USERS", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        users, workers, out = int(a.child[0]), int(a.child[1]), Path(a.child[2])
        print(json.dumps(child(users, workers, a.days, a.shards, out, a.pre_days)))
        return
    rows = []
    for users in a.users:
        for workers in a.workers:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, __file__, "--days", str(a.days), "--pre-days", str(a.pre_days),
                       "--shards", str(a.shards),
                       "--child", str(users), str(workers), tmp]
                print(f"{users:,} users, {workers} worker(s) ...", file=sys.stderr, flush=True)
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"child failed ({users} users, {workers} workers):\n{done.stderr[-2000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                if a.json:  # after every point: a long sweep cut short keeps what it measured
                    a.json.write_text(json.dumps(rows, indent=1))
                print(f"  {row['total_s']:.1f} s, {row['exposures']:,} exposures", file=sys.stderr, flush=True)
    print(f"default world, popularity vs popularity, pre-period {a.pre_days:g} d + campaign {a.days:g} d, "
          f"{a.shards} campaign shards (pre-period: preperiod.pre_period_shards)\n")
    print("| users | workers | exposures | pre-period s | campaign s | total s | exposures/s (campaign) | "
          "peak RSS main MB | peak RSS largest worker MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        worker = f"{r['rss_worker_mb']:,.0f}" if r["workers"] > 1 else "-"
        print(f"| {r['users']:,} | {r['workers']} | {r['exposures']:,} | {r['pre_period_s']:.1f} | "
              f"{r['campaign_s']:.1f} | {r['total_s']:.1f} | {r['exposures_per_s']:,.0f} | "
              f"{r['rss_main_mb']:,.0f} | {worker} |")


if __name__ == "__main__":
    main()
