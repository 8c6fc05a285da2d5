"""DNN baseline (YouTube-DNN style embedding + MLP, Covington et al. 2016, fig. 3):
profile, scenario and target embeddings, the mean-pooled short sequence and the
popularity prior, concatenated into an MLP that outputs the click logit."""

from __future__ import annotations

import torch

from simab.policies.base import Batch, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    EmbeddingBank,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
)
from simab.policies.neural import COMMON_DEFAULTS, NeuralPolicy


class DNN(NeuralPolicy):
    name = "dnn"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = dict(COMMON_DEFAULTS)

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        self.mlp = MLP(feature_spec.input_width(d, short_seq=True), p["mlp_units"], out_dim=1,
                       activation=p["activation"], dropout=p["dropout"])

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch)  # [B, C, F, d]
        n_candidates = fields.shape[1]
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])  # [B, L, 2d]
        pooled = broadcast_candidates(masked_mean(behaviour, batch["seq_mask"]), n_candidates)
        x = torch.cat([fields.flatten(-2), pooled, batch["item_pop"].unsqueeze(-1)], dim=-1)
        return self.mlp(x).squeeze(-1)


register_policy("dnn", DNN, DNN.load)
