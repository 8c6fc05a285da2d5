"""TSP pair mining for AMEN (seed 000, section 2.3): each training row's *diff* row of
the same user with the opposite click label.  Pure numpy over the log's columns."""

from __future__ import annotations

import numpy as np


def mine_pairs(
    user: np.ndarray,
    scenario: np.ndarray,
    ts: np.ndarray,
    label: np.ndarray,
    *,
    min_gap_s: float = 60.0,
    max_gap_s: float = 7 * 86400.0,
    same_scenario: bool = True,
    max_offset: int = 64,
) -> np.ndarray:
    """TSP pair mining: for each row the index of a *diff* row of the same user (and the
    same scenario when ``same_scenario``) with the opposite click label, ``min_gap_s`` to
    ``max_gap_s`` apart; -1 when there is none.  The nearest such row in time order is
    taken (looking up to ``max_offset`` rows forward, then backward)."""
    n = len(user)
    group = user.astype(np.int64) * (1 + (scenario.max() if same_scenario and n else 0)) + (
        scenario if same_scenario else 0
    )
    order = np.lexsort((ts, group))
    g, t, y = group[order], ts[order], label[order]
    partner = np.full(n, -1, np.int64)
    for k in list(range(1, max_offset + 1)) + [-k for k in range(1, max_offset + 1)]:
        todo = partner < 0
        if not todo.any():
            break
        i = np.arange(n)
        j = i + k
        ok = (j >= 0) & (j < n)
        jj = np.clip(j, 0, max(n - 1, 0))
        gap = np.abs(t[jj] - t)
        ok &= todo & (g[jj] == g) & (y[jj] != y) & (gap >= min_gap_s) & (gap <= max_gap_s)
        partner[ok] = jj[ok]
    out = np.full(n, -1, np.int64)
    hit = partner >= 0
    out[order[hit]] = order[partner[hit]]
    return out
