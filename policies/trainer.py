"""Training and offline evaluation of policies.

``fit`` trains a :class:`~simab.policies.neural.NeuralPolicy` with Adam, early
stopping on validation AUC or logloss (``TrainerConfig.monitor``) and best-weights restore; ``evaluate`` computes AUC, GAUC
and logloss overall and per scenario; ``train_policy`` is what ``simab train`` calls.
Determinism: a seed fixes weight initialisation (``base.build_policy``), data order
(``BatchSource.batches(shuffle=True, seed=seed + epoch)``) and dropout; on CPU two
runs with one seed give identical metrics.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from simab.errors import SimabError
from simab.policies.base import BatchSource, Policy, build_policy, has_weights
from simab.policies.checkpoint import save_checkpoint, write_metrics
from simab.policies.features import FeatureSpec
from simab.policies.metrics import offline_metrics
from simab.policies.runtime import heap_temporaries

#: What early stopping can watch on the validation rows, and whether higher is better.
MONITORS = {"auc": True, "logloss": False}


@dataclass(frozen=True)
class TrainerConfig:
    """How to train.  ``max_steps`` (if set) stops mid-epoch; ``patience`` counts
    epochs without a better validation ``monitor`` (``"auc"``: higher is better;
    ``"logloss"``: lower is better) before stopping, from epoch ``min_epochs`` on; the best
    epoch's weights are kept.  ``amp`` only acts on CUDA."""

    epochs: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str = "auto"
    amp: bool = True
    patience: int = 2
    monitor: str = "auc"
    min_epochs: int = 1
    seed: int = 0
    max_steps: int | None = None
    progress: bool = True
    log_every: int = 50
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "patience": self.patience,
                    "min_epochs": self.min_epochs, "log_every": self.log_every, "eval_batch_size": self.eval_batch_size}
        for k, v in positive.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SimabError(f"must be an integer >= 1, got {v!r}", key=f"trainer.{k}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise SimabError(f"must be an integer >= 1 or unset, got {self.max_steps!r}", key="trainer.max_steps")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise SimabError(f"must be a number > 0, got {self.lr!r}", key="trainer.lr")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise SimabError(f"must be a number >= 0, got {self.weight_decay!r}", key="trainer.weight_decay")
        if self.monitor not in MONITORS:
            raise SimabError(f"must be one of {', '.join(MONITORS)}, got {self.monitor!r}", key="trainer.monitor")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise SimabError(f"must be auto, cpu or cuda, got {self.device!r}", key="trainer.device")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TrainerConfig:
        """Build from keyword options; an unknown option is a ``SimabError``."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise SimabError(f"unknown trainer option {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
                             key=f"trainer.{unknown[0]}")
        return cls(**options)

    def result_relevant(self) -> dict:
        """The fields that change the trained weights (the checkpoint cache keys on them)."""
        d = asdict(self)
        for k in ("device", "progress", "log_every", "eval_batch_size"):
            d.pop(k)
        # at their defaults these two leave the key as it was before they existed (cached
        # checkpoints of the default rule stay valid)
        for k, default in (("monitor", "auc"), ("min_epochs", 1)):
            if d[k] == default:
                d.pop(k)
        return d


def resolve_device(device: str, key: str = "trainer.device") -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:n]``; asking for CUDA on a machine
    without it is a ``SimabError`` on ``key``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SimabError(f"device {device!r} requested but no CUDA device is available; use 'cpu'"
                         + (" or 'auto'" if key == "trainer.device" else ""), key=key)
    return torch.device(device)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Ask torch for deterministic kernels while training (restored afterwards)."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _autocast(device: torch.device, amp: bool) -> tuple[contextlib.AbstractContextManager, torch.amp.GradScaler | None]:
    if not (amp and device.type == "cuda"):
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def fit(policy: nn.Module, train: BatchSource, val: BatchSource | None, config: TrainerConfig) -> dict:
    """Train ``policy`` (a ``NeuralPolicy``) in place; return validation metrics (``evaluate``'s dict, for
    the best epoch) plus a ``train`` record (steps, epochs, losses, throughput)."""
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    policy.to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(train.n_rows / config.batch_size)
    higher = MONITORS[config.monitor]
    best_score, best_state, best_epoch, best_val = -math.inf, None, 0, None
    stale, step, epoch, samples, history, stopped_by = 0, 0, 0, 0, [], "epochs"
    start = time.perf_counter()
    with deterministic(), heap_temporaries(), \
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            policy.train()
            total = steps_per_epoch if config.max_steps is None else min(steps_per_epoch, config.max_steps - step)
            bar = tqdm(total=total, desc=f"{policy.name} epoch {epoch}", file=sys.stderr,
                       disable=not config.progress or os.environ.get("SIMAB_QUIET") == "1", leave=False)
            loss_sum, n_batches = torch.zeros((), device=device), 0
            batches = train.batches(config.batch_size, shuffle=True, seed=config.seed + epoch,
                                    groups=policy.feature_groups)
            for batch in batches:
                batch = policy.to_device(batch, device)
                loss = _train_step(policy, batch, optimizer, device, config.amp)
                loss_sum += loss
                n_batches += 1
                step += 1
                samples += batch["label"].shape[0]
                bar.update(1)
                if config.progress and step % config.log_every == 0:
                    bar.set_postfix(loss=f"{float(loss_sum) / n_batches:.4f}")
                if config.max_steps is not None and step >= config.max_steps:
                    break
            bar.close()
            history.append({"epoch": epoch, "loss": float(loss_sum) / max(n_batches, 1)})
            if val is not None:
                metrics = evaluate(policy, val, config.eval_batch_size)
                history[-1].update(val_auc=metrics["auc"], val_logloss=metrics["logloss"])
                watched = metrics[config.monitor]
                # the score to maximise; a NaN (one class, no logloss) is the worst
                score = -math.inf if math.isnan(watched) else (watched if higher else -watched)
                if best_state is None or score > best_score:
                    best_score, best_epoch, best_val, stale = score, epoch, metrics, 0
                    best_state = copy.deepcopy(policy.state_dict())
                else:
                    stale += 1
            if config.max_steps is not None and step >= config.max_steps:
                stopped_by = "max_steps"
                break
            if stale >= config.patience and epoch >= config.min_epochs:
                stopped_by = "patience"
                break
    seconds = time.perf_counter() - start
    if best_state is not None:
        policy.load_state_dict(best_state)
    out = dict(best_val) if best_val is not None else {}
    out["train"] = {"steps": step, "epochs_run": epoch, "best_epoch": best_epoch, "history": history,
                    "monitor": config.monitor, "stopped_by": stopped_by, "converged": stopped_by == "patience",
                    "seconds": seconds, "samples_per_s": samples / seconds if seconds > 0 else float("nan"),
                    "device": str(device)}
    return out


def _train_step(policy: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, device: torch.device,
                amp: bool) -> torch.Tensor:
    autocast, scaler = _autocast(device, amp)
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        logits = policy(batch)
        loss, _ = policy.loss(batch, logits)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def evaluate(policy: Policy, source: BatchSource, batch_size: int = 1024) -> dict:
    """Offline metrics of ``policy`` on ``source``: ``auc``, ``gauc`` (by user),
    ``logloss``, ``n`` and ``per_scenario`` {scenario name: the same four}.

    Scores are turned into probabilities by ``policy.score_kind``: ``"logit"``
    (sigmoid), ``"probability"`` (as is); any other kind has no logloss (``nan``).
    """
    labels, scores, users, scenarios = [], [], [], []
    groups = tuple(policy.feature_groups)
    # the metrics do not depend on the row order: a source that can sort its rows by history
    # length (LogDataset) gives batches with little padding
    by_length = getattr(source, "batches_by_length", None)
    batches = by_length(batch_size, groups) if by_length is not None else \
        source.batches(batch_size, shuffle=False, groups=groups)
    for batch in batches:
        s = policy.score(batch)
        c = s.shape[1]
        scores.append(s.reshape(-1).numpy())
        labels.append(batch["label"].reshape(-1).float().numpy())
        users.append(batch["user"].repeat_interleave(c).numpy())
        scenarios.append(batch["scenario"].repeat_interleave(c).numpy())
    y = np.concatenate(labels) if labels else np.zeros(0)
    s = np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)
    u = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
    sc = np.concatenate(scenarios) if scenarios else np.zeros(0, dtype=np.int64)
    kind = getattr(policy, "score_kind", "logit")
    if kind == "logit":
        p = 1.0 / (1.0 + np.exp(-s))
    elif kind == "probability":
        p = s
    else:
        p = None
    out = offline_metrics(y, s, u, p)
    names = getattr(getattr(policy, "feature_spec", None), "scenario_names", None) or ()
    per: dict[str, dict] = {}
    for idx in np.unique(sc):
        m = sc == idx
        name = names[idx] if idx < len(names) else str(int(idx))
        per[name] = offline_metrics(y[m], s[m], u[m], p[m] if p is not None else None)
    out["per_scenario"] = per
    return out


def train_policy(name: str, params: Mapping[str, Any] | None, feature_spec: FeatureSpec, train: BatchSource,
                 val: BatchSource | None, config: TrainerConfig, out_dir: str | Path | None = None) -> dict:
    """Build, train and (if ``out_dir``) checkpoint a policy; return its metrics.

    The metrics hold ``auc``, ``gauc``, ``logloss``, ``n`` and ``per_scenario`` on
    ``val`` (on ``train`` when there is no validation set; ``evaluated_on`` says which).
    A policy that does not learn (``trainable = False``) is fitted (e.g. popularity
    counts) and evaluated, but only neural policies are checkpointed.
    """
    policy = build_policy(name, params, feature_spec, config.seed)
    if has_weights(policy):
        metrics = fit(policy, train, val, config)
    else:
        metrics = {"train": policy.fit(train, val)}
    if "auc" not in metrics:
        metrics.update(evaluate(policy, val if val is not None else train, config.eval_batch_size))
    metrics["evaluated_on"] = "val" if val is not None else "train"
    metrics["policy"] = name
    if out_dir is not None:
        if has_weights(policy):
            save_checkpoint(policy, out_dir, metrics)
        else:
            write_metrics(out_dir, metrics)
    return metrics
