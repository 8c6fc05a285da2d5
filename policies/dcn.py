"""DCN-V2 (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network", fig. 2): full-rank
cross layers and a deep network over the concatenated embeddings, combined either in
parallel (both read x0, outputs concatenated) or stacked (deep on top of cross)."""

from __future__ import annotations

import torch

from simab.policies.base import Batch, in_range, one_of, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    CrossNetworkV2,
    EmbeddingBank,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy


class DCN(NeuralPolicy):
    name = "dcn"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, "cross_layers": 3, "structure": "parallel"}
    RULES = {**COMMON_RULES, "cross_layers": in_range(0), "structure": one_of("parallel", "stacked")}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        x_dim = feature_spec.input_width(d, short_seq=True)
        self.cross = CrossNetworkV2(x_dim, p["cross_layers"])
        self.deep = MLP(x_dim, p["mlp_units"], activation=p["activation"], dropout=p["dropout"])
        head_in = x_dim + self.deep.out_dim if p["structure"] == "parallel" else self.deep.out_dim
        self.head = torch.nn.Linear(head_in, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch)
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
        pooled = broadcast_candidates(masked_mean(behaviour, batch["seq_mask"]), fields.shape[1])
        x0 = torch.cat([fields.flatten(-2), pooled, batch["item_pop"].unsqueeze(-1)], dim=-1)
        crossed = self.cross(x0)
        if self.params["structure"] == "parallel":
            h = torch.cat([crossed, self.deep(x0)], dim=-1)
        else:
            h = self.deep(crossed)
        return self.head(h).squeeze(-1)


register_policy("dcn", DCN, DCN.load)
