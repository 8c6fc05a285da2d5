"""Policies that learn nothing: ``random``, ``popularity``, ``oracle`` and the pre-period
``logging`` policy (popularity with epsilon exploration and logged propensities).

Stochastic policies draw from the uniforms the ranking service passes in, which are
keyed by request id, so their slates do not depend on batching, sharding or workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from simab.policies.base import Rule, check_params, in_range, one_of, register_policy
from simab.policies.features import FeatureSpec


class _Fixed:
    trainable = False
    feature_groups: tuple[str, ...] = ("target",)
    #: Service time per candidate in the latency model (simab/engine/serving.py), microseconds; a
    #: fixed policy costs a feature lookup and a sort (docs/benchmarks.md, serving costs).
    service_us_per_candidate = 1.0
    DEFAULTS: dict[str, Any] = {}
    RULES: dict[str, Rule] = {}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        self.params = check_params(self.name, params, self.DEFAULTS, key="params", rules=self.RULES)
        self.feature_spec = feature_spec

    def fit(self, train, val=None, **trainer_options) -> dict:
        return {}

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)

    #: Stochastic policies rank with ``slate(batch, k, uniforms)`` where ``uniforms``
    #: [B, 2C] are request-keyed random numbers; the others by top-k of ``score``.
    stochastic = False
    #: What a score means (offline metrics compute logloss only for logits/probabilities).
    score_kind = "rank"


class RandomPolicy(_Fixed):
    """Uniformly random slates (scores are request-keyed uniforms)."""

    name = "random"
    stochastic = True

    def score(self, batch):
        # offline: a fixed hash of (user, item) so evaluation is deterministic
        item = batch["item"].to(torch.int64)
        user = batch["user"].to(torch.int64)[:, None] if "user" in batch else torch.zeros_like(item[:, :1])
        h = (item * 2654435761 + user * 40503) % 1000003
        return h.to(torch.float32) / 1000003.0

    def slate(self, batch, k, uniforms):
        return uniform_slate(k, uniforms)


def uniform_slate(k: int, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A uniformly random ordered ``k`` of the ``C`` candidates (``uniforms`` [B, 2C]: the
    first C sorted) and each pick's probability given the earlier ones, 1 / (C - position)."""
    C = uniforms.shape[1] // 2
    idx = np.argsort(uniforms[:, :C], axis=1, kind="stable")[:, :k]
    prop = np.ones(idx.shape) / (C - np.arange(idx.shape[1]))[None, :]
    return idx, prop


class PopularityPolicy(_Fixed):
    """Ranks candidates by the catalogue's popularity prior (log popularity)."""

    name = "popularity"

    def score(self, batch):
        return batch["item_pop"].to(torch.float32)


class OraclePolicy(_Fixed):
    """Ranks by the world's true P(click) at the request: the upper bound of any policy.

    ``blend`` < 1 mixes in popularity (score = blend * logit(p) + (1 - blend) * pop), a
    policy whose true lift can be dialled for calibration.
    """

    name = "oracle"
    feature_groups = ("target", "oracle")
    score_kind = "logit"
    DEFAULTS = {"blend": 1.0}
    RULES = {"blend": in_range(0.0, 1.0)}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)

    def score(self, batch):
        p = batch["p_click"].clamp(1e-6, 1 - 1e-6)
        b = self.params["blend"]
        return b * torch.log(p / (1 - p)) + (1 - b) * batch["item_pop"].to(torch.float32)


class LoggingPolicy(_Fixed):
    """Pre-period logging policy.  ``mode``:

    - ``epsilon`` (the default, what the pre-period serves): position by position, with
      probability 1 - epsilon the most popular remaining candidate, otherwise a uniformly
      random remaining one;
    - ``uniform``: a uniformly random slate of distinct candidates (off-policy evaluation's
      easy case: every item is at every position with marginal probability 1 / C);
    - ``plackett_luce``: candidates drawn without replacement with probability proportional
      to ``exp(log popularity / temperature)`` (Gumbel top-k on the same uniforms).

    The logged propensity of each pick is its probability *given the earlier picks* (the
    Plackett-Luce factor); the marginal P(item at position) that off-policy evaluation needs
    is 1 / C under ``uniform``, an exact recursion under ``epsilon`` and a Monte-Carlo
    estimate under ``plackett_luce`` (simab/ope/marginal.py, docs/ope.md).
    """

    name = "logging"
    stochastic = True
    DEFAULTS = {"epsilon": 0.3, "mode": "epsilon", "temperature": 1.0}
    RULES = {"epsilon": in_range(0.0, 1.0), "mode": one_of("epsilon", "uniform", "plackett_luce"),
             "temperature": in_range(0.0, lo_open=True)}

    def score(self, batch):
        return batch["item_pop"].to(torch.float32)

    def slate(self, batch, k, uniforms):
        mode = self.params["mode"]
        if mode == "uniform":
            return uniform_slate(k, uniforms)
        if mode == "plackett_luce":
            return self._plackett_luce(batch["item_pop"].numpy().astype(np.float64), k, uniforms)
        eps = self.params["epsilon"]
        pop = batch["item_pop"].numpy()
        B, C = pop.shape
        taken = np.zeros((B, C), bool)
        idx = np.zeros((B, k), np.int64)
        prop = np.zeros((B, k))
        rows = np.arange(B)
        for p in range(k):
            remaining = C - p
            best = np.argmax(np.where(taken, -np.inf, pop), axis=1)
            # uniforms[:, p] decides explore/exploit, uniforms[:, C + p] picks the random one
            explore = uniforms[:, p] < eps
            u2 = uniforms[:, C + p] * remaining
            rank = np.minimum(u2.astype(np.int64), remaining - 1)
            free = np.cumsum(~taken, axis=1) - 1
            rnd = np.argmax((free == rank[:, None]) & ~taken, axis=1)
            choice = np.where(explore, rnd, best)
            idx[:, p] = choice
            prop[:, p] = (1 - eps) * (choice == best) + eps / remaining
            taken[rows, choice] = True
        return idx, prop

    def _plackett_luce(self, pop: np.ndarray, k: int, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gumbel top-k: sorting ``s / T + Gumbel`` draws a Plackett-Luce ranking (Yellott
        1977); the propensity of the pick at position p is ``exp(s_a / T)`` over the sum
        of the remaining candidates' ``exp(s / T)``."""
        C = pop.shape[1]
        logits = pop / self.params["temperature"]
        gumbel = -np.log(-np.log(uniforms[:, :C]))
        idx = np.argsort(-(logits + gumbel), axis=1, kind="stable")[:, :k]
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        picked = np.take_along_axis(w, idx, axis=1)
        before = np.concatenate([np.zeros((len(w), 1)), np.cumsum(picked, axis=1)[:, :-1]], axis=1)
        return idx, picked / (w.sum(axis=1, keepdims=True) - before)


for _cls in (RandomPolicy, PopularityPolicy, OraclePolicy, LoggingPolicy):
    register_policy(_cls.name, _cls)
