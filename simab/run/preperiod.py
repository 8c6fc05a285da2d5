"""The pre-period: the logging policy (popularity + epsilon exploration, propensities
logged) serves the world over ``[-days, 0)``; its logs are the training data of the
trainable arms and the source of the per-user CUPED covariates.

Users are grouped into shards by the same hash as the campaign's (:func:`shard_of`), their
number a function of the population (:func:`pre_period_shards`).  The cache keeps one part
per shard and table, each sorted by request id (then position), never merged (the merge of
every part in memory was the peak of a 1M-user run), so its bytes do not depend on the
number of workers.  What a user does does not depend on the shard grouping (each draw is
keyed per user and request; serving latency is a per-request model).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simab.progress import progress
from simab.run.executor import Executor, process_memo
from simab.run.plan import shard_of
from simab.simulators.spec import WorldSpec
from simab.simulators.units import DAY
from simab.simulators.world import World
from simab.spec import ServingSpec


def logging_policy(world: World, logging: dict | None = None):
    """The pre-period's logging policy over ``world`` (popularity + epsilon exploration);
    ``logging``: parameters over the world's (``mode``, ``temperature``: see ``LoggingPolicy``)."""
    from simab.policies.simple import LoggingPolicy
    from simab.policies.world_features import feature_spec_of

    return LoggingPolicy({"epsilon": world.spec.logging_epsilon, **(logging or {})}, feature_spec_of(world.spec))


def logging_simulation(world: World, users: np.ndarray, days: float, shard: int = 0, engine: str = "wave",
                       logging: dict | None = None, ope_recorder=None):
    """A shard simulation (not yet run) of the logging policy over ``[-days, 0)`` for
    ``users`` (sorted global ids) in the pre-period phase of ``world``, recording each
    request's feature snapshot.  ``logging``: parameters of the logging policy
    (:func:`logging_policy`; off-policy evaluation's opt-in, the pre-period itself never
    passes any), ``ope_recorder`` its recorder of every served batch."""
    from simab.engine.engines import make_simulation
    from simab.engine.shard import ShardPlan

    world = world.with_phase("preperiod")
    policy = logging_policy(world, logging)
    t0 = -days * DAY
    n = len(users)
    plan = ShardPlan(shard, users, np.zeros(n, np.int64), np.full(n, t0), np.zeros(n), t0, 0.0)
    return make_simulation(engine, world, plan, ["logging"], {"logging": policy}, campaign="preperiod",
                           serving=ServingSpec(), record_features=True,  # the default settings: no abandonment
                           ope_recorder=ope_recorder)


def pre_period_users(world: World, shard: int, shards: int) -> np.ndarray:
    """The users of pre-period shard ``shard`` (hashed, as the campaign's shards)."""
    users = np.arange(world.spec.n_users, dtype=np.int64)
    return users[shard_of(world.seed, users, shards) == shard]


@dataclass(frozen=True)
class PrePeriodShard:
    """One shard of the pre-period: ``shard`` of ``shards``, written under ``tmp``."""

    world_spec: WorldSpec
    seed: int
    shard: int
    shards: int
    tmp: str


def pre_period_shard(job: PrePeriodShard) -> int:
    """One shard of the pre-period; writes its exposures and features under ``job.tmp``;
    returns its number of exposures.  Top-level so that a process pool can run it."""
    world = process_memo(("world", job.world_spec.model_dump_json(), job.seed),
                         lambda: World.build(job.world_spec, job.seed))
    s = job.shard
    sim = logging_simulation(world, pre_period_users(world, s, job.shards), world.spec.pre_period_days, s)
    sim.run()
    tables = sim.tables()
    # each part sorted by request id (then position): its bytes do not depend on the order in
    # which the engine served the shard's requests, and a user's rows are contiguous (the
    # shard's logs lay the features out in request order already)
    pq.write_table(tables["exposures"].sort_by([("request", "ascending"), ("position", "ascending")]),
                   Path(job.tmp) / f"exposures-{s:03d}.parquet")
    pq.write_table(tables["features"], Path(job.tmp) / f"features-{s:03d}.parquet")
    return tables["exposures"].num_rows


#: Users per pre-period shard at most (a shard's memory grows with its users).
PRE_PERIOD_SHARD_USERS = 100_000


def pre_period_shards(n_users: int) -> int:
    """Shards of the pre-period: at least 4, and at most ``PRE_PERIOD_SHARD_USERS`` users each."""
    return max(4, -(-n_users // PRE_PERIOD_SHARD_USERS))


def pre_period(world: World, cache_dir: Path, shards: int | None = None, workers: int = 1,
               executor: Executor | None = None) -> Path:
    """Run the logging policy over [-pre_period_days, 0) and cache its logs (Parquet)
    under ``cache_dir/preperiod-<world fingerprint>``; returns that folder.  Shards are
    pure functions of (world, shard), and what a user does does not depend on its shard, so
    any number of workers gives the same bytes (``shards``: default
    :func:`pre_period_shards`).  The shards run on ``executor`` (a campaign passes its
    own), else on a new one of ``workers`` processes."""
    shards = pre_period_shards(world.spec.n_users) if shards is None else shards
    name = f"preperiod-{world.fingerprint()}"
    out = cache_dir / name
    if (out / "COMPLETE").exists():
        return out
    tmp = cache_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [PrePeriodShard(world.spec, world.seed, s, shards, str(tmp)) for s in range(shards)]
    with Executor(min(workers, shards)) if executor is None else contextlib.nullcontext(executor) as ex:
        for done, (_, rows) in enumerate(ex.map(pre_period_shard, jobs), start=1):
            progress(f"  pre-period: shard {done}/{shards} done ({rows:,} exposures)")
    (tmp / "COMPLETE").write_text(json.dumps({"wall_s": time.perf_counter() - started}))
    if out.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def training_data(world: World, folder: Path):
    """The pre-period log as a ``LogDataset`` (C = 1 rows) split by time into train/val."""
    from simab.policies.log_dataset import LogDataset

    exp = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("exposures-*.parquet"))])
    feats = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("features-*.parquet"))])
    names = list(world.scenario_names)
    scen = exp.column("scenario").combine_chunks().cast(pa.string()).to_pylist()
    lookup = {n: i for i, n in enumerate(names)}
    exp = exp.append_column("scenario_idx", pa.array(np.array([lookup[s] for s in scen], np.int64)))
    ds = LogDataset(world, exp, feats)
    return ds.split(0.2)


def covariates(folder: Path) -> pa.Table:
    """Per-user pre-period totals (CUPED covariates).  Grouped on one thread: each user's
    sums then add the rows in file order whatever the thread scheduling."""
    exp = pa.concat_tables(
        [pq.read_table(p, columns=["user", "clicked", "converted", "dwell_s"]) for p in sorted(folder.glob("exposures-*.parquet"))]
    )
    g = exp.group_by("user", use_threads=False).aggregate(
        [("clicked", "count"), ("clicked", "sum"), ("converted", "sum"), ("dwell_s", "sum")])
    return pa.table(
        {
            "user": g.column("user"),
            "pre_exposures": pc.cast(g.column("clicked_count"), pa.float64()),
            "pre_clicks": pc.cast(g.column("clicked_sum"), pa.float64()),
            "pre_conversions": pc.cast(g.column("converted_sum"), pa.float64()),
            "pre_dwell_s": g.column("dwell_s_sum"),
        }
    ).sort_by("user")
