"""DNN baseline (YouTube-DNN style embedding + MLP, Covington et al. 2016, fig. 3):
profile, scenario and target embeddings, the mean-pooled short sequence and the
popularity prior, concatenated into an MLP that outputs the click logit.

``scenario_heads = true`` makes it a multi-task backbone ``f(x | θ, {θ_s})`` (SSIM,
seed 002): the MLP without the scenario field is a shared bottom and each scenario has
its own tower (:class:`~simab.policies.layers.ScenarioHeads`, ``tower_units`` hidden
units); a row is scored by its own scenario's tower."""

from __future__ import annotations

import torch

from simab.policies.base import Batch, in_range, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    EmbeddingBank,
    ScenarioHeads,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
    own_scenario,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy

#: Per-scenario towers (off: the plain single-tower model with a scenario embedding).
HEAD_DEFAULTS = {"scenario_heads": False, "tower_units": 32}
HEAD_RULES = {"tower_units": in_range(1)}


class DNN(NeuralPolicy):
    name = "dnn"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, **HEAD_DEFAULTS}
    RULES = {**COMMON_RULES, **HEAD_RULES}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        self.heads_on = bool(p["scenario_heads"])
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        width = feature_spec.input_width(d, short_seq=True, scenario=not self.heads_on)
        if self.heads_on:
            self.mlp = MLP(width, p["mlp_units"], activation=p["activation"], dropout=p["dropout"])
            n_s = max(feature_spec.n_scenarios, len(feature_spec.scenario_names))
            self.heads = ScenarioHeads(n_s, self.mlp.out_dim, p["tower_units"], p["activation"])
        else:
            self.mlp = MLP(width, p["mlp_units"], out_dim=1, activation=p["activation"], dropout=p["dropout"])

    def _input(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch, scenario=not self.heads_on)  # [B, C, F, d]
        n_candidates = fields.shape[1]
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])  # [B, L, 2d]
        pooled = broadcast_candidates(masked_mean(behaviour, batch["seq_mask"]), n_candidates)
        return torch.cat([fields.flatten(-2), pooled, batch["item_pop"].unsqueeze(-1)], dim=-1)

    def scenario_logits(self, batch: Batch) -> torch.Tensor:
        """Every scenario tower's logit ``[B, C, S]`` (only with ``scenario_heads``)."""
        return self.heads(self.mlp(self._input(batch)))

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.heads_on:
            return own_scenario(self.scenario_logits(batch), batch["scenario"])
        return self.mlp(self._input(batch)).squeeze(-1)


register_policy("dnn", DNN, DNN.load)
