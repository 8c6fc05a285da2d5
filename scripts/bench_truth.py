"""The cost of the counterfactual truth (issue #27): wall time of ``simab run`` with
``truth = "counterfactual"`` (the default) against ``truth = "oracle"`` (the realised-group
rows only) on the same campaign, in one process, runs alternating so that a change in the
machine's load hits both.  The pre-period is computed once before the timed runs (it is
cached by world and shared by both).

    python scripts/bench_truth.py                       # the default campaign
    python scripts/bench_truth.py --users 100000 --days 1 --repeats 1

Prints one line per run and the ratio of the mean wall times (counterfactual / oracle).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from simab.run.runner import run_campaign
from simab.spec import load_campaign


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=None, help="world.n_users (default: the default campaign's)")
    ap.add_argument("--days", type=float, default=None, help="duration_days (default: the default campaign's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pre-period-days", type=float, default=None)
    args = ap.parse_args()
    os.environ.setdefault("SIMAB_QUIET", "1")
    over: dict = {}
    world = {}
    if args.users:
        world["n_users"] = args.users
    if args.pre_period_days:
        world["pre_period_days"] = args.pre_period_days
    if world:
        over["world"] = world
    if args.days:
        over["duration_days"] = args.days
    tmp = Path(tempfile.mkdtemp(prefix="bench-truth-"))
    walls: dict[str, list[float]] = {"oracle": [], "counterfactual": []}
    try:
        run_campaign(load_campaign(overrides={**over, "truth": "oracle"}), out=tmp / "warm", workers=args.workers)
        for r in range(args.repeats):
            for truth in ("counterfactual", "oracle") if r % 2 == 0 else ("oracle", "counterfactual"):
                spec = load_campaign(overrides={**over, "truth": truth})
                started = time.perf_counter()
                res = run_campaign(spec, out=tmp / f"{truth}-{r}", workers=args.workers)
                wall = time.perf_counter() - started
                walls[truth].append(wall)
                print(f"{truth:15s} run {r}: {wall:7.1f} s wall (simulation {res.wall_s:.1f} s, "
                      f"{res.exposures:,} exposures)", flush=True)
                shutil.rmtree(tmp / f"{truth}-{r}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mean = {k: sum(v) / len(v) for k, v in walls.items()}
    print(f"mean wall: counterfactual {mean['counterfactual']:.1f} s, oracle {mean['oracle']:.1f} s; "
          f"ratio {mean['counterfactual'] / mean['oracle']:.2f}x (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
