"""Running a campaign: pre-period logs, policy training, sharded simulation, truth,
event log and report.

Users are split into ``shards`` by a hash of their id; a shard is a deterministic unit
of work (its own SimPy Environment; every random draw is keyed by user, session or
request), so the event log does not depend on the number of workers or their order.
Shards run in a local process pool (``workers``) or on Ray (``backend="ray"``); each
writes its Parquet parts atomically and is then listed in the manifest; ``resume``
skips listed, intact shards.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simab.assignment import Allocation, buckets
from simab.errors import SimabError
from simab.eventlog import Manifest, read_table, write_part
from simab.simulators import rng
from simab.simulators.world import World
from simab.spec import CampaignSpec

DAY = 86400.0
TABLES = ("exposures", "requests", "assignments", "moveline")


def _progress(msg: str) -> None:
    if os.environ.get("SIMAB_QUIET") != "1":
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pre-period
def _pre_period_shard(world_spec, seed: int, s: int, shards: int, tmp: str) -> int:
    """One shard of the pre-period (users with ``id % shards == s``); writes its exposures
    and features under ``tmp``; returns its number of exposures.  Top-level so that a
    process pool can run it."""
    from simab.campaign import ShardPlan, ShardSimulation
    from simab.policies.simple import LoggingPolicy

    world = World.build(world_spec, seed).with_phase("preperiod")
    policy = LoggingPolicy({"epsilon": world.spec.logging_epsilon}, world.feature_spec())
    users = np.arange(world.spec.n_users)
    t0 = -world.spec.pre_period_days * DAY

    class _Serving:
        max_batch, max_wait_ms, abandon_after_ms = 256, 5.0, None

    mine = users[users % shards == s]
    plan = ShardPlan(s, mine, np.zeros(len(mine), np.int64), np.full(len(mine), t0), np.zeros(len(mine)), t0, 0.0)
    sim = ShardSimulation(world, plan, ["logging"], {"logging": policy}, campaign="preperiod",
                          serving=_Serving(), record_features=True)
    sim.run()
    pq.write_table(sim.exposures.to_table(), Path(tmp) / f"exposures-{s:03d}.parquet")
    pq.write_table(sim.features.to_table(), Path(tmp) / f"features-{s:03d}.parquet")
    return sim.exposures.rows


def pre_period(world: World, cache_dir: Path, shards: int = 4, workers: int = 1) -> Path:
    """Run the logging policy over [-pre_period_days, 0) and cache its logs (Parquet)
    under ``cache_dir/preperiod-<world fingerprint>``; returns that folder.  Shards are
    pure functions of (world, shard), so ``workers`` processes give the same bytes."""
    out = cache_dir / f"preperiod-{world.fingerprint()}"
    if (out / "COMPLETE").exists():
        return out
    tmp = cache_dir / f".preperiod-{world.fingerprint()}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    args = [(world.spec, world.seed, s, shards, str(tmp)) for s in range(shards)]
    if workers <= 1:
        done = (_pre_period_shard(*a) for a in args)
    else:
        pool = ProcessPoolExecutor(max_workers=min(workers, shards), mp_context=mp.get_context("spawn"))
        done = pool.map(_pre_period_shard, *zip(*args, strict=True))
    try:
        for s, rows in enumerate(done):
            _progress(f"  pre-period shard {s + 1}/{shards}: {rows:,} exposures")
    finally:
        if workers > 1:
            pool.shutdown()
    (tmp / "COMPLETE").write_text(json.dumps({"wall_s": time.perf_counter() - started}))
    if out.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def training_data(world: World, folder: Path):
    """The pre-period log as a ``LogDataset`` (C = 1 rows) split by time into train/val."""
    from simab.simulators.datasets import LogDataset

    exp = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("exposures-*.parquet"))])
    feats = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("features-*.parquet"))])
    names = list(world.scenario_names)
    scen = exp.column("scenario").combine_chunks().cast(pa.string()).to_pylist()
    lookup = {n: i for i, n in enumerate(names)}
    exp = exp.append_column("scenario_idx", pa.array(np.array([lookup[s] for s in scen], np.int64)))
    ds = LogDataset(world, exp, feats)
    return ds.split(0.2)


def covariates(folder: Path) -> pa.Table:
    """Per-user pre-period totals (CUPED covariates)."""
    exp = pa.concat_tables(
        [pq.read_table(p, columns=["user", "clicked", "converted", "dwell_s"]) for p in sorted(folder.glob("exposures-*.parquet"))]
    )
    g = exp.group_by("user").aggregate([("clicked", "count"), ("clicked", "sum"), ("converted", "sum"), ("dwell_s", "sum")])
    return pa.table(
        {
            "user": g.column("user"),
            "pre_exposures": pc.cast(g.column("clicked_count"), pa.float64()),
            "pre_clicks": pc.cast(g.column("clicked_sum"), pa.float64()),
            "pre_conversions": pc.cast(g.column("converted_sum"), pa.float64()),
            "pre_dwell_s": g.column("dwell_s_sum"),
        }
    ).sort_by("user")


# --------------------------------------------------------------------------- policies
def prepare_policies(spec: CampaignSpec, world: World, run_dir: Path, workers: int = 1,
                     cache: Path | None = None) -> dict[str, dict]:
    """Fit (or load from ``cache``, default the spec's cache folder) every arm's policy;
    returns picklable descriptions the shard workers rebuild policies from."""
    from simab.policies.base import make_policy
    from simab.run_folder import cache_dir

    fs = world.feature_spec()
    out, data = {}, None
    cache = cache or cache_dir(spec.training.cache_dir)
    for arm, a in spec.arms.items():
        policy = make_policy(a.policy, a.params, fs, key=f"arms.{arm}.policy")
        if not getattr(policy, "trainable", False):
            out[arm] = {"kind": "fixed", "name": a.policy, "params": dict(a.params)}
            continue
        from simab.policies.checkpoint import load_or_train
        from simab.policies.trainer import TrainerConfig

        if data is None:
            _progress("pre-period: logging policy over the world (cached per world) ...")
            data = training_data(world, pre_period(world, cache, workers=workers))
        t = spec.training
        cfg = TrainerConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, device=t.device,
                            max_steps=t.max_steps, seed=spec.seed)
        _progress(f"policy {arm}: {a.policy} ...")
        policy, metrics, cached = load_or_train(
            cache if t.cache else run_dir / ".models", world.spec_dict(), a.policy, a.params, fs, spec.seed,
            data[0], data[1], cfg,
        )
        ckpt = run_dir / "models" / arm
        from simab.policies.checkpoint import save_checkpoint

        save_checkpoint(policy, ckpt, metrics)
        _progress(f"policy {arm}: {'loaded from cache' if cached else 'trained'}; val auc {metrics.get('auc', float('nan')):.4f}")
        warn_low_auc(f"policy {arm} ({a.policy})", metrics, data[0])
        out[arm] = {"kind": "checkpoint", "name": a.policy, "params": dict(a.params), "dir": str(ckpt),
                    "metrics": metrics}
    return out


def build_policy(desc: dict, world: World):
    from simab.policies.base import make_policy

    if desc["kind"] == "fixed":
        return make_policy(desc["name"], desc["params"], world.feature_spec())
    from simab.policies.checkpoint import load_checkpoint

    p = load_checkpoint(desc["dir"], name=desc["name"], params=None, feature_spec=world.feature_spec())
    if hasattr(p, "to"):
        import torch

        p.to(torch.device("cpu"))
    return p


def warn_low_auc(what: str, metrics: dict, train_data: Any = None) -> None:
    """A validation AUC below 0.5 ranks worse than chance: almost always too little data."""
    auc = metrics.get("auc")
    if auc is not None and auc == auc and auc < 0.5:
        rows = getattr(train_data, "n_rows", None)
        size = f" on {rows:,} training rows" if rows is not None else ""
        print(f"warning: {what}: validation AUC {auc:.3f} < 0.5 (worse than chance){size}; the "
              "pre-period is too small to learn from: raise world.n_users or world.pre_period_days",
              file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- shards
@dataclass(frozen=True)
class ShardJob:
    spec_json: str
    run_dir: str
    shard: int
    policies: dict
    force_arm: str | None  # counterfactual world: every user in this arm
    subdir: str  # "" or "counterfactual/<arm>"


def _campaign_users(spec: CampaignSpec) -> np.ndarray:
    n = spec.users or spec.world.n_users
    return np.arange(min(n, spec.world.n_users), dtype=np.int64)


def shard_of(seed: int, users: np.ndarray, shards: int) -> np.ndarray:
    return (rng.bits(rng.stream_key(seed, "shards"), users) % np.uint64(shards)).astype(np.int64)


def run_shard(job: ShardJob) -> dict:
    """Simulate one shard and write its parts; returns the manifest entry."""
    import torch

    from simab.campaign import ShardPlan, ShardSimulation

    torch.set_num_threads(1)
    spec = CampaignSpec.model_validate_json(job.spec_json)
    world = World.build(spec.world, spec.seed)
    users = _campaign_users(spec)
    mine = users[shard_of(spec.seed, users, spec.shards) == job.shard]
    arms = list(spec.arms)
    salt = spec.salt or spec.name
    b = buckets(salt, mine)
    if job.force_arm is not None:
        arm = np.full(len(mine), arms.index(job.force_arm))
        start = np.zeros(len(mine))
    else:
        arm, start = Allocation.from_spec(spec).assign(b)
    plan = ShardPlan(job.shard, mine, arm, start, b, 0.0, spec.duration_days * DAY)
    policies = {a: build_policy(job.policies[a], world) for a in arms}
    session_arm = None
    if spec.unit == "session" and job.force_arm is None:
        alloc = Allocation.from_spec(spec)

        def session_arm(sid: int) -> int:
            a, _ = alloc.assign(buckets(salt, np.array([sid])))
            return int(a[0]) if a[0] >= 0 else 0

        plan = ShardPlan(job.shard, mine, np.zeros(len(mine), np.int64), np.zeros(len(mine)), b, 0.0, plan.t_end)
    started = time.perf_counter()
    sim = ShardSimulation(world, plan, arms, policies, campaign=spec.name, serving=spec.serving,
                          unit=spec.unit, session_arm=session_arm)
    sim.run()
    out = Path(job.run_dir) / job.subdir if job.subdir else Path(job.run_dir)
    tables = {
        "exposures": sim.exposures.to_table(),
        "requests": sim.requests.to_table(),
        "assignments": sim.assignments_table(),
        "moveline": sim.moveline_log.to_table(),
    }
    parts = {name: write_part(out, name, job.shard, t) for name, t in tables.items()}
    compute = {a: s.compute_s for a, s in sim.services.items()}
    return {"shard": job.shard, "parts": parts, "wall_s": time.perf_counter() - started, "compute_s": compute}


def _execute(jobs: list[ShardJob], workers: int, backend: str, label: str, manifest: Manifest) -> None:
    done = 0
    total = len(jobs)

    def record(entry: dict) -> None:
        nonlocal done
        done += 1
        manifest.add(entry["shard"], entry["parts"], {"wall_s": entry["wall_s"], "compute_s": entry["compute_s"]})
        rows = entry["parts"]["exposures"]["rows"]
        _progress(f"  {label}: shard {done}/{total} done ({rows:,} exposures, {entry['wall_s']:.1f}s)")

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


# --------------------------------------------------------------------------- truth
def oracle_truth(exposures: pa.Table, users_per_arm: dict[str, int], source: str = "oracle") -> list[dict]:
    """Expected metric values per arm from the logged true probabilities:
    E[CTR] = sum p_click / n, E[CTCVR] = sum p_click p_convert / n,
    E[CVR] = sum p_click p_convert / sum p_click, E[stay] = sum p_click E[dwell|click] / users."""
    rows = []
    arm_col = exposures.column("arm").combine_chunks().cast(pa.string())
    for arm, n_users in users_per_arm.items():
        t = exposures.filter(pc.equal(arm_col, arm))
        n = t.num_rows
        if n == 0:
            continue
        pcl = t.column("p_click").to_numpy()
        pcv = t.column("p_convert").to_numpy()
        dw = t.column("expected_dwell_s").to_numpy()
        vals = {
            "ctr": pcl.sum() / n,
            "ctcvr": (pcl * pcv).sum() / n,
            "cvr": (pcl * pcv).sum() / max(pcl.sum(), 1e-300),
            "stay_time": (pcl * dw).sum() / max(n_users, 1),
        }
        if source == "counterfactual":
            vals["exposures_per_user"] = n / max(n_users, 1)
        rows += [{"arm": arm, "metric": m, "value": float(v), "source": source} for m, v in vals.items()]
    return rows


def _users_per_arm(run_dir: Path, arms: list[str]) -> dict[str, int]:
    a = read_table(run_dir, "assignments", ["arm"])
    col = a.column("arm").combine_chunks().cast(pa.string()).to_pylist() if a.num_rows else []
    return {arm: col.count(arm) for arm in arms}


# --------------------------------------------------------------------------- campaign
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
    still removes only simab's own files): see :mod:`simab.run_folder`."""
    from simab import run_folder

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
    _progress(f"campaign {spec.name!r}: world {spec.world.preset} ({spec.world.n_users:,} users), "
              f"{len(spec.arms)} arms, {spec.duration_days:g} days, {spec.shards} shards, {workers} worker(s)")
    policies = prepare_policies(spec, world, run_dir, workers, cache)
    manifest = Manifest(run_dir)
    spec_json = spec.model_dump_json()
    jobs = [ShardJob(spec_json, str(run_dir), s, policies, None, "") for s in range(spec.shards)]
    jobs = [j for j in jobs if not (resume and manifest.complete(j.shard))]
    if resume and len(jobs) < spec.shards:
        _progress(f"  resume: {spec.shards - len(jobs)} shard(s) already complete")
    for j in jobs:
        manifest.drop(j.shard)
    manifest.save()
    _execute(jobs, workers, backend, "campaign", manifest)

    arms = list(spec.arms)
    exposures = read_table(run_dir, "exposures")
    truth = oracle_truth(exposures, _users_per_arm(run_dir, arms))
    if spec.truth == "counterfactual":
        for arm in arms:
            sub = f"counterfactual/{arm}"
            cf_manifest = Manifest(run_dir / sub) if (run_dir / sub).exists() else None
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
            cf_manifest = Manifest(run_dir / sub)
            cf_jobs = [ShardJob(spec_json, str(run_dir), s, policies, arm, sub) for s in range(spec.shards)]
            cf_jobs = [j for j in cf_jobs if not (resume and cf_manifest.complete(j.shard))]
            _execute(cf_jobs, workers, backend, f"counterfactual all-{arm}", cf_manifest)
            cf = read_table(run_dir / sub, "exposures")
            n_users = read_table(run_dir / sub, "assignments", ["user"]).num_rows
            truth += oracle_truth(cf, {arm: n_users}, source="counterfactual")
    pq.write_table(pa.Table.from_pylist(truth, schema=pa.schema(
        [("arm", pa.string()), ("metric", pa.string()), ("value", pa.float64()), ("source", pa.string())])),
        run_dir / "truth.parquet")
    if spec.world.pre_period_days > 0:
        cov_dir = pre_period(world, cache, workers=workers)
        pq.write_table(covariates(cov_dir), run_dir / "covariates.parquet")
    digests = run_folder.file_digests(run_dir)

    wall = time.perf_counter() - started
    n_exp = exposures.num_rows
    compute = {a: sum(v.get("compute_s", {}).get(a, 0.0) for v in manifest.data["shards"].values()) for a in arms}
    run_info = {
        "campaign": spec.name,
        "seed": spec.seed,
        "alpha": spec.alpha,
        "control": spec.control_arm,
        "arms": {a: {"policy": s.policy, "share": s.share, "params": s.params} for a, s in spec.arms.items()},
        "metrics": spec.metrics,
        "duration_days": spec.duration_days,
        "unit": spec.unit,
        "truth": spec.truth,
        "ramps": [r.model_dump() for r in spec.ramps],
        "runtime": {"wall_s": wall, "exposures_per_s": n_exp / max(wall, 1e-9), "scoring_s": compute,
                    "workers": workers, "backend": backend},
        "training": {a: p.get("metrics") for a, p in policies.items() if p["kind"] == "checkpoint"},
        "digests": digests,
        "status": "complete",
    }
    rep = None
    if report:
        from simab.reports import analyze, write_report

        tmp_info = dict(run_info)
        (run_dir / "run.json.partial").write_text(json.dumps(tmp_info, indent=1))
        os.replace(run_dir / "run.json.partial", status_file)
        rep = analyze(run_dir)
        write_report(rep, run_dir)
    else:
        (run_dir / "run.json.partial").write_text(json.dumps(run_info, indent=1))
        os.replace(run_dir / "run.json.partial", status_file)
    _progress(f"simulated in {wall:.1f}s: {n_exp:,} exposures ({n_exp / max(wall, 1e-9):,.0f}/s) -> {run_dir}")
    return RunResult(run_dir, rep, wall, n_exp)
