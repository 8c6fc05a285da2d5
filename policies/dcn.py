"""DCN-V2 (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network", fig. 2): full-rank
cross layers and a deep network over the concatenated embeddings, combined either in
parallel (both read x0, outputs concatenated) or stacked (deep on top of cross).

``scenario_heads = true`` (see :mod:`simab.policies.dnn`): x0 loses the scenario field and
the output layer becomes one tower per scenario (``tower_units`` hidden units) on the
shared cross/deep bottom."""

from __future__ import annotations

import torch

from simab.policies.base import Batch, in_range, one_of, register_policy
from simab.policies.dnn import HEAD_DEFAULTS, HEAD_RULES
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    CrossNetworkV2,
    EmbeddingBank,
    ScenarioHeads,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
    own_scenario,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy


class DCN(NeuralPolicy):
    name = "dcn"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, "cross_layers": 3, "structure": "parallel", **HEAD_DEFAULTS}
    RULES = {**COMMON_RULES, "cross_layers": in_range(0), "structure": one_of("parallel", "stacked"), **HEAD_RULES}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        self.heads_on = bool(p["scenario_heads"])
        x_dim = feature_spec.input_width(d, short_seq=True, scenario=not self.heads_on)
        self.cross = CrossNetworkV2(x_dim, p["cross_layers"])
        self.deep = MLP(x_dim, p["mlp_units"], activation=p["activation"], dropout=p["dropout"])
        head_in = x_dim + self.deep.out_dim if p["structure"] == "parallel" else self.deep.out_dim
        if self.heads_on:
            n_s = max(feature_spec.n_scenarios, len(feature_spec.scenario_names))
            self.heads = ScenarioHeads(n_s, head_in, p["tower_units"], p["activation"])
        else:
            self.head = torch.nn.Linear(head_in, 1)

    def _hidden(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch, scenario=not self.heads_on)
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
        pooled = broadcast_candidates(masked_mean(behaviour, batch["seq_mask"]), fields.shape[1])
        x0 = torch.cat([fields.flatten(-2), pooled, batch["item_pop"].unsqueeze(-1)], dim=-1)
        crossed = self.cross(x0)
        if self.params["structure"] == "parallel":
            h = torch.cat([crossed, self.deep(x0)], dim=-1)
        else:
            h = self.deep(crossed)
        return h

    def scenario_logits(self, batch: Batch) -> torch.Tensor:
        """Every scenario tower's logit ``[B, C, S]`` (only with ``scenario_heads``)."""
        return self.heads(self._hidden(batch))

    def forward(self, batch: Batch) -> torch.Tensor:
        if self.heads_on:
            return own_scenario(self.scenario_logits(batch), batch["scenario"])
        return self.head(self._hidden(batch)).squeeze(-1)


register_policy("dcn", DCN, DCN.load)
