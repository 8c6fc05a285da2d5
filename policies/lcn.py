"""LCN: Lifelong Cross Network (seed 001, arXiv 2312.06424).

The paper's full text is not available to us; this module follows the seed summary and
marks every other choice as *assumed* (``docs/models.md`` has the table).  Read top
to bottom as the architecture:

1. **Lifelong Attention Pyramid (LAP)** over the source-domain lifelong sequence
   ``ll_*`` ``[B, N]`` (N = 2,000 on the ``lifelong`` world).  Three cascaded levels,
   "the input of each attention level is based on the output of its preceding level"
   (seed), the scope narrowing towards the candidate:

   - **Complete-scope attention (CSA)**, over all N events.  *Assumed*: to stay cheap it
     embeds only item ⊕ category of each event (⊕ the tag id both domains share, where the
     world has tags: the feature group ``tags``; no side information, no key projection:
     the N keys are never multiplied by a matrix) and scores it with a cosine
     ``s = scale · cos(W (q - m), k - m)`` (``csa_score="cosine"``), ``m`` the mean key
     of the user's real events, ``W`` identity-initialised (``csa_init``), ``scale``
     learnable (initial ``csa_scale = 5``); it reads the N events' embeddings as fixed
     (detached; its pooled output too since issue #30, so no gradient runs over all N
     events), so it trains ``W`` and the scale only.  Its output is the softmax-weighted
     sum of the keys.  Keeps the ``k1`` highest-scoring real events.  The selection has no
     gradient, so an auxiliary *match* loss trains the score as well
     (``csa_match_weight = 0.1``): on each clicked candidate, ``-log`` of CSA's softmax
     mass on the history events of the candidate's category or tag (``csa_match``).
     Why (numbers in ``docs/models.md``): the embeddings start at std 1e-2, so a raw
     bilinear score ``(W q)·k / sqrt(2d)`` is ~1e-4, its softmax over N events uniform
     and its gradient vanishing (``csa_score="bilinear"`` keeps that form); a cosine does
     not depend on the norms.  The identity ``W`` starts at "similar embedding =
     relevant".  The shared tables drift in a common direction in training, which would
     make every pair look alike to a cosine: ``m`` removes it.  A cosine's gradient grows
     as 1/norm, enough to take the shared tables over from their other consumers: hence
     the detached read.  The pooled output and score mass, CSA's BCE gradient paths,
     inform the MLP as well when matching events score *low*: the auxiliary loss fixes
     the sign with SIM's prior (a clicked target's category marks its relevant history)
     as a soft target, leaving ``W`` free to weigh the item half of the key.
     ``csa_prior="exact"`` (the default since issue #30) adds SIM's hard search to the
     score as a soft prior: a learnable weight (initial ``csa_prior_init = 3``) times the
     indicator that an event is of the candidate's category, and one more for its tag
     where the world has tags, so CSA starts where SIM's search is and learns how far to
     trust it against the learned similarity; ``"none"`` scores by similarity alone (the
     model before; on issue #30's dose page it kept about a third fewer of the category's
     events, ``docs/results/dose_lcn.md``).
   - **Median-scope attention (MSA)**, a target attention with side information over
     those ``k1`` events.  *Assumed*: keys are item ⊕ category ⊕ action ⊕ time-gap
     bucket embeddings; single-head bilinear score ``(W q)·k / sqrt(4d)`` (the query is
     mapped into key space, so no key is projected); output the softmax-weighted sum of
     the keys.  Keeps the ``k2`` highest-scoring events.  *Assumed* defaults
     ``k1 = 100``, ``k2 = 20`` (the seed gives no values).
   - **Focused-scope attention (FSA)**: multi-head target attention (``n_heads``,
     width ``fsa_dim``) over the ``k2`` events, same keys as MSA.

   *Assumed* (``score_mass``): CSA and MSA also output the log-sum-exp of their scores
   over the events they read, a soft count of relevant history that softmax pooling
   discards (SIM's baseline gets match counts for the same reason).

   The outputs of all active levels are concatenated with profile, scenario and target
   embeddings, a DIN unit over the short target-domain click sequence (*assumed*, so
   that LCN = DIN + lifelong modelling; ``short_seq="none"`` drops it) and the
   popularity prior, SIM's count features (``count_features``: ``log(1 + n)`` and the
   share of the lifelong events of the candidate's category) and, where the world has tags,
   the same for the candidate's tag (``tag_counts``, issue #30: over all events and over
   those of other categories; a softmax-pooled level says which events match, not how
   many), into an MLP.

   ``target_lifelong=True`` (default False) runs a second pyramid (``t_csa``, ``t_msa``,
   ``t_fsa``: the same levels and settings) over the *target-domain* lifelong history
   ``tl_*`` (the feature group ``target_lifelong``), as the seed models both domains', with
   its own count features; the auxiliary match loss and CRP stay on the source history.

   Switching a level off (``use_csa``/``use_msa``/``use_fsa``) removes both its output
   and its selection: the next active level reads the top-k of the preceding *active*
   level, or the most recent ``k`` events when no earlier level is active (*assumed*).
   ``pyramid=False`` replaces LAP by one full multi-head target attention (the FSA
   layer) over all N events: the cost baseline of the issue.

2. **Cross Representation Production (CRP)**, training only.  An InfoNCE loss
   (van den Oord et al. 2018, eq. 4) aligning target-domain and source-domain item
   representations.  *Assumed* pairs: the anchors are the row's *clicked* candidates
   (an unclicked exposure says nothing about what the user wants); the positive is
   picked among the same user's lifelong events (content items, whose ids never
   overlap shop items) by ``crp_positive``, a pluggable selector (:data:`CRP_POSITIVES`):
   ``"recent_same_tag"`` (default since issue #30) = the most recent event of the
   anchor's tag (the id both domains share; the category on a world without tags);
   ``"recent_same_category"`` = the most recent event of the anchor's category, one item;
   ``"category_mean"`` = the mean of all of them (a category-level positive, which can
   teach no more than "item ~ category", what the category table already carries).
   Anchors without a positive are skipped.  Negatives are the positives of the other
   anchors of another group (same-group ones are masked out: they are not negatives).  Representations
   (``crp_features``): ``"item"`` = the shared item-id embeddings (default, so the
   alignment acts on the id embeddings that no category feature already ties
   together); ``"item_cat"`` = item ⊕ category.  ``crp_projection = "mlp"`` passes both
   through a shared two-layer projection head first (as in SimCLR, Chen et al. 2020;
   default since issue #30: on the raw embeddings CRP's gradient dominated the item
   table's), so the contrastive term shapes the embeddings only through the head;
   ``"none"`` compares them directly.  Similarity is cosine / ``crp_temperature``;
   ``L = BCE + crp_weight · L_crp + csa_match_weight · L_match``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simab.policies.base import Batch, in_range, layer_sizes, one_of, register_policy
from simab.policies.features import FeatureSpec
from simab.policies.layers import (
    MLP,
    ActivationUnitAttention,
    EmbeddingBank,
    MultiHeadTargetAttention,
    candidate_fields,
    masked_softmax,
)
from simab.policies.neural import COMMON_DEFAULTS, COMMON_RULES, NeuralPolicy, check_heads
from simab.policies.sim import count_features


def top_k_positions(scores: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions ``[B, C, k']`` (``k' = min(k, N)``) of the ``k`` highest ``scores
    [B, C, N]`` among real events (``mask [B, N]`` or ``[B, C, N]``), highest first, and
    their mask (``False`` where the row has fewer than ``k`` real events).  Ties keep the
    more recent (later) position.  When ``k >= N`` every position is kept, in time order."""
    n = scores.shape[-1]
    k = min(k, n)
    if mask.dim() == 2:
        mask = mask.unsqueeze(1).expand_as(scores)
    if k == n:  # every event is kept (a batch cut to short histories): nothing to select, in time order
        return torch.arange(n, device=scores.device).expand(scores.shape), mask
    # Ties (the same item twice in a history scores exactly alike) go to the more recent
    # event: in float64 each event older than the newest loses 1e-12 per step, far below
    # the resolution of the float32 scores (so distinct scores keep their order) and counted
    # from the newest event, so the order does not depend on how much left padding a batch
    # carries (simab.policies.packing cuts it).  Masked events sort last.
    age = torch.arange(n - 1, -1, -1, device=scores.device, dtype=torch.float64)
    key = (scores.detach().double() - age * 1e-12).masked_fill(~mask, -math.inf)
    idx = key.topk(k, dim=-1).indices
    return idx, mask.gather(-1, idx)


def most_recent_positions(mask: torch.Tensor, n_candidates: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most recent real events of ``mask [B, N]`` (chronological order), as
    ``[B, C, k']`` positions and mask; used when no earlier pyramid level selects."""
    n = mask.shape[-1]
    recency = torch.arange(1, n + 1, device=mask.device, dtype=torch.float32).expand(mask.shape[0], n)
    return top_k_positions(recency.unsqueeze(1).expand(-1, n_candidates, -1), mask, k)


def score_mass(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log sum_n exp(score_n)`` over real events ``[B, C, N] -> [B, C, 1]`` (0 for an
    empty history): how much relevant history there is, which the softmax-pooled output
    alone cannot tell."""
    if mask.dim() == 2:
        mask = mask.unsqueeze(1).expand_as(scores)
    lse = torch.logsumexp(scores.masked_fill(~mask, -math.inf), dim=-1, keepdim=True)
    return torch.where(mask.any(-1, keepdim=True), lse, torch.zeros_like(lse))


def gather_events(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Per-request events ``x [B, N, ...]`` at per-candidate positions ``idx [B, C, k]``
    -> ``[B, C, k, ...]``."""
    b, c, k = idx.shape
    flat = idx.reshape(b, c * k)
    if x.dim() == 2:
        return x.gather(1, flat).reshape(b, c, k)
    # whole rows of the flattened [B·N, D] events: a row copy each (gather's expanded index is slower)
    rows = (flat + torch.arange(b, device=idx.device).unsqueeze(1) * x.shape[1]).reshape(-1)
    return x.reshape(b * x.shape[1], x.shape[-1]).index_select(0, rows).reshape(b, c, k, x.shape[-1])


def recent_same_category(batch: Batch, rows: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
    """CRP positive: one-hot ``[R, N]`` weights on the most recent real source event of
    user ``rows`` whose category is ``cats`` (all zero when there is none).  Lifelong
    sequences are oldest first, so it is the last matching position."""
    match = (batch["ll_cat"][rows] == cats.unsqueeze(1)) & batch["ll_mask"][rows]
    n = match.shape[-1]
    last = (match * torch.arange(1, n + 1, device=match.device)).argmax(-1)
    return F.one_hot(last, n) * match.any(-1, keepdim=True)


def category_mean(batch: Batch, rows: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
    """CRP positive: equal ``[R, N]`` weights on every real source event of user ``rows``
    whose category is ``cats`` (a category-level positive; all zero when there is none)."""
    match = ((batch["ll_cat"][rows] == cats.unsqueeze(1)) & batch["ll_mask"][rows]).float()
    return match / match.sum(-1, keepdim=True).clamp_min(1.0)


def category_counts(batch: Batch, seq: str = "ll") -> torch.Tensor:
    """``[B, C, 2]``: SIM's count features (``sim.count_features``) of the history's events
    of the candidate's category."""
    mask = batch[f"{seq}_mask"]
    n_match = ((batch[f"{seq}_cat"].unsqueeze(1) == batch["item_cat"].unsqueeze(-1)) & mask.unsqueeze(1)).sum(-1)
    return count_features(n_match, mask)


def tag_counts(batch: Batch, seq: str = "ll") -> torch.Tensor:
    """``[B, C, 4]``: the same counts for the candidate's tag (the id both domains share; tag 0
    is padding, never a match), over all the history's events and over those of other
    categories than the candidate's (what exact-category search cannot reach)."""
    mask = batch[f"{seq}_mask"]
    tag = ((batch[f"{seq}_tag"].unsqueeze(1) == batch["item_tag"].unsqueeze(-1)) & mask.unsqueeze(1)
           & (batch["item_tag"] > 0).unsqueeze(-1))  # [B, C, N]
    other = tag & (batch[f"{seq}_cat"].unsqueeze(1) != batch["item_cat"].unsqueeze(-1))
    return torch.cat([count_features(tag.sum(-1), mask), count_features(other.sum(-1), mask)], dim=-1)


def recent_same_tag(batch: Batch, rows: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """CRP positive: one-hot ``[R, N]`` weights on the most recent real source event of
    user ``rows`` whose tag is ``tags`` (the id both domains share; all zero when there is
    none, or when the world has no tags: tag 0 is padding)."""
    match = (batch["ll_tag"][rows] == tags.unsqueeze(1)) & batch["ll_mask"][rows] & (tags > 0).unsqueeze(1)
    n = match.shape[-1]
    last = (match * torch.arange(1, n + 1, device=match.device)).argmax(-1)
    return F.one_hot(last, n) * match.any(-1, keepdim=True)


#: History (``ll``: source-domain, ``tl``: target-domain) -> the prefix of its pyramid's
#: attributes (``csa``, ``msa``, ``fsa``; ``t_csa``, ...).
LEVEL_PREFIX = {"ll": "", "tl": "t_"}

#: ``crp_positive`` -> (``f(batch, rows [R], groups [R]) -> weights [R, N]`` over the
#: lifelong events of the anchors' users, the group the positive shares with its anchor:
#: ``"cat"`` or ``"tag"``).  Negatives are the other anchors' positives of another group.
CRP_POSITIVES = {"recent_same_category": (recent_same_category, "cat"), "category_mean": (category_mean, "cat"),
                 "recent_same_tag": (recent_same_tag, "tag")}


class CompleteScopeAttention(nn.Module):
    """CSA: ``scores [B, C, N]`` between each candidate and every event, and the
    softmax-pooled keys ``[B, C, dk]`` over every real event; see the module docstring.

    ``score="cosine"``: ``s = exp(log_scale) · cos(W (q - m), k - m)`` with ``m`` the
    mean key of the row's real events, computed on detached embeddings (the score trains
    ``W`` and the scale only).  ``score="bilinear"``: ``s = (W q)·k / sqrt(dk)``.
    ``init="identity"`` starts ``W`` at the identity (``query_dim == key_dim``),
    ``"random"`` at PyTorch's default uniform init."""

    def __init__(self, query_dim: int, key_dim: int, score: str = "cosine", init: str = "identity",
                 scale: float = 5.0, n_prior: int = 0, prior_init: float = 3.0):
        super().__init__()
        self.query = nn.Linear(query_dim, key_dim, bias=False)
        if init == "identity":
            nn.init.eye_(self.query.weight)
        self.cosine = score == "cosine"
        if self.cosine:
            self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        else:
            self.scale = 1.0 / math.sqrt(key_dim)
        # one learnable weight per exact-match indicator (``csa_prior="exact"``), added to the score
        self.prior = nn.Parameter(torch.full((n_prior,), float(prior_init))) if n_prior else None

    def forward(self, target: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor,
                matches: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``matches``: one ``[B, C, N]`` indicator per prior weight (required when the
        module has them): ``score += prior[i] · matches[i]``."""
        if self.cosine:
            # Detached: a cosine's gradient grows as 1/|embedding| (std 1e-2 here), enough
            # to take the shared tables over from the other consumers.  Centred: the tables
            # drift in a common direction, which would make every pair look alike.
            # In float64, rounded once at the end: in float32 the products' rounding depends on
            # the batch (how many padding columns, which kernel), so two copies of one item
            # in a history could score an ulp apart, and which of them CSA kept then depended
            # on the batch rather than on recency (the reference and wave engines disagreed)
            k = keys.detach().double()
            w = mask.double()
            centre = (torch.einsum("bn,bnd->bd", w, k) / w.sum(1, keepdim=True).clamp_min(1.0)).unsqueeze(1)  # [B, 1, dk]
            query = F.normalize(self.query(target.detach() - centre.to(target.dtype)).double(), dim=-1) \
                * self.log_scale.exp().double()
            # cos(q, k - m) without the [B, N, dk] difference: q·k - q·m over |k - m|, with
            # |k - m|² = |k|² - 2 k·m + |m|² (F.normalize's max(|x|, 1e-12), on the squares)
            kk = torch.einsum("bnd,bnd->bn", k, k)
            norm2 = kk - 2.0 * torch.einsum("bnd,bd->bn", k, centre[:, 0]) + centre[:, 0].square().sum(-1, keepdim=True)
            # an event at the centre (a one-event history) scores 0, as F.normalize's zero vector did:
            # below 1e-6 |k|² the difference is float32 rounding of the expansion
            inv_norm = torch.where(norm2 > 1e-6 * kk, norm2.clamp_min(1e-24).rsqrt(), torch.zeros_like(norm2))  # [B, N]
            scores = ((torch.einsum("bcd,bnd->bcn", query, k) - (query * centre).sum(-1, keepdim=True))
                      * inv_norm.unsqueeze(1)).to(keys.dtype)
        else:
            scores = torch.einsum("bcd,bnd->bcn", self.query(target), keys) * self.scale
        if self.prior is not None:
            if matches is None or len(matches) != len(self.prior):
                raise ValueError(f"CSA has {len(self.prior)} prior weight(s): pass as many match indicators")
            for w, m in zip(self.prior, matches, strict=True):
                scores = scores + w * m.to(scores.dtype)
        weights = masked_softmax(scores, mask.unsqueeze(1).expand_as(scores))
        return scores, torch.einsum("bcn,bnd->bcd", weights, keys)


class MedianScopeAttention(nn.Module):
    """MSA: single-head target attention over per-candidate events ``keys [B, C, k, dk]``
    (with side information) -> ``scores [B, C, k]`` and pooled keys ``[B, C, dk]``.

    The score is the bilinear form ``(W q)·k / sqrt(dk)``: the query is mapped into the
    key space once per candidate instead of projecting every key (the same family of
    scores as ``(W_q q)·(W_k k)`` at full rank, for ``k1`` times fewer products)."""

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        self.query = nn.Linear(query_dim, key_dim, bias=False)
        self.scale = 1.0 / math.sqrt(key_dim)

    def forward(self, target: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.einsum("bcd,bckd->bck", self.query(target), keys) * self.scale
        weights = masked_softmax(scores, mask)
        return scores, torch.einsum("bck,bckd->bcd", weights, keys)


class LCN(NeuralPolicy):
    name = "lcn"
    serve_batch = 16  # requests per scoring call (docs/benchmarks.md, "Neural arms")
    #: plus ``tags`` where the world provides them (:meth:`__init__`)
    feature_groups = ("profile", "scenario", "target", "short_seq", "lifelong")
    DEFAULTS: dict[str, Any] = {
        **COMMON_DEFAULTS,
        "pyramid": True,
        "use_csa": True,
        "use_msa": True,
        "use_fsa": True,
        "k1": 100,
        "k2": 20,
        "fsa_dim": 32,
        "n_heads": 2,
        "short_seq": "din",
        "score_mass": True,
        "attention_units": [64, 32],
        "crp_weight": 0.1,
        "crp_temperature": 0.1,
        "crp_features": "item",
        "crp_projection": "mlp",
        "csa_score": "cosine",
        "csa_init": "identity",
        "csa_scale": 5.0,
        "csa_match_weight": 0.1,
        "crp_positive": "recent_same_tag",
        "csa_match": "category_or_tag",
        "count_features": True,
        "tag_counts": True,
        "csa_prior": "exact",
        "csa_prior_init": 3.0,
        "target_lifelong": False,
    }
    #: parameters added after LCN checkpoints existed, at the value that builds LCN as before
    #: them: left out of the checkpoint key there (:func:`simab.policies.checkpoint.key_params`)
    KEY_NEUTRAL: dict[str, Any] = {"target_lifelong": False, "tag_counts": False}
    RULES = {
        **COMMON_RULES,
        "k1": in_range(1),
        "k2": in_range(1),
        "fsa_dim": in_range(1),
        "n_heads": in_range(1),
        "short_seq": one_of("din", "none"),
        "attention_units": layer_sizes(1),
        "crp_weight": in_range(0.0),
        "crp_temperature": in_range(0.0, lo_open=True),
        "crp_features": one_of("item", "item_cat"),
        "crp_projection": one_of("none", "mlp"),
        "csa_score": one_of("cosine", "bilinear"),
        "csa_init": one_of("identity", "random"),
        "csa_scale": in_range(0.0, lo_open=True),
        "csa_match_weight": in_range(0.0),
        "crp_positive": one_of(*CRP_POSITIVES),
        "csa_match": one_of("category", "tag", "category_or_tag"),
        "csa_prior": one_of("exact", "none"),
        "csa_prior_init": in_range(0.0),
    }

    def __init__(self, params: dict, feature_spec: FeatureSpec):
        # the shared tag ids, where the world provides them: an item's key is item ⊕ category ⊕ tag
        self.tags = "tags" in feature_spec.provides and feature_spec.n_tags > 1
        self.feature_groups = LCN.feature_groups + (("tags",) if self.tags else ()) \
            + (("target_lifelong",) if (params or {}).get("target_lifelong") else ())
        super().__init__(params, feature_spec)
        p, d = self.params, self.params["embedding_dim"]
        check_heads(self.name, p["fsa_dim"], "fsa_dim", p["n_heads"])
        self.bank = EmbeddingBank(feature_spec, d, ["item", "cat", "shop", "price", "scenario", "profile",
                                                    "action", "gap", *(["tag"] if self.tags else [])])
        kd = (3 if self.tags else 2) * d  # an item's key: item ⊕ category (⊕ tag)
        self.sequences = ("ll", "tl") if p["target_lifelong"] else ("ll",)  # source (and target-domain) histories
        n_counts = 2 * int(p["count_features"]) + 4 * int(p["tag_counts"] and self.tags)  # per history
        in_dim = feature_spec.input_width(d) + n_counts * len(self.sequences)
        if p["short_seq"] == "din":
            self.short_attention = ActivationUnitAttention(2 * d, p["attention_units"], activation=p["activation"])
            in_dim += 2 * d
        for seq in self.sequences:  # one pyramid per history: csa / msa / fsa, the target's t_csa / t_msa / t_fsa
            pre = LEVEL_PREFIX[seq]
            if p["pyramid"]:
                if p["use_csa"]:
                    n_prior = (2 if self.tags else 1) if p["csa_prior"] == "exact" else 0  # category (and tag) match
                    setattr(self, pre + "csa", CompleteScopeAttention(kd, kd, p["csa_score"], p["csa_init"],
                                                                      p["csa_scale"], n_prior, p["csa_prior_init"]))
                    in_dim += kd + int(p["score_mass"])
                if p["use_msa"]:
                    setattr(self, pre + "msa", MedianScopeAttention(kd, kd + 2 * d))
                    in_dim += kd + 2 * d + int(p["score_mass"])
            if p["use_fsa"] or not p["pyramid"]:
                setattr(self, pre + "fsa", MultiHeadTargetAttention(kd, kd + 2 * d, p["fsa_dim"], n_heads=p["n_heads"]))
                in_dim += p["fsa_dim"]
        self.mlp = MLP(in_dim, p["mlp_units"], out_dim=1, activation=p["activation"], dropout=p["dropout"])
        if p["crp_projection"] == "mlp":
            crp_dim = d if p["crp_features"] == "item" else kd
            self.crp_head = MLP(crp_dim, [crp_dim], out_dim=crp_dim, activation=p["activation"])
        self._crp: tuple[torch.Tensor, ...] | None = None
        self._csa_scores: torch.Tensor | None = None

    # Lifelong event representations -------------------------------------------------
    def key(self, batch: Batch, items: str, cats: str, tags: str, idx: torch.Tensor | None = None) -> torch.Tensor:
        """item ⊕ category (⊕ tag, where the world has tags) embeddings of ``batch[items]``
        etc. (at per-candidate positions ``idx`` when given) -> ``[..., kd]``."""
        take = (lambda k: batch[k]) if idx is None else (lambda k: gather_events(batch[k], idx))
        if not self.tags:
            return self.bank.item_key(take(items), take(cats))
        return torch.cat([self.bank("item", take(items)), self.bank("cat", take(cats)), self.bank("tag", take(tags))],
                         dim=-1)  # one concatenation (item_key's and another would copy the N events twice)

    def _events(self, batch: Batch, keys: torch.Tensor, idx: torch.Tensor, full: list, seq: str = "ll") -> torch.Tensor:
        """item ⊕ category ⊕ action ⊕ gap embeddings of the events at per-candidate positions
        ``idx [B, C, k]`` -> ``[B, C, k, 4d]``; ``keys`` are the item ⊕ category embeddings
        of all N events.  Serving (C candidates x k positions above N) embeds the N events
        once and gathers rows (``full`` keeps them for the next level); training (C = 1)
        looks up only the gathered positions (whose backward goes straight to the tables;
        a gather's backward would write zeros over all N events).  The same values either way."""
        n = batch[f"{seq}_item"].shape[1]
        if idx.shape[1] * idx.shape[2] >= n:
            if not full:
                if torch.is_grad_enabled() and not keys.requires_grad:  # CSA's fixed keys: these events train
                    keys = self.key(batch, f"{seq}_item", f"{seq}_cat", f"{seq}_tag")
                full.append(torch.cat([keys, self.bank("action", batch[f"{seq}_action"]),
                                       self.bank("gap", batch[f"{seq}_gap"])], dim=-1))
            return gather_events(full[0], idx)
        def take(name: str) -> torch.Tensor:
            return gather_events(batch[f"{seq}_{name}"], idx)

        return torch.cat([self.key(batch, f"{seq}_item", f"{seq}_cat", f"{seq}_tag", idx), self.bank("action", take("action")),
                          self.bank("gap", take("gap"))], dim=-1)

    def level(self, name: str, seq: str = "ll") -> nn.Module:
        """The pyramid level ``name`` (``csa``, ``msa``, ``fsa``) over history ``seq``
        (``ll``: source-domain, ``tl``: target-domain)."""
        return getattr(self, LEVEL_PREFIX[seq] + name)

    def exact_matches(self, batch: Batch, seq: str = "ll") -> list[torch.Tensor]:
        """``[B, C, N]`` indicators of the events of history ``seq`` of each candidate's
        category and (where the world has tags) of its tag: SIM's hard search, as CSA's prior."""
        out = [batch[f"{seq}_cat"].unsqueeze(1) == batch["item_cat"].unsqueeze(-1)]
        if self.tags:  # tag 0 is padding: never a match
            out.append((batch[f"{seq}_tag"].unsqueeze(1) == batch["item_tag"].unsqueeze(-1))
                       & (batch["item_tag"] > 0).unsqueeze(-1))
        return out

    def csa_scores(self, batch: Batch, target: torch.Tensor, keys: torch.Tensor,
                   seq: str = "ll") -> tuple[torch.Tensor, torch.Tensor]:
        """CSA's ``scores [B, C, N]`` and pooled keys for ``target`` against the ``keys`` of
        history ``seq``, with the exact-match prior where ``csa_prior="exact"``."""
        csa = self.level("csa", seq)
        matches = self.exact_matches(batch, seq) if csa.prior is not None else None
        return csa(target, keys, batch[f"{seq}_mask"], matches)

    def lifelong_interest(self, batch: Batch, target: torch.Tensor, seq: str = "ll") -> list[torch.Tensor]:
        """The outputs of the active pyramid levels (or of full attention) over history
        ``seq``, each ``[B, C, *]``."""
        p, mask = self.params, batch[f"{seq}_mask"]
        # the cosine CSA reads the N events' embeddings as fixed (its score always did, its
        # pooled output too since issue #30): no gradient over all N events, whose embedding
        # backward was a quarter of a training step; MSA and FSA train the events they read
        fixed = p["pyramid"] and p["use_csa"] and p["csa_score"] == "cosine"
        with torch.set_grad_enabled(torch.is_grad_enabled() and not fixed):
            keys = self.key(batch, f"{seq}_item", f"{seq}_cat", f"{seq}_tag")  # [B, N, kd]
        if not p["pyramid"]:
            return [self.level("fsa", seq)(target, torch.cat([keys, self.bank("action", batch[f"{seq}_action"]),
                                                              self.bank("gap", batch[f"{seq}_gap"])], dim=-1), mask)]
        n_cand = target.shape[1]
        outputs: list[torch.Tensor] = []
        full: list[torch.Tensor] = []  # all N events' full embeddings, once computed
        idx = sel_mask = None  # the preceding active level's selection
        if p["use_csa"]:
            scores, pooled = self.csa_scores(batch, target, keys, seq)
            if self.training and p["csa_match_weight"] > 0 and seq == "ll":  # the match loss: source CSA only
                self._csa_scores = scores
            outputs.append(pooled)
            if p["score_mass"]:
                outputs.append(score_mass(scores, mask))
            idx, sel_mask = top_k_positions(scores, mask, p["k1"])
        if p["use_msa"]:
            if idx is None:
                idx, sel_mask = most_recent_positions(mask, n_cand, p["k1"])
            scores, pooled = self.level("msa", seq)(target, self._events(batch, keys, idx, full, seq), sel_mask)
            outputs.append(pooled)
            if p["score_mass"]:
                outputs.append(score_mass(scores, sel_mask))
            local, local_mask = top_k_positions(scores, sel_mask, p["k2"])
            idx, sel_mask = idx.gather(-1, local), local_mask
        if p["use_fsa"]:
            if idx is None:
                idx, sel_mask = most_recent_positions(mask, n_cand, p["k2"])
            elif idx.shape[-1] > p["k2"]:  # MSA off: keep CSA's k2 best for FSA
                idx, sel_mask = idx[..., : p["k2"]], sel_mask[..., : p["k2"]]
            outputs.append(self.level("fsa", seq)(target, self._events(batch, keys, idx, full, seq), sel_mask))
        return outputs

    def forward(self, batch: Batch) -> torch.Tensor:
        fields = candidate_fields(self.bank, batch)  # [B, C, F, d]
        target = self.key(batch, "item", "item_cat", "item_tag")  # [B, C, kd]
        parts = [fields.flatten(-2)]
        for seq in self.sequences:
            if self.params["count_features"]:  # SIM's: how many events of the history share the candidate's category
                parts.append(category_counts(batch, seq))
            if self.params["tag_counts"] and self.tags:  # the same for the tag both domains share
                parts.append(tag_counts(batch, seq))
        if self.params["short_seq"] == "din":
            short = self.bank.item_key(batch["seq_item"], batch["seq_cat"])
            parts.append(self.short_attention(target[..., : 2 * self.bank.dim], short, batch["seq_mask"]))
        self._csa_scores = None
        for seq in self.sequences:
            parts += self.lifelong_interest(batch, target, seq)
        parts.append(batch["item_pop"].unsqueeze(-1))
        use_crp = self.training and self.params["crp_weight"] > 0 and "label" in batch
        self._crp = self.crp_pairs(batch) if use_crp else None
        return self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)

    # Cross Representation Production ------------------------------------------------
    def _item_repr(self, batch: Batch, prefix: str, rows: torch.Tensor, cand: torch.Tensor | None) -> torch.Tensor:
        """The CRP representation of the candidates (``prefix="item"``, at ``rows, cand``)
        or of the lifelong events (``"ll"``, rows ``rows``): the item id embedding, or the
        whole key (``crp_features="item_cat"``)."""
        names = ("item", "item_cat", "item_tag") if prefix == "item" else ("ll_item", "ll_cat", "ll_tag")
        sub = {k: (batch[k][rows, cand] if cand is not None else batch[k][rows]) for k in names if k in batch}
        if self.params["crp_features"] == "item":
            return self.bank("item", sub[names[0]])
        return self.key(sub, *names)

    def crp_pairs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Anchors ``[R, D]`` (the clicked candidates: ``label > 0``), positives ``[R, D]``
        (the representation of the same user's source events that ``crp_positive``
        weights) and the anchors' groups ``[R]`` (category or tag, the selector's), for the
        ``R`` clicked candidates that have a positive."""
        clicked = batch["label"] > 0  # [B, C]
        rows, cand = clicked.nonzero(as_tuple=True)
        select, group = CRP_POSITIVES[self.params["crp_positive"]]
        if group == "tag" and not self.tags:  # a world without tags: the category is the finest shared group
            select, group = CRP_POSITIVES["recent_same_category"]
        group_ids = batch["item_cat" if group == "cat" else "item_tag"][rows, cand]
        weights = select(batch, rows, group_ids)  # [R, N]
        has = weights.sum(-1) > 0
        rows, cand, group_ids, weights = rows[has], cand[has], group_ids[has], weights[has]
        # the anchors' users' events looked up again (R rows, R << B): taking them from CSA's
        # [B, N, kd] keys would make the backward write zeros over all B rows' N events
        source = self._item_repr(batch, "ll", rows, None)  # [R, N, D]
        positive = torch.einsum("rn,rnd->rd", weights.to(source.dtype), source)
        return self._item_repr(batch, "item", rows, cand), positive, group_ids

    def crp_loss(self, anchor: torch.Tensor, positive: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
        """InfoNCE: ``-mean log softmax_j(cos(a_i, p_j)/tau)[i]`` over the columns ``j = i``
        or of another group ``cats`` (category or tag; same-group columns are not negatives)."""
        if anchor.shape[0] == 0:
            return anchor.sum() * 0.0
        logits = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).T / self.params["crp_temperature"]
        same = cats.unsqueeze(0) == cats.unsqueeze(1)
        not_negative = same & ~torch.eye(len(cats), dtype=torch.bool, device=cats.device)
        logits = logits.masked_fill(not_negative, -math.inf)
        target = torch.arange(len(cats), device=cats.device)
        return F.cross_entropy(logits, target)

    def csa_match_loss(self, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        """``-mean log(CSA attention mass on the matching events)`` over the clicked
        candidates that have such events (0 when there is none); matching (``csa_match``):
        of the target's category, of its tag, or either (a world without tags: category)."""
        mask = batch["ll_mask"].unsqueeze(1).expand_as(scores)
        how = self.params["csa_match"] if self.tags else "category"
        match = torch.zeros_like(mask)
        if how != "tag":
            match = match | (batch["ll_cat"].unsqueeze(1) == batch["item_cat"].unsqueeze(-1))
        if how != "category":  # tag 0 is padding (a world without topics): never a match
            match = match | ((batch["ll_tag"].unsqueeze(1) == batch["item_tag"].unsqueeze(-1))
                             & (batch["item_tag"] > 0).unsqueeze(-1))
        match = match & mask  # [B, C, N]
        rows = (batch["label"] > 0) & match.any(-1)
        if not rows.any():
            return scores.sum() * 0.0
        all_lse = torch.logsumexp(scores.masked_fill(~mask, -math.inf)[rows], dim=-1)
        match_lse = torch.logsumexp(scores.masked_fill(~match, -math.inf)[rows], dim=-1)
        return (all_lse - match_lse).mean()

    def loss(self, batch: Batch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``BCE + crp_weight · L_crp + csa_match_weight · L_match`` (the extra terms only
        on training forwards)."""
        bce, parts = super().loss(batch, logits)
        if self._csa_scores is not None:
            match = self.csa_match_loss(self._csa_scores, batch)
            self._csa_scores = None
            parts["csa_match"] = match.detach()
            bce = bce + self.params["csa_match_weight"] * match
        if self._crp is None:
            return bce, parts
        anchor, positive, cats = self._crp
        if self.params["crp_projection"] == "mlp":
            anchor, positive = self.crp_head(anchor), self.crp_head(positive)
        crp = self.crp_loss(anchor, positive, cats)
        self._crp = None
        parts["crp"] = crp.detach()
        return bce + self.params["crp_weight"] * crp, parts


register_policy("lcn", LCN, LCN.load)
