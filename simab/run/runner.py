"""Running a campaign end to end: the public entry :func:`run_campaign`.

It ties the steps together, each in its own module: the pre-period and its cached logs
(``simab.run.preperiod``), the arms' policies (``simab.run.arm_policies``), the plan of users and
shards (``simab.run.plan``), running the shards (``simab.run.shards``), the truth
(``simab.run.truth``) and the run's summary files (``simab.run.outputs``).  One
:class:`~simab.run.executor.Executor` runs every shard of the run: the pre-period's, the
campaign's and the counterfactual worlds'.  The pre-period is computed once, first, and
passed on: its logs train the arms and give the CUPED covariates.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from simab.errors import SimabError
from simab.eventlog import Manifest, read_table
from simab.progress import progress
from simab.run.arm_policies import prepare_policies
from simab.run.design import interference, interference_info
from simab.run.executor import Executor
from simab.run.global_truth import global_truth, write_items
from simab.run.outputs import run_info, write_run_info
from simab.run.plan import ShardJob
from simab.run.preperiod import covariates, pre_period
from simab.run.shards import execute
from simab.run.truth import exposure_parts, oracle_truth, users_per_arm, write_truth
from simab.simulators.world import World
from simab.spec import CampaignSpec


@dataclass
class RunResult:
    run_dir: Path
    report: Any
    wall_s: float
    exposures: int


def run_campaign(
    spec: CampaignSpec,
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    backend: str = "local",
    resume: bool = False,
    report: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Run a campaign end to end and (by default) write its report; returns the run folder.

    ``resume`` continues the run in ``out`` (refused when its stored spec differs);
    otherwise ``out`` must hold nothing simab did not write, unless ``overwrite`` (which
    still removes only simab's own files): see :mod:`simab.run.folder`."""
    from simab.run import folder as run_folder

    started = time.perf_counter()
    run_dir = Path(out) if out else Path(spec.output) / spec.name
    workers = spec.workers if workers is None else workers
    if workers < 1:
        raise SimabError(f"must be at least 1, got {workers}", key="workers")
    cache = run_folder.cache_dir(spec.training.cache_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SimabError(f"output folder is not writable: {exc.strerror or exc}", source=str(run_dir)) from None
    status_file = run_dir / "run.json"
    if resume and run_folder.check_resume(run_dir, spec):
        status_file.unlink(missing_ok=True)  # the run is incomplete again until it finishes
    else:
        run_folder.prepare_fresh(run_dir, overwrite=overwrite)
    run_folder.write_identity(run_dir, spec)

    world = World.build(spec.world, spec.seed)
    progress(f"campaign {spec.name!r}: world {spec.world.preset} ({spec.world.n_users:,} users), "
             f"{len(spec.arms)} arms, {spec.duration_days:g} days, {spec.shards} shards, {workers} worker(s)")
    arms = list(spec.arms)
    with Executor(workers, backend) as executor:
        progress("pre-period: logging policy over the world (cached per world) ...")
        pre = pre_period(world, cache, executor=executor)
        policies = prepare_policies(spec, world, run_dir, cache, pre)
        manifest = Manifest(run_dir)
        spec_json = spec.model_dump_json()
        jobs = [ShardJob(spec_json, str(run_dir), s, policies, None, "") for s in range(spec.shards)]
        jobs = [j for j in jobs if not (resume and manifest.complete(j.shard))]
        if resume and len(jobs) < spec.shards:
            progress(f"  resume: {spec.shards - len(jobs)} shard(s) already complete")
        for j in jobs:
            manifest.drop(j.shard)
        manifest.save()
        execute(jobs, executor, "campaign", manifest)

        truth = oracle_truth(exposure_parts(run_dir), users_per_arm(run_dir, arms))
        if interference(spec):  # the GTE: the whole market under each arm (replaces the counterfactual worlds)
            truth += global_truth(spec, run_dir, policies, executor, resume)
            write_items(spec, world, run_dir)
        elif spec.truth == "counterfactual":
            for arm in arms:
                sub = f"counterfactual/{arm}"
                (run_dir / sub).mkdir(parents=True, exist_ok=True)
                cf_manifest = Manifest(run_dir / sub)
                cf_jobs = [ShardJob(spec_json, str(run_dir), s, policies, arm, sub) for s in range(spec.shards)]
                cf_jobs = [j for j in cf_jobs if not (resume and cf_manifest.complete(j.shard))]
                execute(cf_jobs, executor, f"counterfactual all-{arm}", cf_manifest)
                n_users = read_table(run_dir / sub, "assignments", ["user"]).num_rows
                truth += oracle_truth(exposure_parts(run_dir / sub), {arm: n_users}, source="counterfactual")
    write_truth(truth, run_dir / "truth.parquet")
    pq.write_table(covariates(pre), run_dir / "covariates.parquet")
    digests = run_folder.file_digests(run_dir)

    wall = time.perf_counter() - started
    n_exp = sum(e["parts"]["exposures"]["rows"] for e in manifest.data["shards"].values())
    compute = {a: sum(v.get("compute_s", {}).get(a, 0.0) for v in manifest.data["shards"].values()) for a in arms}
    info = run_info(spec, wall_s=wall, exposures=n_exp, scoring_s=compute, workers=workers, backend=backend,
                    policies=policies, digests=digests)
    if interference(spec):
        info["interference"] = interference_info(spec)
    write_run_info(run_dir, info)
    rep = None
    if report:
        from simab.reports import analyze, write_report

        rep = analyze(run_dir)
        write_report(rep, run_dir)
    progress(f"simulated in {wall:.1f}s: {n_exp:,} exposures ({n_exp / max(wall, 1e-9):,.0f}/s) -> {run_dir}")
    return RunResult(run_dir, rep, wall, n_exp)
