"""Lifelong histories, generated on demand.

A user's source-domain (content) history of ``source_length`` events over the last
``span_days`` days before t = 0, and a target-domain (shop) history of
``target_length`` events, are pure functions of (seed, stream, user): any user's history
is reproducible on its own, nothing is stored, and memory does not depend on the number
of users.  Batches of histories are materialised when a policy needs them.

What the histories reveal: active interests appear throughout both histories; dormant
interests appear only in source-domain events older than ``dormant_recency_days`` (so
they are absent from recent target-domain behaviour); 15% of events are exploration of
random categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simab.simulators.catalog import Catalog, Csr
from simab.simulators.population import Users
from simab.simulators.rng import generator
from simab.simulators.spec import WorldSpec
from simab.simulators.units import DAY

N_ACTIONS = 4  # view, like, share, comment (ids 1..4; 0 is padding)
_ACTION_P = np.array([0.7, 0.15, 0.05, 0.10])


@dataclass(frozen=True)
class Histories:
    """Padded histories for a batch of users, oldest first; ``mask`` True on real events."""

    item: np.ndarray  # [B, N] global item id (only valid where mask)
    category: np.ndarray  # [B, N]
    action: np.ndarray  # [B, N] 1..4
    ts: np.ndarray  # [B, N] seconds (negative: before the campaign starts)
    mask: np.ndarray  # [B, N] bool


def _pick_items(groups: Csr, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A popularity-skewed item of each category (groups are sorted by popularity)."""
    sizes = groups.sizes()[cats]
    idx = np.minimum((sizes * u**2).astype(np.int64), np.maximum(sizes - 1, 0))
    return groups.items[groups.offsets[cats] + idx]


class HistoryGenerator:
    def __init__(self, spec: WorldSpec, seed: int, catalog: Catalog):
        self.spec, self.seed, self.catalog = spec, seed, catalog

    def _one(self, users: Users, i: int, stream: str, length: int, groups: Csr, with_dormant: bool):
        g = generator(self.seed, stream, int(users.ids[i]))
        span = self.spec.lifelong.span_days * DAY
        ts = np.sort(-span * g.random(length))
        ia = users.active.shape[1]
        idm = users.dormant.shape[1]
        w = np.concatenate([users.active_w[i], users.dormant_w[i] if with_dormant else np.zeros(idm)])
        cats_all = np.concatenate([users.active[i], users.dormant[i]])
        recent = ts > -self.spec.lifelong.dormant_recency_days * DAY
        # dormant interests are only seen in old events
        p_old = w / w.sum()
        w_recent = w.copy()
        w_recent[ia:] = 0.0
        p_recent = w_recent / w_recent.sum()
        u_pick = g.random(length)
        slot = np.where(
            recent,
            np.searchsorted(np.cumsum(p_recent), u_pick * 0.9999999),
            np.searchsorted(np.cumsum(p_old), u_pick * 0.9999999),
        )
        cats = cats_all[np.minimum(slot, len(cats_all) - 1)]
        explore = g.random(length) < 0.15
        cats = np.where(explore, g.integers(0, self.catalog.n_categories, length), cats)
        items = _pick_items(groups, cats, g.random(length))
        actions = 1 + np.searchsorted(np.cumsum(_ACTION_P), g.random(length) * 0.9999999)
        return items, self.catalog.category[items], actions, ts

    def _batch(self, users: Users, stream: str, length: int, groups: Csr, with_dormant: bool, max_len: int | None):
        n = len(users)
        L = length if max_len is None else min(length, max_len)
        out = Histories(
            np.zeros((n, L), np.int64),
            np.zeros((n, L), np.int64),
            np.zeros((n, L), np.int64),
            np.zeros((n, L), np.float64),
            np.zeros((n, L), bool),
        )
        if length == 0 or L == 0:
            return out
        for i in range(n):
            it, ca, ac, ts = self._one(users, i, stream, length, groups, with_dormant)
            out.item[i], out.category[i], out.action[i], out.ts[i] = it[-L:], ca[-L:], ac[-L:], ts[-L:]
            out.mask[i] = True
        return out

    def source(self, users: Users, max_len: int | None = None) -> Histories:
        """Source-domain (content) lifelong history: active and dormant interests."""
        if not self.spec.lifelong.enabled:
            return self._batch(users, "history/source", 0, self.catalog.content_by_category, True, max_len)
        return self._batch(
            users, "history/source", self.spec.lifelong.source_length, self.catalog.content_by_category, True, max_len
        )

    def target(self, users: Users, max_len: int | None = None) -> Histories:
        """Target-domain (shop) history: recent behaviour shows active interests only."""
        return self._batch(users, "history/target", self.spec.lifelong.target_length, self.catalog.target_by_category, False, max_len)
