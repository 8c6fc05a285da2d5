"""Lifelong histories, generated on demand.

A user's source-domain (content) history of ``source_length`` events over the last
``span_days`` days before t = 0, and a target-domain (shop) history of
``target_length`` events, are pure functions of (seed, stream, user): any user's history
is reproducible on its own, nothing is stored, and memory does not depend on the number
of users.  Batches of histories are materialised when a policy needs them, vectorised
over the batch with the counter-based draws of ``simulators/rng.py`` (slots:
``streams.history_counters``).

What the histories reveal: active interests appear throughout both histories; dormant
interests appear only in source-domain events older than ``dormant_recency_days`` (so
they are absent from recent target-domain behaviour); 15% of events are exploration of
random categories.

Timestamps are the order statistics of ``length`` uniform times over the span, drawn
newest first (Bentley & Saxe, "Generating sorted lists of random numbers", ACM TOMS
6(3), 1980): the newest is ``1 - V_0^(1/n)`` of the span before t = 0 and each older
one multiplies the remaining fraction by ``V_k^(1/(n - k))``.  This is the law of a
sorted uniform sample, and it lets ``max_len`` draw only the events it keeps: the
newest ``m`` events are the same whatever ``max_len >= m`` asks for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simab.simulators import rng
from simab.simulators.catalog import Catalog, Csr
from simab.simulators.population import Users
from simab.simulators.spec import WorldSpec
from simab.simulators.streams import HistoryDraw, history_counters
from simab.simulators.units import DAY

N_ACTIONS = 4  # view, like, share, comment (ids 1..4; 0 is padding)
ACTION_P = np.array([0.7, 0.15, 0.05, 0.10])  # P(view, like, share, comment) of a history event


@dataclass(frozen=True)
class Histories:
    """Padded histories for a batch of users, oldest first; ``mask`` True on real events."""

    item: np.ndarray  # [B, N] global item id (only valid where mask)
    category: np.ndarray  # [B, N]
    action: np.ndarray  # [B, N] 1..4
    ts: np.ndarray  # [B, N] seconds (negative: before the campaign starts)
    mask: np.ndarray  # [B, N] bool


def pick_items(groups: Csr, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
    """A popularity-skewed item of each category (groups are sorted by popularity)."""
    sizes = groups.sizes()[cats]
    idx = np.minimum((sizes * u**2).astype(np.int64), np.maximum(sizes - 1, 0))
    return groups.items[groups.offsets[cats] + idx]


EXPLORATION = 0.15  # share of events about a uniformly random category
_CHUNK = 1 << 15  # events per vectorised pass: temporaries stay cache-sized


class HistoryGenerator:
    def __init__(self, spec: WorldSpec, seed: int, catalog: Catalog):
        self.spec, self.seed, self.catalog = spec, seed, catalog
        self._keys = {name: rng.stream_key(seed, name) for name in ("history/source", "history/target")}

    def _events(self, users: Users, rows: slice, stream: str, length: int, n: int, groups: Csr, with_dormant: bool):
        """The newest ``n`` of ``length`` events of users ``rows``, newest first:
        (item, category, action, ts), each ``[b, n]``."""
        counters = history_counters(n)
        u = {d: rng.uniform(self._keys[stream], users.ids[rows, None], counters[None, :, d]) for d in HistoryDraw}
        lf = self.spec.lifelong
        # descending order statistics of `length` uniforms (module docstring)
        ts = lf.span_days * DAY * np.expm1(np.cumsum(np.log(u[HistoryDraw.GAP]) / (length - np.arange(n)), axis=1))
        # one uniform decides the category: below EXPLORATION it is a uniformly random
        # category (u / EXPLORATION is uniform there), above it picks an interest by weight
        # ((u - EXPLORATION) / (1 - EXPLORATION) is uniform there)
        uc = u[HistoryDraw.CATEGORY]
        explore = uc < EXPLORATION
        wa = users.active_w[rows]
        w = np.concatenate([wa, users.dormant_w[rows] if with_dormant else np.zeros_like(users.dormant_w[rows])], 1)
        total = w.sum(1, keepdims=True)
        cum = np.cumsum(w / total, axis=1)
        v = (uc - EXPLORATION) / (1.0 - EXPLORATION) * 0.9999999
        # dormant interests are only seen in old events: a recent event's uniform is
        # scaled into the active interests' share of the cumulative weights
        recent = ts > -lf.dormant_recency_days * DAY
        v = np.where(recent, v * (wa.sum(1, keepdims=True) / total), v)
        # the interest is the left insertion point of v in the row's cumulative weights
        slot = np.zeros(v.shape, np.int64)
        for j in range(cum.shape[1]):
            slot += v > cum[:, j, None]
        cats_all = np.concatenate([users.active[rows], users.dormant[rows]], axis=1)
        cats = np.take_along_axis(cats_all, np.minimum(slot, cats_all.shape[1] - 1), axis=1)
        cats = np.where(explore, rng.scale(uc / EXPLORATION, self.catalog.n_categories), cats)
        items = pick_items(groups, cats, u[HistoryDraw.ITEM])
        actions = 1 + np.searchsorted(np.cumsum(ACTION_P), u[HistoryDraw.ACTION] * 0.9999999)
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
        step = max(1, _CHUNK // L)
        for lo in range(0, n, step):
            rows = slice(lo, min(lo + step, n))
            newest_first = self._events(users, rows, stream, length, L, groups, with_dormant)
            for dst, src in zip((out.item, out.category, out.action, out.ts), newest_first, strict=True):
                dst[rows] = src[:, ::-1]  # oldest first
        out.mask[:] = True
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
