"""Lifelong histories, generated on demand.

A user's source-domain (content) history of up to ``source_length`` events over the last
``span_days`` days before t = 0, and a target-domain (shop) history of up to
``target_length`` events (per-user lengths: :meth:`HistoryGenerator.lengths`), are pure functions of (seed, stream, user): any user's history
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
from simab.simulators.streams import HistoryDraw, Stream, history_counters
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
        self._keys = {s: rng.stream_key(seed, s) for s in (Stream.HISTORY_SOURCE, Stream.HISTORY_TARGET)}

    def _events(self, users: Users, rows: slice, stream: str, length: np.ndarray | int, n: int, groups: Csr,
                with_dormant: bool):
        """The newest ``n`` events of users ``rows`` whose histories hold ``length`` events
        (an int, or one per row), newest first: (item, category, action, ts), each ``[b, n]``;
        slots at or beyond a row's length are drawn but are not events (the caller masks them)."""
        counters = history_counters(n)
        u = {d: rng.uniform(self._keys[stream], users.ids[rows, None], counters[None, :, d]) for d in HistoryDraw}
        lf = self.spec.lifelong
        # descending order statistics of `length` uniforms (module docstring)
        left = np.maximum(np.asarray(length)[..., None] - np.arange(n), 1) if np.ndim(length) else length - np.arange(n)
        ts = lf.span_days * DAY * np.expm1(np.cumsum(np.log(u[HistoryDraw.GAP]) / left, axis=1))
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
        ui = u[HistoryDraw.ITEM]
        a = lf.item_affinity if self.catalog.n_topics else 0.0
        if a > 0:
            # with probability item_affinity an event about an interest is an item of the
            # user's topic in it (the same uniform decides, then picks within the group)
            topics_all = users.topics[rows]
            topic = np.take_along_axis(topics_all, np.minimum(slot, topics_all.shape[1] - 1), axis=1)
            interest = ~explore
            own = interest & (ui < a)
            # the uniform rescaled within its branch stays uniform there
            u_pick = np.where(interest, np.where(own, ui / a, (ui - a) / max(1.0 - a, 1e-12)), ui)
            by_topic = self.catalog.content_by_topic if groups is self.catalog.content_by_category \
                else self.catalog.target_by_topic
            key = cats * self.catalog.n_topics + topic
            own &= by_topic.sizes()[key] > 0  # a (category, topic) with no item of this domain: by popularity
            items = np.where(own, pick_items(by_topic, np.where(own, key, 0), u_pick), pick_items(groups, cats, u_pick))
        else:
            items = pick_items(groups, cats, ui)
        actions = 1 + np.searchsorted(np.cumsum(ACTION_P), u[HistoryDraw.ACTION] * 0.9999999)
        return items, self.catalog.category[items], actions, ts

    def lengths(self, users: Users, cap: int) -> np.ndarray | int:
        """Each user's number of history events when the cap is ``cap``: ``cap`` for every
        user when ``lifelong.length_sigma`` is 0 and ``length_median_share`` is 1, else
        ``cap * share * exp(sigma * z)`` rounded and clipped to [1, cap] (log-normal: a few
        users have long histories, most have short ones; ``z`` is correlated with activity)."""
        lf = self.spec.lifelong
        if cap == 0 or (lf.length_sigma == 0.0 and lf.length_median_share == 1.0):
            return cap
        raw = np.rint(cap * lf.length_median_share * np.exp(lf.length_sigma * users.length_z))
        return np.clip(raw, 1, cap).astype(np.int64)

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
        per_user = self.lengths(users, length)
        step = max(1, _CHUNK // L)
        for lo in range(0, n, step):
            rows = slice(lo, min(lo + step, n))
            mine = per_user[rows] if np.ndim(per_user) else per_user
            newest_first = self._events(users, rows, stream, mine, L, groups, with_dormant)
            for dst, src in zip((out.item, out.category, out.action, out.ts), newest_first, strict=True):
                dst[rows] = src[:, ::-1]  # oldest first
            if np.ndim(per_user):
                # a row's events are its newest `mine` slots: padding sits at the old end (left)
                real = np.arange(L)[None, :] < np.asarray(mine)[:, None]
                out.mask[rows] = real[:, ::-1]
                for dst in (out.item, out.category, out.action, out.ts):
                    dst[rows] = np.where(out.mask[rows], dst[rows], 0)
        if not np.ndim(per_user):
            out.mask[:] = True
        return out

    def source(self, users: Users, max_len: int | None = None) -> Histories:
        """Source-domain (content) lifelong history: active and dormant interests."""
        if not self.spec.lifelong.enabled:
            return self._batch(users, Stream.HISTORY_SOURCE, 0, self.catalog.content_by_category, True, max_len)
        return self._batch(
            users, Stream.HISTORY_SOURCE, self.spec.lifelong.source_length, self.catalog.content_by_category, True, max_len
        )

    def store_source(self, users: Users, max_len: int | None = None, chunk: int = 4096) -> StoredHistories:
        """:meth:`source` of ``users`` generated once, kept as :class:`StoredHistories`
        (row ``i`` of the store is ``users`` row ``i``), in chunks of ``chunk`` users."""
        return self._store(self.source, users, max_len, chunk)

    @staticmethod
    def _store(generate, users: Users, max_len: int | None, chunk: int) -> StoredHistories:
        return StoredHistories.of(generate(users.take(np.arange(lo, min(lo + chunk, len(users)))), max_len)
                                  for lo in range(0, len(users), chunk))

    def target(self, users: Users, max_len: int | None = None) -> Histories:
        """Target-domain (shop) history: recent behaviour shows active interests only."""
        return self._batch(users, Stream.HISTORY_TARGET, self.spec.lifelong.target_length, self.catalog.target_by_category, False, max_len)

    def store_target(self, users: Users, max_len: int | None = None, chunk: int = 4096) -> StoredHistories:
        """:meth:`target` of ``users`` generated once (as :meth:`store_source`)."""
        return self._store(self.target, users, max_len, chunk)


@dataclass(frozen=True)
class StoredHistories:
    """The histories of a fixed set of users, generated once and kept as their real events
    only (ragged: ``offsets`` into flat arrays, oldest first per user), for a reader that
    comes back to the same users many times (a training set, every epoch).  :meth:`take`
    lays a batch out as :class:`Histories`, right-aligned and as wide as the batch's
    longest history: the generator's batch with the columns that are padding in every row
    cut off (same values)."""

    offsets: np.ndarray  # [U + 1]
    item: np.ndarray  # [E] int32
    category: np.ndarray  # [E] int32
    action: np.ndarray  # [E] int8
    ts: np.ndarray  # [E] float64

    @classmethod
    def of(cls, chunks) -> StoredHistories:
        """The real events of ``chunks``, an iterable of :class:`Histories` batches of
        consecutive users."""
        lengths, parts = [], []
        for h in chunks:
            lengths.append(h.mask.sum(1))
            parts.append((h.item[h.mask], h.category[h.mask], h.action[h.mask], h.ts[h.mask]))
        n = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        cat = lambda i, dt: np.concatenate([p[i] for p in parts]).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        return cls(np.concatenate([[0], np.cumsum(n)]).astype(np.int64), cat(0, np.int32), cat(1, np.int32),
                   cat(2, np.int8), cat(3, np.float64))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, index: np.ndarray) -> Histories:
        """The histories of stored users ``index`` (positions, may repeat), right-aligned,
        ``max(1, longest)`` columns wide; padding is 0 with mask ``False``."""
        index = np.asarray(index, np.int64)
        n = self.offsets[index + 1] - self.offsets[index]
        B, W = len(index), max(int(n.max()) if len(n) else 0, 1)
        row = np.repeat(np.arange(B), n)
        j = np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n)
        src = self.offsets[index][row] + j
        col = W - n[row] + j
        out = Histories(np.zeros((B, W), np.int64), np.zeros((B, W), np.int64), np.zeros((B, W), np.int64),
                        np.zeros((B, W), np.float64), np.zeros((B, W), bool))
        out.item[row, col] = self.item[src]
        out.category[row, col] = self.category[src]
        out.action[row, col] = self.action[src]
        out.ts[row, col] = self.ts[src]
        out.mask[row, col] = True
        return out
