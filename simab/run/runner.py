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

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from simab.errors import SimabError
from simab.eventlog import Manifest
from simab.progress import progress
from simab.run.arm_policies import prepare_policies
from simab.run.design import counterfactual_passes, interference, interference_info
from simab.run.executor import Executor
from simab.run.global_truth import global_truth, write_items
from simab.run.identity import check_resume, identity_text
from simab.run.outputs import run_info, write_report_files
from simab.run.plan import ShardJob
from simab.run.preperiod import covariates, pre_period
from simab.run.shards import execute
from simab.run.truth import campaign_truth, write_truth
from simab.simulators.world import World
from simab.spec import CampaignSpec

#: workers of one command: more would only wait (shards and runs are the units of work)
MAX_WORKERS = 1024


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
    if not 1 <= workers <= MAX_WORKERS:
        raise SimabError(f"must be in [1, {MAX_WORKERS}], got {workers}", key="workers")
    cache = run_folder.cache_dir(spec.training.cache_dir)
    plan = run_folder.campaign_plan(spec)
    resume_if = (lambda: check_resume(run_dir, spec)) if resume else None
    with run_folder.output_folder(run_dir, kind="campaign", command="simab run", plan=plan, overwrite=overwrite,
                                  resume_if=resume_if, keep_on_failure=True) as manifest:
        return _run_in(spec, run_dir, manifest, started=started, workers=workers, backend=backend,
                       cache=cache, report=report)


def _run_in(spec: CampaignSpec, run_dir: Path, manifest: Manifest, *, started: float, workers: int, backend: str,
            cache: Path, report: bool) -> RunResult:
    """The run itself, in a folder :func:`run_campaign` holds; ``manifest`` is its record,
    which lists each file once it is finished."""
    from simab.run import folder as run_folder

    resumed = "spec.json" in manifest.files
    for rel in ("run.json", *run_folder.REPORT_FILES):  # the run is incomplete again until it finishes
        manifest.forget(rel)
        (run_dir / rel).unlink(missing_ok=True)
    manifest.save()
    manifest.write_file("spec.json", identity_text(spec))

    world = World.build(spec.world, spec.seed)
    progress(f"campaign {spec.name!r}: world {spec.world.preset} ({spec.world.n_users:,} users), "
             f"{len(spec.arms)} arms, {spec.duration_days:g} days, {spec.shards} shards, {workers} worker(s)")
    arms = list(spec.arms)
    with Executor(workers, backend) as executor:
        progress("pre-period: logging policy over the world (cached per world) ...")
        pre = pre_period(world, cache, executor=executor)
        policies = prepare_policies(spec, world, run_dir, cache, pre)
        run_folder.list_checkpoints(manifest, policies)
        manifest.save()
        spec_json = spec.model_dump_json()
        jobs = [ShardJob(spec_json, str(run_dir), s, policies, None, "", counterfactual_passes(spec))
                for s in range(spec.shards)]
        jobs = [j for j in jobs if not (resumed and manifest.complete(j.shard))]
        if resumed and len(jobs) < spec.shards:
            progress(f"  resume: {spec.shards - len(jobs)} shard(s) already complete")
        for j in jobs:
            manifest.drop(j.shard)
        manifest.save()
        execute(jobs, executor, "campaign", manifest)
        manifest.save()
        global_rows = []
        if interference(spec):  # the GTE: the whole market under each arm (in place of the counterfactual passes)
            global_rows = global_truth(spec, run_dir, policies, executor, resumed)
    write_truth(campaign_truth(spec, run_dir, manifest.data["shards"], policies) + global_rows,
                run_dir / "truth.parquet")
    manifest.add_file("truth.parquet")
    if interference(spec):
        for name in write_items(spec, world, run_dir):
            manifest.add_file(name)
    pq.write_table(covariates(pre), run_dir / "covariates.parquet")
    manifest.add_file("covariates.parquet")
    manifest.save()

    wall = time.perf_counter() - started
    n_exp = sum(e["parts"]["exposures"]["rows"] for e in manifest.data["shards"].values())
    compute = {a: sum(v.get("compute_s", {}).get(a, 0.0) for v in manifest.data["shards"].values()) for a in arms}
    info = run_info(spec, wall_s=wall, exposures=n_exp, scoring_s=compute, workers=workers, backend=backend,
                    policies=policies)
    if interference(spec):
        info["interference"] = interference_info(spec)
    manifest.write_file("run.json", json.dumps(info, indent=1))
    rep = None
    if report:
        from simab.reports import analyze

        rep = analyze(run_dir)
        write_report_files(rep, manifest)
    progress(f"simulated in {wall:.1f}s: {n_exp:,} exposures ({n_exp / max(wall, 1e-9):,.0f}/s) -> {run_dir}")
    return RunResult(run_dir, rep, wall, n_exp)
