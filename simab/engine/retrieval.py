"""Candidate retrieval before ranking.

search(k): items of category k (popular first, then random within k), topped up from
related categories.  shop(s): the shop's items, then its category.  home / channel: a
mix of popular items, items of the categories in the recent moveline and short
sequence, and random items.  Random choices are keyed by request id.

Requests are served in batches of one surface: every pool is a padded ``[B, P]`` matrix
(``-1`` = no item; pools differ in length per row), and a row's candidates are the
pools' distinct items in order of first appearance.  No step mixes rows, so a row's
candidates never depend on the other requests of its batch.
"""

from __future__ import annotations

import functools

import numpy as np

from simab.simulators import rng, streams
from simab.simulators.catalog import Csr
from simab.simulators.market import Availability
from simab.simulators.streams import (
    CONTEXT,
    CONTEXT_ITEM_OFFSET,
    POPULAR,
    RANDOM,
    SEARCH_TAIL,
    Stream,
)
from simab.simulators.world import World

_MISSING = -1


class Retriever:
    def __init__(self, world: World):
        self.w = world
        c = world.catalog
        self.key = rng.stream_key(world.seed, world.stream(Stream.RETRIEVAL))
        self.n_target = c.n_shop_items
        self.top = c.popular_target[: max(200, c.n_shop_items // 10)]
        self.cat_sizes = c.target_by_category.sizes()
        self.shop_sizes = c.target_by_shop.sizes()
        # shops grouped by category, in increasing shop id (as ``np.flatnonzero`` lists them)
        order = np.argsort(c.shop_category, kind="stable")
        counts = np.bincount(c.shop_category, minlength=c.n_categories)
        self.shops_by_cat = Csr(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), order.astype(np.int64))
        self.shop_counts = counts
        # search's related items of each parent: the first 5 items of every category under
        # it, categories in increasing id
        related = [np.concatenate([c.target_by_category.group(k)[:5] for k in np.flatnonzero(c.parent_of == p)])
                   for p in range(int(c.parent_of.max()) + 1)]
        self.related = _padded(related)

    def shop_for(self, cat: int, u: float) -> int:
        """The shop a shop visit about category ``cat`` opens, from the uniform ``u``."""
        return int(self.shop_for_batch(np.array([cat], np.int64), np.array([u], np.float64))[0])

    def shop_for_batch(self, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
        """:meth:`shop_for` per row: shop ``int(u * m)`` of the ``m`` shops of the category
        (by shop id), any shop ``int(u * n_shops)`` where the category has none."""
        cats = np.asarray(cats, np.int64)
        u = np.asarray(u, np.float64)
        size = self.shop_counts[cats]
        n_shops = self.w.catalog.n_shops
        pick = np.minimum((u * size).astype(np.int64), np.maximum(size - 1, 0))
        own = self.shops_by_cat.items[np.minimum(self.shops_by_cat.offsets[cats] + pick, len(self.shops_by_cat.items) - 1)]
        return np.where(size > 0, own, (u * n_shops).astype(np.int64) % n_shops)

    def candidates(
        self, surface: str, n: int, rid: int, query_cat: int, query_shop: int, context_cats: np.ndarray
    ) -> np.ndarray:
        """One request's ``n`` candidates (:meth:`candidates_batch` of one row)."""
        ctx = np.asarray(context_cats, np.int64)[None, :]
        return self.candidates_batch(surface, n, np.array([rid], np.int64), np.array([query_cat], np.int64),
                                     np.array([query_shop], np.int64), ctx)[0]

    def candidates_batch(self, surface: str, n: int, rids: np.ndarray, query_cat: np.ndarray,
                         query_shop: np.ndarray, ctx: np.ndarray, available: Availability | None = None) -> np.ndarray:
        """``[B, n]`` candidates of ``B`` requests of one ``surface``: row ``i`` for request id
        ``rids[i]``; search reads ``query_cat``, shop ``query_shop`` (ignored, may be -1,
        elsewhere); home / channel read the context categories ``ctx[i][ctx[i] >= 0]``
        (``[B, M]``, entries below 0 absent, order kept: the draws index into it).
        ``available``: a market's serving index for these requests (``simab.simulators.market``):
        unavailable items are dropped from every pool and from the top-up, so they are never
        candidates; ``None`` (no market) leaves retrieval as it was."""
        rids = np.asarray(rids, np.int64)
        if surface == "search":
            pools = self._search_pools(n, rids, np.asarray(query_cat, np.int64))
        elif surface == "shop":
            pools = self._shop_pools(n, np.asarray(query_shop, np.int64))
        else:
            pools = self._feed_pools(n, rids, np.asarray(ctx, np.int64))
        return self._fill(_only_available(pools, available), n, rids, available)

    def _search_pools(self, n: int, rids: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """The category's head (``n // 2``), ``n`` random items of the category, the related
        categories' heads."""
        c = self.w.catalog
        size = self.cat_sizes[cats][:, None]
        tail = rng.integers(self.key, rids[:, None], streams.block_counters(SEARCH_TAIL, n)[None, :], size)
        tail = _gather(c.target_by_category, size, cats, np.where(size > 0, tail, _MISSING))
        head = _gather(c.target_by_category, size, cats, np.arange(n // 2)[None, :])
        return np.concatenate([head, tail, self.related[c.parent_of[cats]]], axis=1)

    def _shop_pools(self, n: int, shops: np.ndarray) -> np.ndarray:
        """The shop's first ``n`` items, then its category's first ``n // 2``."""
        c = self.w.catalog
        items = _gather(c.target_by_shop, self.shop_sizes[shops][:, None], shops, np.arange(n)[None, :])
        cats = c.shop_category[shops]
        cat_items = _gather(c.target_by_category, self.cat_sizes[cats][:, None], cats, np.arange(n // 2)[None, :])
        return np.concatenate([items, cat_items], axis=1)

    def _feed_pools(self, n: int, rids: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """home / channel: popular items, items of context categories (rows with a context
        only), random items."""
        c = self.w.catalog
        rows = np.arange(len(rids))[:, None]
        n_pop, n_ctx = streams.pool_sizes(n)
        # every draw of a request in one call (one counter block per pool); rows without a
        # context draw the context blocks too but do not use them
        u = rng.uniform(self.key, rids[:, None], _feed_counters(n)[None, :])
        u_pop, u_cat, u_pick, u_rand = (u[:, :n_pop], u[:, n_pop : n_pop + n_ctx],
                                        u[:, n_pop + n_ctx : n_pop + 2 * n_ctx], u[:, n_pop + 2 * n_ctx :])
        present = ctx >= 0
        length = present.sum(axis=1)
        has = (length > 0)[:, None]
        if ctx.shape[1]:
            # the present categories moved to the front of each row, in their order
            front = ctx[rows, np.argsort(~present, axis=1, kind="stable")]
            cats = np.where(has, front[rows, np.where(has, rng.scale(u_cat, np.maximum(length, 1)[:, None]), 0)], 0)
        else:
            cats = np.zeros((len(rids), n_ctx), np.int64)
        sizes = self.cat_sizes[cats]
        pick = np.minimum((u_pick**2 * sizes).astype(np.int64), np.maximum(sizes - 1, 0))
        tcat = c.target_by_category
        ctx_items = np.where(has, tcat.items[np.where(has, tcat.offsets[cats] + pick, 0)], _MISSING)
        return np.concatenate([self.top[rng.scale(u_pop, len(self.top))], ctx_items,
                               rng.scale(u_rand, self.n_target)], axis=1)

    def _fill(self, pools: np.ndarray, n: int, rids: np.ndarray, available: Availability | None = None) -> np.ndarray:
        """Each row's distinct pool items in order of first appearance, cut at ``n``; rows
        still short are topped up with random items keyed by their request, round ``j``
        drawing at ``streams.fill_counters(j, n)``, until full (the rounds that fit are
        limited: ``fill_counters`` raises a ``SimabError`` past them)."""
        out, count = _first_distinct(pools, n)
        short = np.flatnonzero(count < n)
        j = 0
        while short.size:
            extra = _only_available(rng.integers(self.key, rids[short, None], streams.fill_counters(j, n)[None, :],
                                                 self.n_target), None if available is None else available.rows(short))
            sub, sub_count = _first_distinct(np.concatenate([out[short], extra], axis=1), n)
            out[short] = sub
            short = short[sub_count < n]
            j += 1
        return out


@functools.lru_cache(maxsize=64)
def _feed_counters(n: int) -> np.ndarray:
    """The retrieval-stream counters of a home / channel request for ``n`` candidates: the
    popular, context-category, context-item and random blocks, in that order."""
    n_pop, n_ctx = streams.pool_sizes(n)
    counters = np.concatenate([streams.block_counters(POPULAR, n_pop), streams.block_counters(CONTEXT, n_ctx),
                               streams.block_counters(CONTEXT, n_ctx, CONTEXT_ITEM_OFFSET),
                               streams.block_counters(RANDOM, n)])
    counters.setflags(write=False)  # shared by every call for this n
    return counters


def retrieval_contexts(ml_cat: np.ndarray, ml_real: np.ndarray, seq_cat: np.ndarray,
                       seq_real: np.ndarray) -> np.ndarray:
    """Categories that steer home/channel retrieval, [B, L_ml + L_seq], -1 where none: the
    real slots of the moveline's and the short sequence's last events, in that order;
    scene-level events without a category (-1) stay -1.  An empty slot is no event: it must
    not read as category 0, a real category (world v2 did, over-weighting category 0 for
    users with few target-history events)."""
    return np.concatenate([np.where(ml_real, ml_cat, -1), np.where(seq_real, seq_cat, -1)], axis=-1)


def user_contexts(state, rows: np.ndarray) -> np.ndarray:
    """[B, 20] retrieval contexts of the users at ``rows`` of a ``UserState``: their last 10
    moveline and last 10 short-sequence categories (:func:`retrieval_contexts`).  The
    moveline's are what each scene was about (``world_cat``), also the events the log leaves
    out (``moveline_visible`` < 1): the candidate generator is part of the world, so that
    dial changes what the log shows and nothing the world does."""
    return retrieval_contexts(*state.world_moveline.tail_rows(rows, "world_cat", 10), *state.seq.tail_rows(rows, "cat", 10))


def _only_available(items: np.ndarray, available: Availability | None) -> np.ndarray:
    """``items`` [B, W] with every item unavailable to its row marked missing (-1)."""
    if available is None:
        return items
    return np.where(available.of(items), items, _MISSING)


def _padded(groups: list[np.ndarray]) -> np.ndarray:
    """Arrays of different lengths as the rows of one matrix, padded with ``-1``."""
    out = np.full((len(groups), max((len(g) for g in groups), default=0)), _MISSING, np.int64)
    for i, g in enumerate(groups):
        out[i, : len(g)] = g
    return out


def _gather(csr: Csr, size: np.ndarray, keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``csr.group(keys[i])[pos[i, j]]`` as a ``[B, W]`` matrix (``pos`` broadcast against
    the groups' sizes ``size``, ``[B, 1]``); ``-1`` where ``pos`` is negative or past the
    group's end."""
    ok = (pos >= 0) & (pos < size)
    idx = np.where(ok, csr.offsets[keys][:, None] + pos, 0)
    return np.where(ok, csr.items[idx], _MISSING)


def _first_distinct(items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``items`` (``[B, P]``, ``-1`` = missing): its distinct items in order of
    first appearance, at most ``n``, as a ``[B, n]`` matrix padded with ``-1``, and the
    count per row.  Sorting each row by (item, position) puts an item's first occurrence
    at the head of its run; sorting the positions with every later occurrence (and every
    missing entry) moved past ``P`` lists the first occurrences in order of appearance."""
    B, P = items.shape
    out = np.full((B, n), _MISSING, np.int64)
    if items.size == 0:
        return out, np.zeros(B, np.int64)
    absent = int(items.max()) + 1  # a missing entry's item: after every real one
    keys = np.sort(np.where(items >= 0, items, absent) * P + np.arange(P), axis=1)
    item = keys // P
    later = np.empty((B, P), bool)
    later[:, 0] = False
    np.equal(item[:, 1:], item[:, :-1], out=later[:, 1:])
    later |= item == absent
    order = np.sort(keys - item * P + P * later, axis=1)[:, :n]
    count = np.minimum(P - later.sum(axis=1), n)
    m = order.shape[1]
    found = items[np.arange(B)[:, None], np.minimum(order, P - 1)]
    out[:, :m] = np.where(np.arange(m) < count[:, None], found, _MISSING)
    return out, count
