"""Wave engine throughput: the default campaign against the reference engine and SARDINE.

In one command (so every figure comes from the same machine state):

1. the default campaign (popularity vs oracle, ``simab/specs/default.toml``) with
   ``--users`` users for ``--days`` days on the wave engine, 1 worker and 2 workers;
2. the same campaign on the reference engine (one SimPy process per user, each request
   served alone) with ``--reference-users`` users and 1 worker;
3. SARDINE's ``SlateTopK-Bored`` (slate 10, random policy) through ``scripts/peer_sardine.py``
   with the peer venv's python (``--sardine``; skipped when that python does not exist).

exposures/s = exposures / wall time of the campaign's shards phase (the run's wall time
minus the truth, covariate and bookkeeping steps is not separated: the run's whole wall
time is used, a lower bound on the engine's throughput), measured after a warm-up run that
fills the pre-period cache.

    .venv/bin/python scripts/bench_wave.py --users 100000 --days 1 --sardine /tmp/sardine-venv/bin/python

Figures go to stdout as a Markdown table (copy into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SIMAB_QUIET", "1")


def campaign(users: int, days: float, workers: int, engine: str, cache: str, out: Path, shards: int,
             calibration: str = "realistic") -> dict:
    import simab

    spec = simab.load_campaign(overrides={
        "duration_days": days, "shards": shards, "engine": engine,
        "world": {"preset": "default", "calibration": calibration, "n_users": users, "pre_period_days": 0.05},
        "training": {"cache_dir": cache},
    })
    t0 = time.perf_counter()
    res = simab.run_campaign(spec, out=out, workers=workers, report=False)
    wall = time.perf_counter() - t0
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    shard_wall = sum(s["wall_s"] for s in manifest["shards"].values())
    return {"engine": engine, "users": users, "days": days, "workers": workers, "shards": shards,
            "exposures": res.exposures, "wall_s": wall, "shard_wall_s": shard_wall,
            "exposures_per_s": res.exposures / wall, "exposures_per_shard_s": res.exposures / max(shard_wall, 1e-9)}


def sardine(python: str, steps: int) -> dict | None:
    if not Path(python).exists():
        return None
    script = Path(__file__).with_name("peer_sardine.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([python, str(script), "--steps", str(steps)], capture_output=True, text=True, env=env,
                         check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--reference-users", type=int, default=2_000)
    ap.add_argument("--sardine", default="/tmp/sardine-venv/bin/python")
    ap.add_argument("--sardine-steps", type=int, default=100_000)
    ap.add_argument("--calibration", default="realistic", choices=("realistic", "dense"),
                    help="the default world's calibration (docs/world.md)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")
        campaign(a.reference_users, 0.05, 1, "wave", cache, Path(tmp) / "warm", a.shards, a.calibration)  # imports, caches
        rows.append(campaign(a.reference_users, a.days, 1, "reference", cache, Path(tmp) / "ref", a.shards, a.calibration))
        rows.append(campaign(a.reference_users, a.days, 1, "wave", cache, Path(tmp) / "wave-small", a.shards, a.calibration))
        for w in (1, 2):
            rows.append(campaign(a.users, a.days, w, "wave", cache, Path(tmp) / f"wave-{w}", a.shards, a.calibration))
    peer = sardine(a.sardine, a.sardine_steps)
    print("| simulator | users x days | workers | exposures | wall s | exposures/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| simab {r['engine']} (default campaign, {r['shards']} shards) | {r['users']:,} x {r['days']:g} | "
              f"{r['workers']} | {r['exposures']:,} | {r['wall_s']:.1f} | {r['exposures_per_s']:,.0f} |")
    if peer:
        print(f"| SARDINE {peer.get('version', '')} `{peer.get('env', '')}` ({peer.get('policy', 'random')}) | - | 1 | "
              f"{peer['exposures']:,} | {peer['wall_s']:.1f} | {peer['exposures_per_s']:,.0f} |")
        best = max(r["exposures_per_s"] for r in rows if r["workers"] == 2)
        one = max(r["exposures_per_s"] for r in rows if r["workers"] == 1 and r["engine"] == "wave")
        print(f"\nwave / SARDINE: {best / peer['exposures_per_s']:.1f}x on 2 workers, "
              f"{one / peer['exposures_per_s']:.1f}x on 1 worker")
    else:
        print(f"\n(SARDINE skipped: {a.sardine} not found)", file=sys.stderr)
    ref = next(r for r in rows if r["engine"] == "reference")
    wav = next(r for r in rows if r["engine"] == "wave" and r["users"] == a.reference_users)
    print(f"wave / reference at {a.reference_users:,} users, 1 worker: "
          f"{wav['exposures_per_s'] / ref['exposures_per_s']:.1f}x")
    print(json.dumps({"rows": rows, "sardine": peer}))


if __name__ == "__main__":
    main()
