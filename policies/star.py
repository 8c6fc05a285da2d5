"""STAR (Sheng et al. 2021, "One Model to Serve All: Star Topology Adaptive Recommender
for Multi-Domain CTR Prediction", fig. 2): partitioned normalisation of the embedded
input, a star-topology FCN whose per-scenario weights are the elementwise product of
shared and scenario-specific weights (eq. 2), and an auxiliary network on the scenario
indicator (and profile) whose logit is added to the main one (eq. 4)."""

from __future__ import annotations

import torch
from torch import nn

from simab.policies.base import Batch, layer_sizes, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    EmbeddingBank,
    activation_layer,
    broadcast_candidates,
    candidate_fields,
    masked_mean,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy


class PartitionedNorm(nn.Module):
    """Partitioned normalisation (STAR eq. 1): ``z' = (γ·γ_p) (z - E_p) / sqrt(Var_p + ε)
    + (β + β_p)``; during training ``E_p, Var_p`` are the batch statistics of the rows of
    scenario ``p`` (so a mixed batch is normalised per scenario), at serving time the
    running averages of scenario ``p``."""

    def __init__(self, dim: int, n_scenarios: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_s = nn.Parameter(torch.ones(n_scenarios, dim))
        self.beta_s = nn.Parameter(torch.zeros(n_scenarios, dim))
        self.register_buffer("running_mean", torch.zeros(n_scenarios, dim))
        self.register_buffer("running_var", torch.ones(n_scenarios, dim))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """``x [B, C, D]``, ``scenario [B]`` -> ``[B, C, D]``."""
        rows = scenario.unsqueeze(1).expand(x.shape[:2]).reshape(-1)
        flat = x.reshape(-1, x.shape[-1]).float()
        if self.training:
            n_s = self.running_mean.shape[0]
            count = torch.bincount(rows, minlength=n_s).to(flat.dtype).unsqueeze(-1)
            mean = torch.zeros(n_s, flat.shape[1], device=x.device).index_add(0, rows, flat) / count.clamp_min(1)
            centred = flat - mean[rows]
            var = torch.zeros_like(mean).index_add(0, rows, centred.pow(2)) / count.clamp_min(1)
            with torch.no_grad():
                seen = count > 0
                m = self.momentum
                self.running_mean.copy_(torch.where(seen, (1 - m) * self.running_mean + m * mean, self.running_mean))
                self.running_var.copy_(torch.where(seen, (1 - m) * self.running_var + m * var, self.running_var))
        else:
            mean, var = self.running_mean, self.running_var
            centred = flat - mean[rows]
        normed = centred / torch.sqrt(var[rows] + self.eps)
        out = normed * (self.gamma * self.gamma_s[rows]) + (self.beta + self.beta_s[rows])
        return out.reshape(x.shape).to(x.dtype)


class StarLinear(nn.Module):
    """One star-topology layer (STAR eq. 2): ``W_p = W ⊙ W_p^s``, ``b_p = b + b_p^s``."""

    def __init__(self, in_dim: int, out_dim: int, n_scenarios: int):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(in_dim, out_dim)))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.weight_s = nn.Parameter(torch.ones(n_scenarios, in_dim, out_dim))
        self.bias_s = nn.Parameter(torch.zeros(n_scenarios, out_dim))

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """``x [B, C, in]``, ``scenario [B]`` -> ``[B, C, out]``."""
        w = self.weight * self.weight_s[scenario]  # [B, in, out]
        b = (self.bias + self.bias_s[scenario]).unsqueeze(1)  # [B, 1, out]
        return torch.baddbmm(b.to(x.dtype), x, w.to(x.dtype))


class STAR(NeuralPolicy):
    name = "star"
    feature_groups = ("profile", "scenario", "target", "short_seq")
    DEFAULTS = {**COMMON_DEFAULTS, "aux_units": [32]}
    RULES = {**COMMON_RULES, "aux_units": layer_sizes()}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        n_s = max(feature_spec.n_scenarios, len(feature_spec.scenario_names))
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile"])
        x_dim = feature_spec.input_width(d, scenario=False, short_seq=True)
        self.norm = PartitionedNorm(x_dim, n_s)
        dims = [x_dim, *p["mlp_units"], 1]
        self.star = nn.ModuleList(StarLinear(a, b, n_s) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.act = activation_layer(p["activation"])
        self.dropout = nn.Dropout(p["dropout"])
        self.aux = MLP(feature_spec.n_fields(target=False) * d, p["aux_units"], out_dim=1,
                       activation=p["activation"])

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch, scenario=False)
        n_candidates = fields.shape[1]
        behaviour = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
        pooled = broadcast_candidates(masked_mean(behaviour, batch["seq_mask"]), n_candidates)
        x = torch.cat([fields.flatten(-2), pooled, batch["item_pop"].unsqueeze(-1)], dim=-1)
        scenario = batch["scenario"]
        h = self.norm(x, scenario)
        for i, layer in enumerate(self.star):
            h = layer(h, scenario)
            if i < len(self.star) - 1:
                h = self.dropout(self.act(h))
        aux_in = torch.cat([self.bank.scenario(batch), self.bank.profile(batch).flatten(1)], dim=-1)
        return h.squeeze(-1) + self.aux(aux_in)  # aux [B, 1] broadcasts over C


register_policy("star", STAR, STAR.load)
