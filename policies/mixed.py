"""A ranker for item-side and two-sided experiments: each candidate is scored by the policy
of its item's arm.

Under item-side (listing-side) randomisation every item, or every cluster of items, is in one
arm; a slate mixes items of both, so each candidate is ranked by its own arm's policy
(Johari, Li, Liskovich & Weintraub, "Experimental Design in Two-Sided Platforms: An Analysis
of Bias", Management Science 2022: a listing is treated, not a customer).  ``merge`` says how
the two policies' scores meet in one slate:

- ``score``: the candidate's own arm's score as it is (the policies share one scale, e.g. two
  variants of one model, or a score with and without a boost);
- ``rank``: minus the candidate's rank among the request's candidates under its own arm's
  policy (any two policies; ties fall to candidate order, as in every top-K here).

With every item in one arm the ranker ranks exactly as that arm's policy does.
"""

from __future__ import annotations

import numpy as np
import torch


class ItemSplitRanker:
    """Scores from ``control`` or ``treatment`` by each candidate's item arm.  ``treated``:
    bool per item id, or [G, items] with ``group_of(users)`` giving each request's row (items
    split differently in each market)."""

    trainable = False
    stochastic = False
    score_kind = "rank"

    def __init__(self, control, treatment, treated: np.ndarray, merge: str = "score", group_of=None):
        if merge not in ("score", "rank"):
            raise ValueError(f"merge must be 'score' or 'rank', got {merge!r}")
        self.control, self.treatment, self.merge = control, treatment, merge
        self.treated = np.atleast_2d(np.asarray(treated, bool))
        if len(self.treated) > 1 and group_of is None:
            raise ValueError("several item splits need group_of(users)")
        self.group_of = group_of
        self.name = f"items({control.name}|{treatment.name})"
        groups = (*control.feature_groups, *treatment.feature_groups, "target", *(("profile",) if group_of else ()))
        self.feature_groups = tuple(dict.fromkeys(groups))
        # both policies score every candidate
        self.service_us_per_candidate = sum(float(getattr(p, "service_us_per_candidate", 1.0))
                                            for p in (control, treatment))

    def score(self, batch) -> torch.Tensor:
        sc, st = self.control.score(batch), self.treatment.score(batch)
        if self.merge == "rank":
            sc, st = _minus_rank(sc), _minus_rank(st)
        items = batch["item"].to(torch.int64).numpy() - 1  # the batch's ids are shifted by one (0: padding)
        group = (np.zeros(len(items), np.int64) if self.group_of is None
                 else self.group_of(batch["user"].to(torch.int64).numpy() - 1))
        treated = torch.from_numpy(self.treated[group[:, None], items])
        return torch.where(treated, st.to(torch.float32), sc.to(torch.float32))


class NeuralItemSplitRanker(ItemSplitRanker):
    """An :class:`ItemSplitRanker` over at least one neural policy: it has ``parameters``, so the
    ranking service scores it in fixed zero-padded chunks (a row's floating-point work then does
    not depend on the rows it is scored with)."""

    def parameters(self):
        for p in (self.control, self.treatment):
            if hasattr(p, "parameters"):
                yield from p.parameters()


def item_split_ranker(control, treatment, treated: np.ndarray, merge: str = "score", group_of=None) -> ItemSplitRanker:
    """The ranker of :class:`ItemSplitRanker`, neural when either policy is."""
    neural = any(hasattr(p, "parameters") for p in (control, treatment))
    return (NeuralItemSplitRanker if neural else ItemSplitRanker)(control, treatment, treated, merge, group_of)


def _minus_rank(scores: torch.Tensor) -> torch.Tensor:
    """-(rank of each candidate in its row), rank 0 the highest score, ties by candidate order."""
    s = scores.detach().numpy()
    order = np.argsort(-s, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(s.shape[1])[None, :].repeat(len(s), 0), axis=1)
    return torch.from_numpy(-rank.astype(np.float32))
