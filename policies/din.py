"""DIN (Zhou et al. 2018, "Deep Interest Network for Click-Through Rate Prediction",
fig. 2 right): the short click sequence is pooled by a local activation unit driven
by the target item, then concatenated with profile, scenario and target embeddings
into an MLP."""

from __future__ import annotations

import torch

from simab.policies.base import Batch, layer_sizes, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import MLP, ActivationUnitAttention, EmbeddingBank, candidate_fields
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy


class DIN(NeuralPolicy):
    name = "din"
    serve_batch = 64  # requests per scoring call (docs/benchmarks.md, "Neural arms")
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, "attention_units": [64, 32], "attention_softmax": False}
    RULES = {**COMMON_RULES, "attention_units": layer_sizes(1)}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        self.attention = ActivationUnitAttention(2 * d, p["attention_units"], activation=p["activation"],
                                                 softmax=p["attention_softmax"])
        # the attended interest has the width of the short sequence's item ⊕ category
        self.mlp = MLP(feature_spec.input_width(d, short_seq=True), p["mlp_units"], out_dim=1,
                       activation=p["activation"], dropout=p["dropout"])

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch)  # [B, C, F, d]
        target = self.bank.item_key(batch["item"], batch["item_cat"])  # [B, C, 2d]
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])  # [B, L, 2d]
        interest = self.attention(target, behaviour, batch["seq_mask"])  # [B, C, 2d]
        x = torch.cat([fields.flatten(-2), interest, batch["item_pop"].unsqueeze(-1)], dim=-1)
        return self.mlp(x).squeeze(-1)


register_policy("din", DIN, DIN.load)
