"""Offline ranking metrics (numpy): AUC, GAUC and logloss.

All functions take flat arrays; labels are clicks in {0, 1} (anything > 0.5 counts
as a click).  A metric that is undefined (one class only, no rows) is ``nan``.
"""

from __future__ import annotations

import numpy as np


def _positive(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels, dtype=np.float64).ravel() > 0.5


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic with tied ranks
    averaged (Hanley & McNeil 1982, eq. 2):
    ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``,
    where ``R_pos`` is the sum of the positives' (1-based, tie-averaged) ranks.
    Equals ``P(s+ > s-) + P(s+ = s-) / 2``.
    """
    y = _positive(labels)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # unique values are sorted: the block of value j occupies ranks cum[j-1]+1 .. cum[j]
    cum = np.cumsum(counts)
    avg_rank = cum - (counts - 1) / 2.0
    rank_sum = avg_rank[inverse][y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Group AUC (Zhou et al. 2018, DIN, eq. 6): the per-user AUC averaged with the
    user's impression count as weight, ``sum_u n_u AUC_u / sum_u n_u``, over users
    with both clicks and non-clicks (the others have no AUC and are left out).
    """
    y = _positive(labels)
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if y.size == 0:
        return float("nan")
    order = np.lexsort((s, g))
    y, s, g = y[order], s[order], g[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_tie = new_group | np.r_[True, s[1:] != s[:-1]]
    group_id = np.cumsum(new_group) - 1
    tie_id = np.cumsum(new_tie) - 1
    group_start = np.flatnonzero(new_group)
    position = np.arange(y.size) - group_start[group_id] + 1.0  # 1-based rank within the user
    avg_rank = (np.bincount(tie_id, weights=position) / np.bincount(tie_id))[tie_id]
    n = np.bincount(group_id).astype(np.float64)
    n_pos = np.bincount(group_id, weights=y.astype(np.float64))
    n_neg = n - n_pos
    rank_sum = np.bincount(group_id, weights=avg_rank * y)
    valid = (n_pos > 0) & (n_neg > 0)
    if not valid.any():
        return float("nan")
    per_user = (rank_sum[valid] - n_pos[valid] * (n_pos[valid] + 1) / 2.0) / (n_pos[valid] * n_neg[valid])
    return float((n[valid] * per_user).sum() / n[valid].sum())


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))`` with ``p``
    clipped to ``[eps, 1 - eps]`` so one confident mistake stays finite."""
    y = _positive(labels).astype(np.float64)
    if y.size == 0:
        return float("nan")
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1.0 - eps)
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


def offline_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray, probs: np.ndarray | None) -> dict:
    """``{"auc", "gauc", "logloss", "n"}`` for one slice; ``logloss`` is ``nan`` when the
    scores are not probabilities (``probs is None``)."""
    return {
        "auc": auc(labels, scores),
        "gauc": gauc(labels, scores, users),
        "logloss": logloss(labels, probs) if probs is not None else float("nan"),
        "n": int(np.asarray(labels).size),
    }
