"""Marginal propensities P(item at position k | request) of the logging policy's modes
(``LoggingPolicy``, policies/simple.py), the quantity item-position IPS divides by
(docs/ope.md).  The logger logs only each pick's probability given the earlier picks.

- ``uniform``: 1 / C, exact.
- ``epsilon``: exact, by a Markov chain per item.  Rank the candidates by popularity as the
  logger's ``argmax`` does (stable: ties go to the earlier candidate).  For the item of rank
  ``r`` the state after ``p`` picks is whether it was taken and ``j``, how many of the ``r``
  items ranked above it are still free; a pick exploits (w.p. 1 - eps, the best free item:
  one of the ``j`` if ``j > 0``, else the item itself) or explores (w.p. eps, uniform over
  the ``C - p`` free ones: the item, one of the ``j``, or one ranked below).  So
  P(item at k) = sum_j P(free, j after k picks) [(1 - eps) 1{j = 0} + eps / (C - k)];
  O(C K) per (request, position).
- ``plackett_luce``: no closed form (a sum over the orderings of the prefix), so a Monte
  Carlo average over ``M`` prefixes, Rao-Blackwellised and importance-sampled so that it is
  never 0: with weights ``w = exp(s / T)`` and ``W`` their sum,

      P(a at k) = E_{S ~ PL(candidates without a)} [ prod_{i<k} (1 - w_a / (W - w(S_<i)))
                                                      * w_a / (W - w(S_<k)) ],

  where ``S_<i`` are the first ``i`` items of a Plackett-Luce ranking of the candidates other
  than ``a`` (the ratio of the prefix's probability under the logger to its probability
  without ``a``, times the logger's closed-form conditional probability of ``a`` given the
  prefix).  Every term is positive, so the estimate is too, and it is exact at position 0
  and for equal weights (every term is then 1 / C).  The prefixes are Gumbel top-k draws
  from counter-based uniforms keyed by request id (stream ``ope-marginal/<arm>``), so the
  estimate is the same whatever the shards or workers.
"""

from __future__ import annotations

import numpy as np

#: Plackett-Luce Monte Carlo prefixes per request.  The relative standard error of a
#: marginal is the terms' coefficient of variation / sqrt(M), logged per row
#: (``marginal_se``) and summarised in ope.json.
MC_DRAWS = 128
#: Requests per vectorised block of the Plackett-Luce estimate (bounds memory: B x M x C).
MC_CHUNK = 256


def popularity_rank(pop: np.ndarray) -> np.ndarray:
    """Each candidate's rank [B, C] in the epsilon logger's exploit order: by popularity,
    descending, ties to the earlier candidate (what ``argmax`` over the free ones picks)."""
    order = np.argsort(-pop, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(pop.shape[1])[None, :], axis=1)
    return rank


def epsilon_marginal(pop: np.ndarray, idx: np.ndarray, eps: float) -> np.ndarray:
    """Exact P(candidate ``idx[b, k]`` at position ``k``) [B, K] under the epsilon logger
    over popularity ``pop`` [B, C] (module docstring)."""
    B, C = pop.shape
    K = idx.shape[1]
    r = np.take_along_axis(popularity_rank(pop), idx, axis=1).reshape(-1)  # [B K]
    k_of = np.tile(np.arange(K), B)
    n = len(r)
    rows = np.arange(n)
    v = np.zeros((n, C))  # P(the item is free and j of its r betters are free), j = 0..C-1
    v[rows, r] = 1.0
    out = np.zeros(n)
    j = np.arange(C)[None, :]
    for p in range(K):
        free = C - p
        at = k_of == p
        out[at] = v[at, 0] * (1 - eps) + v[at].sum(axis=1) * eps / free
        # one pick: a better one goes (exploit when j > 0, or explore onto one of the j);
        # the item itself goes (leaves the chain); or one ranked below goes (j stays)
        down = np.where(j > 0, (1 - eps) + eps * j / free, 0.0)
        stay = np.where(j > 0, eps * (free - j - 1) / free, eps * (free - 1) / free)
        v = v * stay + np.concatenate([v[:, 1:] * down[:, 1:], np.zeros((n, 1))], axis=1)
    return out.reshape(B, K)


def plackett_luce_marginal(logits: np.ndarray, idx: np.ndarray, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo P(candidate ``idx[b, k]`` at position ``k``) [B, K] under Plackett-Luce
    over ``logits`` [B, C] (module docstring) from ``uniforms`` [B, M C] (M prefixes of C
    Gumbel keys each); returns the estimate and its standard error (over the M terms)."""
    B, C = logits.shape
    K = idx.shape[1]
    M = uniforms.shape[1] // C
    est, se = np.empty((B, K)), np.empty((B, K))
    for lo in range(0, B, MC_CHUNK):
        sl = slice(lo, min(lo + MC_CHUNK, B))
        est[sl], se[sl] = _pl_block(logits[sl], idx[sl], uniforms[sl].reshape(-1, M, C), K)
    return est, se


def _pl_block(logits: np.ndarray, idx: np.ndarray, u: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    b, M, C = u.shape
    w = np.exp(logits - logits.max(axis=1, keepdims=True))  # [b, C]
    W = w.sum(axis=1)
    keys = logits[:, None, :] - np.log(-np.log(u))  # Gumbel keys [b, M, C]
    order = np.argsort(-keys, axis=2, kind="stable")
    ws = np.take_along_axis(np.broadcast_to(w[:, None, :], (b, M, C)), order, axis=2)
    c = np.concatenate([np.zeros((b, M, 1)), np.cumsum(ws, axis=2)], axis=2)  # c[i]: first i sorted
    place = np.empty_like(order)
    np.put_along_axis(place, order, np.arange(C)[None, None, :], axis=2)  # each candidate's slot
    wa = np.take_along_axis(w, idx, axis=1)  # [b, K] the weight of each position's item
    slot = np.take_along_axis(place, np.broadcast_to(idx[:, None, :], (b, M, K)), axis=2)  # [b, M, K]
    i = np.arange(K)
    # S_i: weight of the first i items of the ranking without a = c[i] up to a's slot, else
    # c[i + 1] - w_a (a skipped); [b, M, K (the row's position), K (i)]
    S = np.where(i[None, None, None, :] <= slot[..., None], c[:, :, None, :K],
                 c[:, :, None, 1:K + 1] - wa[:, None, :, None])
    rest = W[:, None, None, None] - S  # weight still free before pick i
    ratio = 1.0 - wa[:, None, :, None] / rest  # P(a not picked at i | prefix) under the logger
    k = np.arange(K)
    before = np.where(i[None, None, None, :] < k[None, None, :, None], ratio, 1.0).prod(axis=3)
    last = np.take_along_axis(rest, np.broadcast_to(k[None, None, :, None], (b, M, K, 1)), axis=3)[..., 0]
    terms = before * wa[:, None, :] / last  # [b, M, K]
    return terms.mean(axis=1), terms.std(axis=1, ddof=1) / np.sqrt(M)
