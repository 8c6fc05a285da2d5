"""DeepFM (Guo et al. 2017, fig. 1): a first-order linear part, an FM layer over the
field embeddings and a DNN over the same embeddings, summed into one logit.  Fields:
profile, scenario, the target's four fields and the mean-pooled short sequence
(item and category as two fields).

``scenario_heads = true`` (see :mod:`simab.policies.dnn`): the fields lose the scenario,
the linear, FM and deep-hidden parts form the shared bottom, and the deep part's output
layer becomes one tower per scenario (``tower_units`` hidden units)."""

from __future__ import annotations

import torch
from torch import nn

from simab.policies.base import Batch, register_policy
from simab.policies.dnn import HEAD_DEFAULTS, HEAD_RULES
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    EmbeddingBank,
    FactorizationMachine,
    ScenarioHeads,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
    own_scenario,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy

_VOCABS = ["item", "cat", "shop", "price", "scenario", "profile"]


class DeepFM(NeuralPolicy):
    name = "deepfm"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, **HEAD_DEFAULTS}
    RULES = {**COMMON_RULES, **HEAD_RULES}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        self.bank = EmbeddingBank(feature_spec, d, _VOCABS)
        self.first_order = EmbeddingBank(feature_spec, 1, _VOCABS)  # w_i of each feature id
        self.bias = nn.Parameter(torch.zeros(1))
        self.pop_weight = nn.Linear(1, 1, bias=False)
        self.fm = FactorizationMachine()
        self.heads_on = bool(p["scenario_heads"])
        width = feature_spec.input_width(d, short_seq=True, scenario=not self.heads_on)
        if self.heads_on:
            self.dnn = MLP(width, p["mlp_units"], activation=p["activation"], dropout=p["dropout"])
            n_s = max(feature_spec.n_scenarios, len(feature_spec.scenario_names))
            self.heads = ScenarioHeads(n_s, self.dnn.out_dim, p["tower_units"], p["activation"])
        else:
            self.dnn = MLP(width, p["mlp_units"], out_dim=1, activation=p["activation"], dropout=p["dropout"])

    def _fields(self, bank: EmbeddingBank, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(bank, batch, scenario=not self.heads_on)
        seq = torch.stack([bank("item", batch["seq_item"]), bank("cat", batch["seq_cat"])], dim=-2)  # [B,L,2,d]
        pooled = masked_mean(seq.flatten(-2), batch["seq_mask"]).unflatten(-1, (2, bank.dim))
        return torch.cat([fields, broadcast_candidates(pooled, fields.shape[1])], dim=2)

    def _parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear + FM logit ``[B, C]`` and the deep part's output (``[B, C]``, or its last
        hidden layer ``[B, C, h]`` with ``scenario_heads``)."""
        fields = self._fields(self.bank, batch)  # [B, C, F, d]
        pop = batch["item_pop"].unsqueeze(-1)
        linear = self._fields(self.first_order, batch).sum((-2, -1)) + self.pop_weight(pop).squeeze(-1) + self.bias
        fm = self.fm(fields).squeeze(-1)
        deep = self.dnn(torch.cat([fields.flatten(-2), pop], dim=-1))
        return linear + fm, deep

    def scenario_logits(self, batch: Batch) -> torch.Tensor:
        """Every scenario tower's logit ``[B, C, S]`` (only with ``scenario_heads``)."""
        shallow, deep = self._parts(batch)
        return shallow.unsqueeze(-1) + self.heads(deep)

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.heads_on:
            return own_scenario(self.scenario_logits(batch), batch["scenario"])
        shallow, deep = self._parts(batch)
        return shallow + deep.squeeze(-1)


register_policy("deepfm", DeepFM, DeepFM.load)
