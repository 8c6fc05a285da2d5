"""Neural arms at the model's speed (issue #29): bare forward, campaign serving, training.

    .venv/bin/python scripts/bench_neural.py [--quick] --json F [--models din,amen,lcn,ssim]
        [--users 2000] [--days 2] [--train-steps 60] [--epochs 0]

In one process, on one core (``torch.set_num_threads(1)``, one worker), on the default
campaign's world (``simab/specs/default.toml``: the ``default`` preset, seed 7), for each
model:

- ``train_samples_per_s``: training rows per second of the policy's own ``fit`` (pair
  mining, SSIM's three phases and all) for ``--train-steps`` steps of 256 rows, without
  validation passes, timed around the call; ``val_auc`` is the validation AUC of that model
  (a check that the model learned, not a target).  With ``--epochs N`` the model is also
  trained for N full epochs with validation (``epoch_s`` per epoch and ``epoch_val_auc``:
  the per-epoch figures of issue #29's training goal).
- the trained model serves both arms of the default campaign (an A/A of the model, so that
  each arm serves half the users as one arm of an A/B does and an arm's exposures/s is the
  campaign's): ``campaign_candidates_per_s`` = candidates scored (60 a request) / the
  shards' wall time (every cost of the simulation: the users' state machine, retrieval,
  features, scoring, slates, responses, logs, Parquet parts), ``campaign_exposures_per_s``
  = exposures / the same time; ``campaign_scoring_candidates_per_s`` = candidates / the
  servers' scoring time (feature batches and ``score`` calls: ``score_s``).
- ``bare_best_candidates_per_s`` at ``best_batch`` (requests per call): the bare forward
  pass (``policy.score``) over pre-built feature batches of ``--pool`` requests of the
  pre-period (their logged context at request time, the lifelong history where the model
  reads it; 60 random shop items as candidates, the campaign's number) at each batch size
  of ``--batches``; the best of ``--repeat`` passes.  Where the policies package packs
  batches (``simab.policies.packing``: rows sorted by history length, each batch's
  sequences cut to its longest real history), the bare batches are packed the same way:
  the model's own best, the figure the campaign is held to.
- ``popularity_exposures_per_s``: the same campaign with popularity in both arms.

``--quick`` (30 training steps, 512 pool requests, 1,000 users x 1 day) runs in a few
minutes on 2 cores.  Figures go to docs/benchmarks.md ("Neural arms").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SIMAB_QUIET", "1")

N_CANDIDATES = 60


#: CPU seconds of the campaign's shards, of its serving calls and of the scoring within them
CLOCK = {"shard_cpu_s": 0.0, "serve_cpu_s": 0.0, "score_cpu_s": 0.0}


def instrument() -> None:
    """Count the CPU time of every shard, every serving call and every scoring step run in
    this process (wrappers around ``run_shard``, ``Server.serve``, and the three steps of the
    scoring: ``Snapshot.from_state``, ``FeatureBuilder.build``, ``Server._scores``; the
    shards run on one thread here, and CPU time is what other jobs on a shared machine
    disturb least)."""
    from simab.engine import serving
    from simab.policies import world_features
    from simab.run import shards

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            c0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                CLOCK[key] += time.process_time() - c0
        return wrapper

    shards.run_shard = timed(shards.run_shard, "shard_cpu_s")
    serving.Server.serve = timed(serving.Server.serve, "serve_cpu_s")
    serving.Server._scores = timed(serving.Server._scores, "score_cpu_s")
    world_features.FeatureBuilder.build = timed(world_features.FeatureBuilder.build, "score_cpu_s")
    snap = world_features.Snapshot.from_state.__func__
    world_features.Snapshot.from_state = classmethod(timed(snap, "score_cpu_s"))


def campaign(spec_over: dict, out: Path) -> dict:
    """Run a campaign in this process; its exposures, candidates and CPU times."""
    import pyarrow.compute as pc

    import simab
    from simab.eventlog import read_table

    spec = simab.load_campaign(overrides=spec_over)
    CLOCK.update(shard_cpu_s=0.0, serve_cpu_s=0.0, score_cpu_s=0.0)
    res = simab.run_campaign(spec, out=out, workers=1, report=False)
    requests = read_table(res.run_dir, "requests")
    candidates = int(pc.sum(requests.column("n_candidates")).as_py())
    batch = requests.column("batch_size").to_numpy()
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    return {"exposures": res.exposures, "candidates": candidates, "requests": requests.num_rows,
            "shard_cpu_s": CLOCK["shard_cpu_s"], "serve_cpu_s": CLOCK["serve_cpu_s"], "score_cpu_s": CLOCK["score_cpu_s"],
            "shard_wall_s": sum(s["wall_s"] for s in manifest["shards"].values()),
            "mean_call_requests": float(batch.mean())}


def bare_pool(world, data, groups, n: int, seed: int = 0) -> dict:
    """A feature batch of ``n`` pre-period requests (one logged row each: the context
    when the request was served) with ``N_CANDIDATES`` random shop items as candidates."""
    import numpy as np
    import torch

    ds = data
    _, first = np.unique(ds.request, return_index=True)
    rows = np.random.default_rng(seed).permutation(first)[:n]
    batch = ds.batch(np.sort(rows), tuple(g for g in groups if g != "pairs"))
    c = world.catalog
    items = np.random.default_rng(seed + 1).integers(0, c.n_shop_items, (len(rows), N_CANDIDATES))
    target = {"item": items + 1, "item_cat": c.category[items] + 1, "item_shop": c.shop[items] + 1,
              "item_price": c.price[items] + 1, "item_pop": c.logpop[items].astype(np.float32)}
    for k, v in target.items():
        if k in batch:
            batch[k] = torch.from_numpy(np.ascontiguousarray(v))
    for k in ("label", "conv", "position"):
        batch.pop(k, None)
    return batch


def bare(policy, pool: dict, sizes: list[int], repeat: int) -> dict:
    """candidates/s of ``policy.score`` at each batch size (requests per call), under the
    allocator settings a serving process uses (``simab.policies.runtime.keep_heap``, where
    the code has them)."""
    try:  # packing: rows sorted by history length, sequences cut per batch (issue #29)
        from simab.policies.packing import packed_batches
        from simab.policies.runtime import keep_heap

        keep_heap()
    except ImportError:
        packed_batches = None
    B = next(iter(pool.values())).shape[0]
    out = {}
    for b in sizes:
        if packed_batches is not None:
            parts = [part for _, part in packed_batches(pool, b)]
        else:
            parts = [{k: v[lo:lo + b] for k, v in pool.items()} for lo in range(0, B, b)]
        policy.score(parts[0])  # warm-up
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()
            for part in parts:
                policy.score(part)
            best = min(best, time.process_time() - t0)
        out[b] = B * N_CANDIDATES / best
    return out


def serving_figures(policy, name: str, world, train, base: dict, pool_n: int, sizes: list[int], repeat: int,
                    campaign_repeat: int, tmp: Path) -> dict:
    """The bare forward pass at each batch size and the A/A campaign of ``policy``."""
    per_batch = bare(policy, bare_pool(world, train, policy.feature_groups, pool_n), sizes, repeat)
    best = max(per_batch, key=per_batch.get)
    row = {"bare_candidates_per_s": {str(k): v for k, v in per_batch.items()}, "best_batch": best,
           "bare_best_candidates_per_s": per_batch[best]}
    arms = {"control": {"policy": name, "share": 0.5}, "treatment": {"policy": name, "share": 0.5}}
    # the run with the least CPU time of its shards (other jobs on a shared machine only slow a run down)
    c = min((campaign({**base, "arms": arms}, tmp / f"{name}-{i}") for i in range(campaign_repeat)),
            key=lambda run: run["shard_cpu_s"])
    row.update(campaign=c, campaign_candidates_per_s=c["candidates"] / c["score_cpu_s"],
               campaign_serving_candidates_per_s=c["candidates"] / c["serve_cpu_s"],
               campaign_exposures_per_s=c["exposures"] / c["shard_cpu_s"])
    row["campaign_over_bare"] = row["campaign_candidates_per_s"] / row["bare_best_candidates_per_s"]
    print(f"{name}: bare best {row['bare_best_candidates_per_s']:,.0f} candidates/s at {best}; campaign "
          f"{row['campaign_candidates_per_s']:,.0f} candidates/s ({row['campaign_over_bare']:.2f} x bare), "
          f"{row['campaign_exposures_per_s']:,.0f} exposures/s", file=sys.stderr)
    return row


def trained_samples(metrics: dict, batch_size: int) -> int:
    """Rows trained on: every ``train`` record's steps (SSIM's phases included)."""
    n = 0
    for k, v in metrics.items():
        if k == "train" and isinstance(v, dict) and "steps" in v:
            n += v.get("samples", v["steps"] * batch_size)
        elif isinstance(v, dict):
            n += trained_samples(v, batch_size)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", required=True)
    ap.add_argument("--models", default="din,amen,lcn,ssim")
    ap.add_argument("--users", type=int, default=2000, help="world.n_users (default 2000: the default campaign's)")
    ap.add_argument("--days", type=float, default=None, help="campaign days (default 2; --quick 1)")
    ap.add_argument("--train-steps", type=int, default=None, help="training steps (default 100; --quick 30)")
    ap.add_argument("--epochs", type=int, default=0, help="also train N full epochs with validation")
    ap.add_argument("--train-seed", type=int, default=None,
                    help="seed of the --epochs models' weights and batch order (default: the campaign's seed, 7)")
    ap.add_argument("--pool", type=int, default=None, help="requests in the bare pool (default 2048; --quick 512)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    ap.add_argument("--repeat", type=int, default=3, help="bare passes per batch size (the best counts)")
    ap.add_argument("--campaign-repeat", type=int, default=None,
                    help="campaign runs per model, the least CPU time counts (default 2; --quick 1)")
    ap.add_argument("--preset", default="default", help="world preset (default: the default campaign's)")
    ap.add_argument("--train-only", action="store_true", help="training figures only (no bare pass, no campaign)")
    a = ap.parse_args(argv)
    users = a.users
    days = a.days or (1.0 if a.quick else 2.0)
    steps = a.train_steps or (60 if a.quick else 200)
    pool_n = a.pool or (512 if a.quick else 2048)

    import torch

    torch.set_num_threads(1)
    import simab

    instrument()
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # its first use imports torch._dynamo (seconds)
    from simab.policies.base import build_policy
    from simab.policies.checkpoint import load_or_train
    from simab.policies.trainer import TrainerConfig, evaluate
    from simab.policies.world_features import feature_spec_of
    from simab.run.preperiod import pre_period, training_data
    from simab.simulators.world import World

    result: dict = {"models": {}, "config": {"users": users, "days": days, "train_steps": steps, "pool": pool_n,
                                             "batches": a.batches, "quick": a.quick, "machine": platform.machine(),
                                             "torch": torch.__version__}}
    with tempfile.TemporaryDirectory(prefix="bench-neural-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"  # a fresh cache: the models are trained by this code
        base = {"duration_days": days, "world": {"preset": a.preset, "n_users": users}, "shards": 4,
                "training": {"cache_dir": str(cache), "epochs": 1, "max_steps": steps}}
        spec = simab.load_campaign(overrides=base)
        world = World.build(spec.world, spec.seed)
        t0 = time.perf_counter()
        train, val = training_data(world, pre_period(world, cache))
        print(f"pre-period: {train.n_rows:,} training rows, {val.n_rows:,} validation rows "
              f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        if not a.train_only:
            arms = {"control": {"policy": "popularity", "share": 0.5}, "treatment": {"policy": "popularity", "share": 0.5}}
            pop = min((campaign({**base, "arms": arms}, tmp / f"pop-{i}")
                       for i in range(a.campaign_repeat or (1 if a.quick else 2))), key=lambda run: run["shard_cpu_s"])
            result["popularity_exposures_per_s"] = pop["exposures"] / pop["shard_cpu_s"]
            result["popularity"] = pop
            print(f"popularity: {result['popularity_exposures_per_s']:,.0f} exposures/s", file=sys.stderr)
        fs = feature_spec_of(world.spec)
        t = spec.training
        cfg = TrainerConfig(epochs=1, batch_size=t.batch_size, lr=t.lr, device="cpu", max_steps=steps,
                            seed=spec.seed, progress=False)
        for name in a.models.split(","):
            row: dict = {}
            c0 = time.process_time()
            policy, metrics, _ = load_or_train(cache, world.spec_dict(), name, {}, fs, spec.seed, train, None, cfg)
            cpu = time.process_time() - c0
            row["train_samples"] = trained_samples(metrics, cfg.batch_size)
            row["train_cpu_s"] = cpu
            row["train_samples_per_s"] = row["train_samples"] / cpu
            row["val_auc"] = evaluate(policy, val)["auc"]
            print(f"{name}: train {row['train_samples_per_s']:,.0f} samples/s, val auc {row['val_auc']:.4f}",
                  file=sys.stderr)
            if not a.train_only:
                row.update(serving_figures(policy, name, world, train, base, pool_n, a.batches, a.repeat,
                                           a.campaign_repeat or (1 if a.quick else 2), tmp))
            if a.epochs:
                seed = spec.seed if a.train_seed is None else a.train_seed
                model = build_policy(name, {}, fs, seed)
                c0 = time.process_time()
                m = model.fit(train, val, epochs=a.epochs, batch_size=t.batch_size, lr=t.lr, device="cpu",
                              seed=seed, progress=False, patience=a.epochs)
                row["epoch_s"] = (time.process_time() - c0) / a.epochs
                row["epoch_val_auc"] = m.get("auc")
                row["epoch_history"] = m.get("train", {}).get("history")
                print(f"{name}: {a.epochs} epoch(s), {row['epoch_s']:.1f}s an epoch, val auc {row['epoch_val_auc']:.4f}",
                      file=sys.stderr)
            result["models"][name] = row
            Path(a.json).write_text(json.dumps(result, indent=1))
    Path(a.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
