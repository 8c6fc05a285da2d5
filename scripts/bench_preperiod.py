"""Pre-period against the campaign: the cost of recording feature snapshots.

In ONE process, on the default world with ``--users`` users (one shard holding all of
them) over ``--days`` simulated days:

(a) the pre-period, as :func:`simab.run.preperiod.pre_period_shard` runs it: the logging
    policy on the wave engine with ``record_features=True``, then the shard's tables;
(b) the same plan, policy and phase without feature recording (what a campaign shard
    with the logging policy as its only arm costs for the same simulated time).

Each is the simulation's construction + ``run()`` + ``tables()``.  A short warm-up of both
runs first (imports, the world's lazily built tables); then (a) and (b) alternate
``--repeat`` times and the minimum of each is reported with the ratio a / b, in CPU seconds
of this process (single-threaded: less sensitive than wall time to other processes on a
shared machine) and in wall seconds.  Also timed: (a') :func:`~simab.run.preperiod.pre_period_shard`
end to end for the same users (one shard): the world's build, (a), and the sorted Parquet
parts of exposures and features.

    .venv/bin/python scripts/bench_preperiod.py [--users 2000] [--days 1] [--repeat 2] [--profile]

``--profile`` adds a cProfile summary (top 15 by cumulative and by own time) of one more
run of (a), to show where the time of the feature recording goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time

os.environ.setdefault("SIMAB_QUIET", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread, as a pool worker: CPU time is the work done


def simulation(world, users, days: float, record_features: bool):
    """:func:`simab.run.preperiod.logging_simulation` with ``record_features`` chosen."""
    import numpy as np

    from simab.engine.engines import make_simulation
    from simab.engine.shard import ShardPlan
    from simab.policies.simple import LoggingPolicy
    from simab.policies.world_features import feature_spec_of
    from simab.simulators.units import DAY
    from simab.spec import ServingSpec

    world = world.with_phase("preperiod")
    policy = LoggingPolicy({"epsilon": world.spec.logging_epsilon}, feature_spec_of(world.spec))
    t0 = -days * DAY
    n = len(users)
    plan = ShardPlan(0, users, np.zeros(n, np.int64), np.full(n, t0), np.zeros(n), t0, 0.0)
    return make_simulation("wave", world, plan, ["logging"], {"logging": policy}, campaign="preperiod",
                           serving=ServingSpec(), record_features=record_features)


def timed(world, users, days: float, record_features: bool) -> tuple[tuple[float, float], dict]:
    """(CPU s, wall s) of one simulation, and its tables."""
    c0, t0 = time.process_time(), time.perf_counter()
    sim = simulation(world, users, days, record_features)
    sim.run()
    tables = sim.tables()
    return (time.process_time() - c0, time.perf_counter() - t0), tables


def shard_end_to_end(users: int, days: float, seed: int) -> tuple[float, float]:
    from simab.run.preperiod import PrePeriodShard, pre_period_shard
    from simab.simulators.spec import world_spec

    spec = world_spec({"preset": "default", "n_users": users, "pre_period_days": days})
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = time.process_time(), time.perf_counter()
        pre_period_shard(PrePeriodShard(spec, seed, 0, 1, tmp))
        return time.process_time() - c0, time.perf_counter() - t0


def _line(label: str, runs: list[tuple[float, float]]) -> str:
    cpu, wall = (min(r[i] for r in runs) for i in (0, 1))
    return (f"{label:<40} cpu {cpu:6.2f} s  wall {wall:6.2f} s  "
            f"(cpu runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")


def _ratio(x: list[tuple[float, float]], y: list[tuple[float, float]]) -> str:
    return " / ".join(f"{min(r[i] for r in x) / min(r[i] for r in y):.3f}" for i in (0, 1)) + "  (cpu / wall)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()

    import numpy as np

    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    world = World.build(world_spec({"preset": "default", "n_users": a.users}), a.seed)
    users = np.arange(a.users, dtype=np.int64)
    warm = users[: max(1, a.users // 20)]
    timed(world, warm, 0.1, True)
    timed(world, warm, 0.1, False)

    pre, camp, shard = [], [], []
    for _ in range(a.repeat):
        s, tables = timed(world, users, a.days, True)
        pre.append(s)
        s, _ = timed(world, users, a.days, False)
        camp.append(s)
        shard.append(shard_end_to_end(a.users, a.days, a.seed))
    n_exp, n_req = tables["exposures"].num_rows, tables["features"].num_rows
    print(f"default world, {a.users:,} users x {a.days:g} day(s), one shard, wave engine; "
          f"{n_exp:,} exposures, {n_req:,} requests (feature rows); best of {a.repeat}")
    print(_line("(a) pre-period (record_features=True):", pre))
    print(_line("(b) same simulation, no features:", camp))
    print(_line("(a') pre_period_shard end to end:", shard))
    print(f"ratio a / b:  {_ratio(pre, camp)}")
    print(f"ratio a' / b: {_ratio(shard, camp)}")

    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        timed(world, users, a.days, True)
        prof.disable()
        for key in ("cumulative", "tottime"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(15)
            print(f"\n--- cProfile of (a), top 15 by {key} ---")
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip()))


if __name__ == "__main__":
    main()
