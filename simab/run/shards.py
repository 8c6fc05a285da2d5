"""Running shards: one shard is a deterministic unit of work (its own SimPy Environment;
every random draw is keyed by user, session or request), simulated in this process, a
local process pool (``workers``) or on Ray; each streams its Parquet parts through a
:class:`~simab.eventlog.ShardSink`, puts them in place atomically when it ends, and is
then listed in the manifest."""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from simab.errors import SimabError
from simab.eventlog import Manifest, ShardSink, write_part
from simab.progress import progress
from simab.run.arm_policies import build_policy
from simab.run.design import shard_setup
from simab.run.plan import ShardJob
from simab.simulators.world import World
from simab.spec import CampaignSpec


def run_shard(job: ShardJob) -> dict:
    """Simulate one shard and write its parts; returns the manifest entry."""
    import torch

    from simab.engine.engines import make_simulation

    torch.set_num_threads(1)
    spec = CampaignSpec.model_validate_json(job.spec_json)
    world = World.build(spec.world, spec.seed)
    arms = list(spec.arms)
    policies = {a: build_policy(job.policies[a], world) for a in arms}
    setup = shard_setup(spec, world, job.shard, job.force_arm, policies)  # the design's plan, rankers, market
    started = time.perf_counter()
    out = Path(job.run_dir) / job.subdir if job.subdir else Path(job.run_dir)
    with ShardSink(out, job.shard) as sink:  # a part for each table of the event log
        # the engine writes its logs to the sink per tick once they are large, and at the end
        sim = make_simulation(spec.engine, world, setup.plan, arms, setup.policies, campaign=spec.name,
                              serving=spec.serving, unit=setup.unit, session_arm=setup.session_arm, sink=sink,
                              market=setup.market, market_pools=setup.market_pools)
        sim.run()
        sink.write("assignments", sim.assignments_table())
        parts = sink.close()
    if setup.market is not None:  # each day's spend of every limited item
        parts["market"] = write_part(out, "market", job.shard, setup.market.table(job.shard))
    compute = {a: s.compute_s for a, s in sim.services.items()}
    score = {a: s.score_s for a, s in sim.services.items()}
    return {"shard": job.shard, "parts": parts, "wall_s": time.perf_counter() - started, "compute_s": compute,
            "score_s": score}


def execute(jobs: list[ShardJob], workers: int, backend: str, label: str, manifest: Manifest) -> None:
    """Run ``jobs`` and record each finished shard in ``manifest``."""
    done = 0
    total = len(jobs)

    def record(entry: dict) -> None:
        nonlocal done
        done += 1
        manifest.add(entry["shard"], entry["parts"], {k: entry[k] for k in ("wall_s", "compute_s", "score_s")})
        rows = entry["parts"]["exposures"]["rows"]
        progress(f"  {label}: shard {done}/{total} done ({rows:,} exposures, {entry['wall_s']:.1f}s)")

    if not jobs:
        return
    if backend == "ray":
        ray = start_ray(workers)
        remote = ray.remote(run_shard)
        pending = [remote.remote(j) for j in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            record(ray.get(ready[0]))
        return
    if workers <= 1:
        for j in jobs:
            record(run_shard(j))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        for entry in pool.map(run_shard, jobs):
            record(entry)


def start_ray(workers: int):
    """The ``ray`` module, with a local Ray started on ``workers`` CPUs if none is running."""
    try:
        import ray
    except ImportError:
        raise SimabError("the ray backend needs the 'ray' extra: pip install 'simab[ray]'", key="--backend") from None
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray
