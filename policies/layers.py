"""Reusable neural layers for CTR policies.

Every layer here is model-agnostic: models in ``dnn.py``, ``din.py``, ... compose them.
Shapes follow the feature contract (:mod:`simab.policies.features`): ``B`` requests,
``C`` candidates, ``L`` sequence positions, ``d`` embedding width.  Every masked
reduction returns zeros (never NaN) for a row whose mask is all ``False``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from simab.policies.base import Batch
from simab.policies.features import FeatureSpec

#: Vocabulary name -> FeatureSpec attribute holding its size (padding id 0 included).
VOCABULARIES: dict[str, str] = {
    "user": "n_users",
    "item": "n_items",
    "cat": "n_categories",
    "shop": "n_shops",
    "price": "n_price_buckets",
    "scenario": "n_scenarios",
    "scene": "n_scene_types",
    "gap": "n_gap_buckets",
    "action": "n_actions",
    "tag": "n_tags",
}
#: The scenario index is 0-based (a real scenario), so its table has no padding row.
_NO_PADDING = frozenset({"scenario"})


#: Activation name -> module class; the ``activation`` parameter of every policy is one of these.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "prelu": nn.PReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


def activation_layer(name: str) -> nn.Module:
    """The activation module named ``name`` (a policy's ``activation`` parameter)."""
    if name not in ACTIVATIONS:  # policies validate the name first; this guards direct use of a layer
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class EmbeddingBank(nn.Module):
    """One embedding table per vocabulary, shared by every feature that uses it.

    ``seq_item``, ``ll_item`` and ``item`` all look up the ``item`` table; profile
    field ``j`` has its own table ``profile{j}``.  Index 0 is the padding row (zero,
    no gradient) except for ``scenario``, whose index is 0-based.
    """

    def __init__(self, spec: FeatureSpec, dim: int, vocabularies: Iterable[str] | None = None):
        super().__init__()
        names = list(vocabularies) if vocabularies is not None else [*VOCABULARIES, "profile"]
        self.dim = dim
        self.n_profile = len(spec.profile_sizes) if "profile" in names else 0
        tables: dict[str, nn.Embedding] = {}
        for name in names:
            if name == "profile":
                for j, size in enumerate(spec.profile_sizes):
                    tables[f"profile{j}"] = nn.Embedding(size, dim, padding_idx=0)
                continue
            size = getattr(spec, VOCABULARIES[name])
            if name == "scenario":
                size = max(size, len(spec.scenario_names))
            pad = None if name in _NO_PADDING else 0
            tables[name] = nn.Embedding(size, dim, padding_idx=pad)
        self.tables = nn.ModuleDict(tables)
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=1e-2 if dim > 1 else 1e-3)
            if table.padding_idx is not None:
                with torch.no_grad():
                    table.weight[table.padding_idx].zero_()

    def forward(self, vocabulary: str, ids: torch.Tensor) -> torch.Tensor:
        """Embed ``ids`` (any shape) -> ``[*ids.shape, dim]``."""
        return self.tables[vocabulary](ids)

    # Feature-group views used by most models -----------------------------------------
    def profile(self, batch: Batch) -> torch.Tensor:
        """Profile fields -> ``[B, P, d]``."""
        prof = batch["profile"]
        return torch.stack([self.tables[f"profile{j}"](prof[:, j]) for j in range(self.n_profile)], dim=1)

    def scenario(self, batch: Batch) -> torch.Tensor:
        """Scenario -> ``[B, d]``."""
        return self.tables["scenario"](batch["scenario"])

    def target(self, batch: Batch) -> torch.Tensor:
        """Target item's id, category, shop and price bucket -> ``[B, C, 4, d]``."""
        return torch.stack(
            [
                self.tables["item"](batch["item"]),
                self.tables["cat"](batch["item_cat"]),
                self.tables["shop"](batch["item_shop"]),
                self.tables["price"](batch["item_price"]),
            ],
            dim=-2,
        )

    def item_key(self, items: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
        """Item ⊕ category -> ``[..., 2d]``: the key/query of behaviour attention."""
        return torch.cat([self.tables["item"](items), self.tables["cat"](cats)], dim=-1)


def candidate_fields(bank: EmbeddingBank, batch: Batch, *, scenario: bool = True) -> torch.Tensor:
    """Profile fields, scenario (optional) and the target's four fields as one field
    stack ``[B, C, F, d]``; per-request fields are broadcast over the candidates."""
    target = bank.target(batch)
    user = [bank.profile(batch)]
    if scenario:
        user.append(bank.scenario(batch).unsqueeze(1))
    user_fields = broadcast_candidates(torch.cat(user, dim=1), target.shape[1])
    return torch.cat([user_fields, target], dim=2)


def broadcast_candidates(x: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """Per-request ``[B, ...]`` -> per-candidate ``[B, C, ...]`` (a view, no copy)."""
    return x.unsqueeze(1).expand(x.shape[0], n_candidates, *x.shape[1:])


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [..., L, d]`` over positions where ``mask [..., L]``; zeros if none."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(-2) / m.sum(-2).clamp_min(1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask``; an all-False row gives zeros."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    return weights * mask.to(weights.dtype)


class MLP(nn.Module):
    """Linear -> activation -> dropout, repeated; optional final linear to ``out_dim``."""

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_dim: int | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        layer_norm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(activation_layer(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = h
        if out_dim is not None:
            layers.append(nn.Linear(d, out_dim))
            d = out_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ScenarioHeads(nn.Module):
    """One tower per scenario on a shared bottom, all evaluated at once: ``x [..., D]`` ->
    logits ``[..., S]``.  Tower ``s`` is ``w2_s · act(W1_s x + b1_s) + b2_s`` (one hidden
    layer of ``hidden`` units), the per-scenario parameters ``θ_s`` of a multi-task
    backbone ``f(x | θ, {θ_s})``."""

    def __init__(self, n_scenarios: int, in_dim: int, hidden: int, activation: str = "relu"):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(n_scenarios, in_dim, hidden) * in_dim ** -0.5)
        self.b1 = nn.Parameter(torch.zeros(n_scenarios, hidden))
        self.w2 = nn.Parameter(torch.randn(n_scenarios, hidden) * hidden ** -0.5)
        self.b2 = nn.Parameter(torch.zeros(n_scenarios))
        self.act = activation_layer(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(torch.einsum("...d,sdh->...sh", x, self.w1) + self.b1)
        return (h * self.w2).sum(-1) + self.b2


def own_scenario(logits: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
    """Each request's own scenario column: ``logits [B, C, S]``, ``scenario [B]`` -> ``[B, C]``."""
    index = scenario.view(-1, 1, 1).expand(logits.shape[0], logits.shape[1], 1)
    return logits.gather(-1, index).squeeze(-1)


class FactorizationMachine(nn.Module):
    """Second-order FM interaction (Rendle 2010, eq. 1 rewritten as in lemma 3.1):
    ``sum_{i<j} <v_i, v_j> = 0.5 * sum_f ((sum_i v_if)^2 - sum_i v_if^2)``.

    ``fields [..., F, d]`` -> ``[..., 1]``.
    """

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        square_of_sum = fields.sum(-2).pow(2)
        sum_of_square = fields.pow(2).sum(-2)
        return 0.5 * (square_of_sum - sum_of_square).sum(-1, keepdim=True)


class CrossNetworkV2(nn.Module):
    """DCN-V2 cross layers (Wang et al. 2021, eq. 1): ``x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l``."""

    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))
        for layer in self.layers:
            nn.init.zeros_(layer.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class ActivationUnitAttention(nn.Module):
    """DIN's local activation unit (Zhou et al. 2018, fig. 2): the weight of behaviour
    ``k`` for target ``q`` is ``MLP([q, k, q - k, q ⊙ k])``; the output is the weighted
    *sum* (no softmax, as in the paper) of the behaviours.

    The first layer is applied in factored form, ``W[q,k,q-k,q⊙k] = (Wq+Wd)q + (Wk-Wd)k
    + Wp(q⊙k)``, so the q- and k-parts are computed once per candidate and once per
    position rather than once per (candidate, position) pair.

    ``query [B, C, d]``, ``keys [B, L, d]``, ``mask [B, L]`` -> ``[B, C, d]``.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 32), activation: str = "relu", softmax: bool = False):
        super().__init__()
        if not hidden:
            raise ValueError("ActivationUnitAttention needs at least one hidden layer")
        h0 = hidden[0]
        self.w_q = nn.Linear(dim, h0)
        self.w_k = nn.Linear(dim, h0, bias=False)
        self.w_d = nn.Linear(dim, h0, bias=False)
        self.w_p = nn.Linear(dim, h0, bias=False)
        self.act = activation_layer(activation)
        self.rest = MLP(h0, hidden[1:], out_dim=1, activation=activation)
        self.softmax = softmax

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        wd_q, wd_k = self.w_d(query), self.w_d(keys)
        q_part = self.w_q(query) + wd_q  # [B, C, h]
        k_part = self.w_k(keys) - wd_k  # [B, L, h]
        p_part = torch.einsum("bcd,bld->bcld", query, keys)
        hidden = self.act(q_part.unsqueeze(2) + k_part.unsqueeze(1) + self.w_p(p_part))
        scores = self.rest(hidden).squeeze(-1)  # [B, C, L]
        mask = mask.unsqueeze(1)
        if self.softmax:
            weights = masked_softmax(scores, mask.expand_as(scores))
        else:
            weights = scores * mask.to(scores.dtype)
        return torch.einsum("bcl,bld->bcd", weights, keys)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention (Vaswani et al. 2017, eq. 1 and sec. 3.2.2)
    with a key mask.  ``query [..., Q, dq]``, ``keys [..., L, dk]``, ``mask [..., L]`` ->
    ``[..., Q, d_model]``.  Rows with no valid key attend to nothing and return the
    output projection of zeros.
    """

    def __init__(self, query_dim: int, key_dim: int, d_model: int, n_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.q = nn.Linear(query_dim, d_model, bias=False)
        self.k = nn.Linear(key_dim, d_model, bias=False)
        self.v = nn.Linear(key_dim, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.d_model = d_model

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.d_head)).transpose(-3, -2)  # [..., H, T, dh]

    def attention_weights(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The softmax weights of :meth:`forward` (before dropout) ``[..., H, Q, L]``."""
        q, k = self._heads(self.q(query)), self._heads(self.k(keys))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # [..., H, Q, L]
        return masked_softmax(scores, mask.unsqueeze(-2).unsqueeze(-2).expand_as(scores))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.dropout(self.attention_weights(query, keys, mask))
        v = self._heads(self.v(keys))
        out = (weights @ v).transpose(-3, -2).flatten(-2)  # [..., Q, d_model]
        return self.out(out)


class MultiHeadTargetAttention(nn.Module):
    """Candidates attend over a behaviour sequence: ``target [B, C, dq]`` over
    ``keys [B, L, dk]`` (shared by all candidates) or ``[B, C, L, dk]`` (one sequence
    per candidate, e.g. SIM's search result), ``mask`` matching ``keys`` -> ``[B, C, d_model]``.
    """

    def __init__(self, query_dim: int, key_dim: int, d_model: int, n_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        self.attention = MultiHeadAttention(query_dim, key_dim, d_model, n_heads, dropout)

    def forward(self, target: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if keys.dim() == 4:  # per-candidate sequences: each candidate is its own query
            return self.attention(target.unsqueeze(-2), keys, mask).squeeze(-2)
        return self.attention(target, keys, mask)

    def attention_weights(self, target: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each candidate's weights over the sequence, per head: ``[B, C, H, L]``."""
        if keys.dim() == 4:
            return self.attention.attention_weights(target.unsqueeze(-2), keys, mask).squeeze(-2)
        return self.attention.attention_weights(target, keys, mask).transpose(-3, -2)


class TransformerBlock(nn.Module):
    """Post-norm transformer encoder block (Vaswani et al. 2017, sec. 3.1) over a masked
    sequence ``x [B, L, d]``; padded positions are zeroed on output."""

    def __init__(self, dim: int, n_heads: int = 2, ffn_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.attention = MultiHeadAttention(dim, dim, dim, n_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MLP(dim, [ffn_dim or 2 * dim], out_dim=dim, activation="gelu", dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, mask)))
        x = self.norm2(x + self.dropout(self.ffn(x)))
        return x * mask.unsqueeze(-1).to(x.dtype)
