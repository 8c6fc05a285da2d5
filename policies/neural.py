"""``NeuralPolicy``: the base class of every trainable CTR model.

A subclass declares ``name``, ``feature_groups``, ``DEFAULTS`` (hyper-parameters
with typed defaults) and ``RULES`` (their allowed values), builds its layers in ``__init__`` after calling
``super().__init__(params, feature_spec)`` and implements ``forward(batch) -> logits
[B, C]``.  Seed models with extra objectives (AMEN's TSP, LCN's InfoNCE, SSIM's
selector) override :meth:`NeuralPolicy.loss` and may stash what it needs on ``self``
during ``forward``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from simab.errors import SimabError
from simab.policies.base import (
    Batch,
    BatchSource,
    Rule,
    check_params,
    in_range,
    layer_sizes,
    one_of,
)
from simab.policies.checkpoint import load_checkpoint, save_checkpoint
from simab.policies.features import FEATURE_GROUPS, LABEL_KEYS, FeatureSpec
from simab.policies.layers import ACTIVATIONS
from simab.policies.trainer import TrainerConfig, fit

#: Hyper-parameters every neural policy accepts.
COMMON_DEFAULTS: dict[str, Any] = {
    "embedding_dim": 16,
    "mlp_units": [128, 64],
    "activation": "relu",
    "dropout": 0.0,
    # a position bias learned in training and left out at serving (issue #19): the logged
    # clicks depend on the slate position, which no serving-time feature knows
    "position_tower": False,
}
#: Slate positions the position tower has a bias for (larger positions share the last one).
MAX_POSITIONS = 256
#: The tower's bias is this constant times its weight: Adam moves a weight by about the
#: learning rate per step (1e-3), so an unscaled bias could move only ~0.2 logit over the
#: few hundred steps of a training run, far less than the log examination curve spans
#: (-1.8 at position 10 for decay 0.8); measured on the default world (tests/policies/test_position_tower.py).
POSITION_SCALE = 20.0
#: Allowed values of the common hyper-parameters (types come from the defaults).
COMMON_RULES: dict[str, Rule] = {
    "embedding_dim": in_range(1),
    "mlp_units": layer_sizes(),
    "activation": one_of(*ACTIVATIONS),
    "dropout": in_range(0.0, 1.0, hi_open=True),
}


def check_heads(name: str, d_model: int, d_model_text: str, n_heads: int) -> None:
    """Multi-head attention splits ``d_model`` into ``n_heads`` equal heads."""
    if d_model % n_heads:
        raise SimabError(f"parameter 'n_heads' of policy {name!r} must divide {d_model_text} = {d_model}, "
                         f"got {n_heads}", key="params.n_heads")


class NeuralPolicy(nn.Module):
    """Base of the neural policies; implements the ``Policy`` protocol."""

    name: ClassVar[str] = ""
    feature_groups: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = True
    #: Scores are logits: ``sigmoid(score)`` is the predicted click probability.
    score_kind: ClassVar[str] = "logit"
    DEFAULTS: ClassVar[dict[str, Any]] = COMMON_DEFAULTS
    #: Value rules checked with the defaults' types when the policy is built (spec validation).
    RULES: ClassVar[dict[str, Rule]] = COMMON_RULES
    #: Service time per candidate in the latency model (simab/engine/serving.py), microseconds:
    #: about 100k candidates/s per core for DIN on CPU (docs/benchmarks.md, serving costs).
    service_us_per_candidate: ClassVar[float] = 10.0
    #: Requests per scoring call when serving (``serving.max_batch`` unset): the batch size at
    #: which the bare forward pass scores the most candidates per second on one CPU core
    #: (``scripts/bench_neural.py``, docs/benchmarks.md "Neural arms").
    serve_batch: ClassVar[int] = 64

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__()
        self.params: dict[str, Any] = check_params(self.name, params, self.DEFAULTS, rules=self.RULES)
        self.feature_spec = feature_spec
        self._input_keys = tuple(k for g in self.feature_groups for k in FEATURE_GROUPS[g])
        # created only when asked for: its initialisation draws from torch's generator
        self.position_bias = None
        if self.params.get("position_tower"):
            self.position_bias = nn.Embedding(MAX_POSITIONS, 1)
            nn.init.zeros_(self.position_bias.weight)

    def with_position(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """Training logits: ``logits`` plus the learned bias of each row's logged slate
        position (``position_tower``); unchanged without the tower or a position.  Serving
        scores leave it out: every candidate of a request gets the same (position-0)
        treatment, as production rankers do with a position tower (PAL, Guo et al. 2019)."""
        if self.position_bias is None or "position" not in batch:
            return logits
        pos = batch["position"].clamp(0, MAX_POSITIONS - 1)
        return logits + POSITION_SCALE * self.position_bias(pos).squeeze(-1).to(logits.dtype)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_device(self, batch: Batch, device: torch.device | None = None) -> Batch:
        """The keys this policy reads (plus labels, user, scenario), on ``device``."""
        device = device or self.device
        keys = (*self._input_keys, *LABEL_KEYS, "user", "scenario", "position")
        return {k: batch[k].to(device, non_blocking=True) for k in keys if k in batch}

    def score(self, batch: Batch) -> torch.Tensor:
        """Logits ``[B, C]`` on CPU, computed in eval mode in inference mode (no autograd
        records); a policy already in eval mode (a served one) is not switched back and
        forth, which walks every module twice a call."""
        with torch.inference_mode():
            if not self.training:
                return self.forward(self.to_device(batch)).float().cpu()
            self.eval()
            try:
                logits = self.forward(self.to_device(batch))
            finally:
                self.train()
            return logits.float().cpu()

    def loss(self, batch: Batch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total training loss and its named parts (detached 0-dim tensors).

        Default: binary cross-entropy with logits on ``label``, each row weighted by
        ``weight`` when the batch has one; with ``position_tower`` the logits get the
        position bias first (:meth:`with_position`).
        """
        logits = self.with_position(batch, logits)
        label = batch["label"].to(logits.dtype)
        per_row = F.binary_cross_entropy_with_logits(logits.float(), label.float(), reduction="none")
        if "weight" in batch:
            w = batch["weight"].to(per_row.dtype).reshape(-1, *([1] * (per_row.dim() - 1)))
            bce = (per_row * w).sum() / (w.expand_as(per_row).sum().clamp_min(1e-12))
        else:
            bce = per_row.mean()
        return bce, {"bce": bce.detach()}

    def fit(self, train: BatchSource, val: BatchSource | None = None, **trainer_options: Any) -> dict:
        """Train with :func:`simab.policies.trainer.fit`; options are ``TrainerConfig`` fields."""
        return fit(self, train, val, TrainerConfig.from_options(trainer_options))

    def save(self, directory: str | Path, metrics: dict | None = None) -> None:
        save_checkpoint(self, directory, metrics)

    @classmethod
    def load(cls, directory: str | Path) -> NeuralPolicy:
        """Load a checkpoint written by :meth:`save`; refuses one of another policy."""
        return load_checkpoint(directory, name=cls.name)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, params={self.params}"
