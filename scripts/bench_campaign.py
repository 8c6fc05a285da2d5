"""Campaign benchmark: harness overhead, exposures/s, and 1 vs 2 workers.

harness overhead = wall time of the simulation phase (all shards) / time spent inside the
arms' servers building feature batches and scoring them (the "bare batched scoring" of
exactly the requests the campaign served, at the wave engine's batches, measured in the
same process: ``score_s`` in the manifest).

    .venv/bin/python scripts/bench_campaign.py [--users 2000] [--days 1] [--policies popularity,din]
        [--no-two-workers]

--no-two-workers skips the closing 2-worker run (so the whole command stays on one core).

Figures go to stdout as a Markdown table (copy into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SIMAB_QUIET", "1")


def one(policy: str, users: int, days: float, workers: int, cache: str, out: Path, chunk: int | None = None) -> dict:
    import simab

    arms = {"control": {"policy": policy, "share": 0.5}, "treatment": {"policy": policy, "share": 0.5}}
    spec = simab.load_campaign(overrides={
        "name": f"bench-{policy}", "duration_days": days, "shards": 4, "arms": arms,
        "world": {"n_users": users}, "training": {"cache_dir": cache, "epochs": 1, "max_steps": 200},
        **({"serving": {"max_batch": chunk}} if chunk else {}),
    })
    t0 = time.perf_counter()
    res = simab.run_campaign(spec, out=out, workers=workers, report=False)
    wall = time.perf_counter() - t0
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    shard_wall = sum(s["wall_s"] for s in manifest["shards"].values())
    scoring = sum(sum(s["score_s"].values()) for s in manifest["shards"].values())
    return {"policy": policy, "users": users, "workers": workers, "exposures": res.exposures, "wall_s": wall,
            "shard_wall_s": shard_wall, "scoring_s": scoring, "overhead": shard_wall / max(scoring, 1e-9),
            "exposures_per_s": res.exposures / max(shard_wall, 1e-9)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--policies", default="popularity,din")
    ap.add_argument("--no-two-workers", action="store_true", help="skip the 2-worker run (one-core measurement)")
    ap.add_argument("--chunk", type=int, nargs="+", default=[None],
                    help="serving.max_batch values (rows per neural scoring call) to measure (default: the spec's)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path("runs/.cache").resolve())
        rows = []
        for p in a.policies.split(","):
            one(p, a.users, a.days, 1, cache, Path(tmp) / f"warm-{p}")  # warm: pre-period + training cached
            for c in a.chunk:
                rows.append({**one(p, a.users, a.days, 1, cache, Path(tmp) / f"{p}-1-{c}", c), "chunk": c or "spec"})
        if not a.no_two_workers:
            rows.append(one(a.policies.split(",")[0], a.users, a.days, 2, cache, Path(tmp) / "w2"))
    print("| policy | chunk | users | workers | exposures | simulation s (sum over shards) | scoring s | overhead | "
          "exposures/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['policy']} | {r.get('chunk', 'spec')} | {r['users']} | {r['workers']} | {r['exposures']:,} | "
              f"{r['shard_wall_s']:.1f} | "
              f"{r['scoring_s']:.1f} | {r['overhead']:.2f} | {r['exposures_per_s']:,.0f} |")
    rss = f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    if a.no_two_workers:
        print(f"\n{rss}")
        return
    w1 = next(r for r in rows if r["workers"] == 1 and r["policy"] == rows[-1]["policy"])
    print(f"\n1 vs 2 workers ({w1['policy']}): wall {w1['wall_s']:.1f}s vs {rows[-1]['wall_s']:.1f}s; {rss}")


if __name__ == "__main__":
    main()
