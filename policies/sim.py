"""SIM with hard search (Pi et al. 2020, "Search-based User Interest Modeling with
Lifelong Sequential Behavior Data", sec. 4): the General Search Unit keeps, per
candidate, the lifelong events of the candidate's category (``ll_cat == item_cat``),
the ``top_k`` most recent of them; the Exact Search Unit runs multi-head target
attention over them (with action and time-gap embeddings, as the paper's ESU uses
time-interval embeddings).  A DIN unit over the short sequence is kept alongside.
Assumption beyond the paper: ``log(1 + matches)`` and the share of matching events are
fed to the MLP, because softmax attention alone cannot tell how many events matched.

Only the ids of the ``top_k`` retrieved events are embedded, so cost grows with the
lifelong length only through one comparison and one top-k per candidate.
"""

from __future__ import annotations

import torch

from simab.policies.base import Batch, in_range, layer_sizes, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    ActivationUnitAttention,
    EmbeddingBank,
    MultiHeadTargetAttention,
    candidate_fields,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy, check_heads


def count_features(n_match: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[..., 2]``: SIM's count features of ``n_match [B, C]`` matching events in a history
    of ``mask [B, N]``: ``log(1 + n)`` and the share ``n / N`` of its ``N`` real events
    (LCN gives the same two for categories and tags: ``policies/lcn.py``)."""
    n_events = mask.sum(-1, keepdim=True).clamp_min(1)
    return torch.stack([torch.log1p(n_match.float()), n_match / n_events], dim=-1)


def hard_search(batch: Batch, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions ``[B, C, K]`` of the ``top_k`` most recent lifelong events whose
    category equals each candidate's, their mask (``False`` where fewer matched) and the
    number of matching events ``[B, C]`` (all of them, not only the top ``K``).

    Sequences are chronological (later position = more recent).
    """
    ll_cat, ll_mask, item_cat = batch["ll_cat"], batch["ll_mask"], batch["item_cat"]
    n = ll_cat.shape[1]
    k = min(top_k, n)
    match = (ll_cat.unsqueeze(1) == item_cat.unsqueeze(-1)) & ll_mask.unsqueeze(1)  # [B, C, N]
    recency = torch.arange(1, n + 1, device=ll_cat.device)
    key = torch.where(match, recency, torch.zeros_like(recency))
    top, idx = key.topk(k, dim=-1)
    return idx, top > 0, match.sum(-1)


class SIM(NeuralPolicy):
    name = "sim"
    feature_groups = ("profile", "scenario", "target", "short_seq", "lifelong")
    DEFAULTS = {**COMMON_DEFAULTS, "top_k": 50, "n_heads": 2, "attention_units": [64, 32]}
    RULES = {**COMMON_RULES, "top_k": in_range(1), "n_heads": in_range(1), "attention_units": layer_sizes(1)}

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        super().__init__(params, feature_spec)
        d, p = self.params["embedding_dim"], self.params
        check_heads(self.name, 2 * d, "2 * embedding_dim", p["n_heads"])
        vocabs = ["item", "cat", "shop", "price", "scenario", "profile", "action", "gap"]
        self.bank = EmbeddingBank(feature_spec, d, vocabs)
        self.short_attention = ActivationUnitAttention(2 * d, p["attention_units"], activation=p["activation"])
        self.esu = MultiHeadTargetAttention(2 * d, 4 * d, 2 * d, n_heads=p["n_heads"])
        self.mlp = MLP(feature_spec.n_fields() * d + 4 * d + 3, p["mlp_units"], out_dim=1,
                       activation=p["activation"], dropout=p["dropout"])

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch)
        target = self.bank.item_key(batch["item"], batch["item_cat"])  # [B, C, 2d]
        short = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
        short_interest = self.short_attention(target, short, batch["seq_mask"])
        idx, found, n_match = hard_search(batch, self.params["top_k"])  # [B, C, K], [B, C]
        match_stats = count_features(n_match, batch["ll_mask"])
        b, c, k = idx.shape
        flat = idx.reshape(b, c * k)

        def take(name: str) -> torch.Tensor:
            return batch[name].gather(1, flat).reshape(b, c, k)

        events = torch.cat([
            self.bank.item_key(take("ll_item"), take("ll_cat")),
            self.bank("action", take("ll_action")),
            self.bank("gap", take("ll_gap")),
        ], dim=-1)  # [B, C, K, 4d]
        lifelong_interest = self.esu(target, events, found)
        x = torch.cat([fields.flatten(-2), short_interest, lifelong_interest, match_stats,
                       batch["item_pop"].unsqueeze(-1)], dim=-1)
        return self.mlp(x).squeeze(-1)


register_policy("sim", SIM, SIM.load)
