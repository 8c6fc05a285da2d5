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
    ``max_gap_s`` apart; -1 when there is none.  The nearest such row in time is taken,
    looking as far as ``max_offset`` rows of the group in both directions: at each offset
    ``k`` the rows ``k`` before and ``k`` after compete and the smaller time gap wins (the
    earlier one on a tie), so a diff row is as often before its target as after it."""
    n = len(user)
    group = user.astype(np.int64) * (1 + (scenario.max() if same_scenario and n else 0)) + (
        scenario if same_scenario else 0
    )
    order = np.lexsort((ts, group))
    g, t, y = group[order], ts[order], label[order]
    partner = np.full(n, -1, np.int64)
    i = np.arange(n)

    def candidate(k: int) -> tuple[np.ndarray, np.ndarray]:
        j = i + k
        jj = np.clip(j, 0, max(n - 1, 0))
        gap = np.abs(t[jj] - t)
        ok = (j >= 0) & (j < n) & (g[jj] == g) & (y[jj] != y) & (gap >= min_gap_s) & (gap <= max_gap_s)
        return jj, np.where(ok, gap, np.inf)

    for k in range(1, max_offset + 1):
        todo = partner < 0
        if not todo.any():
            break
        after, gap_after = candidate(k)
        before, gap_before = candidate(-k)
        pick = np.where(gap_before <= gap_after, before, after)
        found = todo & np.isfinite(np.minimum(gap_before, gap_after))
        partner[found] = pick[found]
    out = np.full(n, -1, np.int64)
    hit = partner >= 0
    out[order[hit]] = order[partner[hit]]
    return out
