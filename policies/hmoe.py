"""HMoE (Li et al. 2020, "Improving Multi-Scenario Learning to Rank in E-commerce by
Exploiting Task Relationships in the Label Space", fig. 2): shared experts, one
softmax gate and one tower per scenario, and a stacking of the scenario towers'
predictions in the label space in which only the row's own scenario tower receives
the gradient (the others are detached, the paper's gradient cut).

Assumption: the label-space weights are a learned ``[S, S]`` matrix (row-softmax,
initialised to favour the own scenario), not a function of the input.
"""

from __future__ import annotations

import torch
from torch import nn

from simab.policies.base import Batch, in_range, layer_sizes, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    EmbeddingBank,
    ScenarioHeads,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy


class ScenarioTowers(ScenarioHeads):
    """One MLP (one hidden layer) per scenario, each on its own input: ``[..., S, h]`` ->
    logits ``[..., S]`` (the parameters and their initialisation of
    :class:`~simab.policies.layers.ScenarioHeads`, whose towers share one input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(torch.einsum("...si,sih->...sh", x, self.w1) + self.b1)
        return (h * self.w2).sum(-1) + self.b2


class HMoE(NeuralPolicy):
    name = "hmoe"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, "n_experts": 4, "expert_units": [64], "tower_units": 32}
    RULES = {**COMMON_RULES, "n_experts": in_range(1), "expert_units": layer_sizes(), "tower_units": in_range(1)}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        n_s = max(feature_spec.n_scenarios, len(feature_spec.scenario_names))
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        x_dim = feature_spec.input_width(d, short_seq=True)
        self.experts = nn.ModuleList(
            MLP(x_dim, p["expert_units"], activation=p["activation"], dropout=p["dropout"])
            for _ in range(p["n_experts"])
        )
        expert_dim = self.experts[0].out_dim
        self.n_scenarios, self.n_experts = n_s, p["n_experts"]
        self.gates = nn.Linear(x_dim, n_s * p["n_experts"])
        self.towers = ScenarioTowers(n_s, expert_dim, p["tower_units"], p["activation"])
        self.relation = nn.Parameter(2.0 * torch.eye(n_s))

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch)
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
        pooled = broadcast_candidates(masked_mean(behaviour, batch["seq_mask"]), fields.shape[1])
        x = torch.cat([fields.flatten(-2), pooled, batch["item_pop"].unsqueeze(-1)], dim=-1)
        experts = torch.stack([e(x) for e in self.experts], dim=-2)  # [B, C, E, h]
        gates = self.gates(x).unflatten(-1, (self.n_scenarios, self.n_experts)).softmax(-1)  # [B, C, S, E]
        mixed = torch.einsum("bcse,bceh->bcsh", gates, experts)
        logits = self.towers(mixed)  # [B, C, S]: every scenario tower's prediction
        own = nn.functional.one_hot(batch["scenario"], self.n_scenarios).to(logits.dtype).unsqueeze(1)
        stacked = own * logits + (1 - own) * logits.detach()  # gradient only through the own tower
        weights = self.relation.softmax(-1)[batch["scenario"]].unsqueeze(1)  # [B, 1, S]
        return (weights * stacked).sum(-1)


register_policy("hmoe", HMoE, HMoE.load)
