"""Every arm's ranking policy: fitted on the pre-period (or loaded from the checkpoint
cache) once per run, described in a picklable form that each shard worker rebuilds the
policy from (once per process and run: ``simab.run.shards.shard_context``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from simab.policies.world_features import feature_spec_of
from simab.progress import progress
from simab.run.preperiod import pre_period, training_data
from simab.simulators.world import World
from simab.spec import CampaignSpec


def prepare_policies(spec: CampaignSpec, world: World, run_dir: Path, cache: Path,
                     pre: Path | None = None, workers: int = 1) -> dict[str, dict]:
    """Fit (or load from the checkpoint cache in ``cache``) every arm's policy; returns
    picklable descriptions the shard workers rebuild policies from (:func:`build_policy`).
    ``pre``: the pre-period's folder (:func:`~simab.run.preperiod.pre_period`), which a
    campaign computes once and passes on; without it the pre-period is computed here (on
    ``workers`` processes) when an arm trains.  A fixed policy is not built here: the
    spec's validation built it once already, and the shards build what they serve."""
    from simab.policies.base import trains

    fs = feature_spec_of(world.spec)
    out, data = {}, None
    if spec.serving.device != "cpu":  # refused here, before any shard starts, on a machine without it
        from simab.policies.trainer import resolve_device

        resolve_device(spec.serving.device, key="serving.device")
    for arm, a in spec.arms.items():
        if not trains(a.policy, a.params, fs, key=f"arms.{arm}.policy"):
            out[arm] = {"kind": "fixed", "name": a.policy, "params": dict(a.params)}
            continue
        from simab.policies.checkpoint import load_or_train
        from simab.policies.trainer import TrainerConfig

        if data is None:
            if pre is None:
                progress("pre-period: logging policy over the world (cached per world) ...")
                pre = pre_period(world, cache, workers=workers)
            data = training_data(world, pre)
        t = spec.training
        cfg = TrainerConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, device=t.device,
                            max_steps=t.max_steps, monitor=t.monitor, patience=t.patience, seed=spec.seed)
        progress(f"policy {arm}: {a.policy} ...")
        policy, metrics, cached = load_or_train(
            cache if t.cache else run_dir / ".models", world.spec_dict(), a.policy, a.params, fs, spec.seed,
            data[0], data[1], cfg,
        )
        ckpt = run_dir / "models" / arm
        from simab.policies.checkpoint import save_checkpoint

        save_checkpoint(policy, ckpt, metrics)
        progress(f"policy {arm}: {'loaded from cache' if cached else 'trained'}; val auc {metrics.get('auc', float('nan')):.4f}")
        warn_low_auc(f"policy {arm} ({a.policy})", metrics, data[0])
        out[arm] = {"kind": "checkpoint", "name": a.policy, "params": dict(a.params), "dir": str(ckpt),
                    "metrics": metrics}
    return out


def build_policy(desc: dict, world: World):
    """The policy a :func:`prepare_policies` description stands for (on the CPU)."""
    from simab.policies.base import make_policy

    if desc["kind"] == "fixed":
        return make_policy(desc["name"], desc["params"], feature_spec_of(world.spec))
    from simab.policies.checkpoint import load_checkpoint

    p = load_checkpoint(desc["dir"], name=desc["name"], params=None, feature_spec=feature_spec_of(world.spec))
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
