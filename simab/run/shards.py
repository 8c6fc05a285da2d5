"""Running shards: one shard is a deterministic unit of work (its own SimPy Environment;
every random draw is keyed by user, session or request), run by the run's
:class:`~simab.run.executor.Executor` (in this process, a local process pool or Ray); each
streams its Parquet parts through a :class:`~simab.eventlog.ShardSink`, puts them in place
atomically when it ends, and is then listed in the manifest."""

from __future__ import annotations

import json
import time
from pathlib import Path

from simab.eventlog import Manifest, PartWriter, ShardSink
from simab.progress import progress
from simab.run.arm_policies import build_policy
from simab.run.design import shard_setup
from simab.run.executor import Executor, process_memo
from simab.run.plan import ShardJob
from simab.simulators.world import World
from simab.spec import CampaignSpec


def shard_context(spec: CampaignSpec, policies: dict[str, dict]) -> tuple[World, dict]:
    """The world and every arm's policy a shard of ``spec`` runs with, built once per
    process for the run (:func:`~simab.run.executor.process_memo`): a campaign's shards
    and its counterfactual shards share them.  Policies keep no state between requests
    (a neural one scores in eval mode), so sharing them leaves every shard's bytes as they
    were."""
    key = ("shard", spec.world.model_dump_json(), spec.seed, json.dumps(policies, sort_keys=True))

    def build() -> tuple[World, dict]:
        world = World.build(spec.world, spec.seed)
        return world, {a: build_policy(policies[a], world) for a in spec.arms}

    return process_memo(key, build)


def run_shard(job: ShardJob) -> dict:
    """Simulate one shard and write its parts; returns the manifest entry."""
    import torch

    from simab.engine.engines import make_simulation

    torch.set_num_threads(1)
    spec = CampaignSpec.model_validate_json(job.spec_json)
    world, policies = shard_context(spec, job.policies)
    arms = list(spec.arms)
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
        table = setup.market.table(job.shard)
        with PartWriter(out, "market", job.shard, table.schema) as part:
            part.write(table)
            parts["market"] = part.close()
    compute = {a: s.compute_s for a, s in sim.services.items()}
    score = {a: s.score_s for a, s in sim.services.items()}
    entry = {"shard": job.shard, "parts": parts, "wall_s": time.perf_counter() - started, "compute_s": compute,
             "score_s": score}
    if job.counterfactual:  # the same world, policies and plan: run/truth.py
        from simab.run.truth import shard_counterfactual

        entry["truth"] = shard_counterfactual(spec, world, setup.plan, policies, job.policies, out)
        entry["wall_s"] = time.perf_counter() - started
    return entry


def execute(jobs: list[ShardJob], executor: Executor, label: str, manifest: Manifest) -> None:
    """Run ``jobs`` on ``executor`` and record each finished shard in ``manifest``."""
    for done, (_, entry) in enumerate(executor.map(run_shard, jobs), start=1):
        manifest.add(entry["shard"], entry["parts"], {k: entry[k] for k in ("wall_s", "compute_s", "score_s", "truth")
                                                      if k in entry})
        rows = entry["parts"]["exposures"]["rows"]
        progress(f"  {label}: shard {done}/{len(jobs)} done ({rows:,} exposures, {entry['wall_s']:.1f}s)")
