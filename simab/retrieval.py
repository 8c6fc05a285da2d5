"""Candidate retrieval before ranking.

search(k): items of category k (popular first, then random within k), topped up from
related categories.  shop(s): the shop's items, then its category.  home / channel: a
mix of popular items, items of the categories in the recent moveline and short
sequence, and random items.  Random choices are keyed by request id.
"""

from __future__ import annotations

import numpy as np

from simab.simulators import rng, streams
from simab.simulators.streams import CONTEXT, CONTEXT_ITEM_OFFSET, POPULAR, RANDOM, SEARCH_TAIL
from simab.simulators.world import World


class Retriever:
    def __init__(self, world: World):
        self.w = world
        c = world.catalog
        self.key = rng.stream_key(world.seed, world.stream("retrieval"))
        self.n_target = c.n_shop_items
        self.top = c.popular_target[: max(200, c.n_shop_items // 10)]
        self.shops_by_cat = [np.flatnonzero(c.shop_category == k) for k in range(c.n_categories)]

    def shop_for(self, cat: int, u: float) -> int:
        shops = self.shops_by_cat[cat]
        if len(shops) == 0:
            return int(u * self.w.catalog.n_shops) % self.w.catalog.n_shops
        return int(shops[min(int(u * len(shops)), len(shops) - 1)])

    def _fill(self, pools: list[np.ndarray], n: int, rid: int) -> np.ndarray:
        """The pools' distinct items in order of first appearance, cut at ``n``; topped up
        with random items (keyed by the request) while short (``streams.fill_counters``)."""
        cand = np.concatenate([p for p in pools if len(p)]) if any(len(p) for p in pools) else np.zeros(0, np.int64)
        cand = _first_distinct(cand, n)
        j = 0
        while len(cand) < n:
            extra = rng.integers(self.key, rid, streams.fill_counters(j, n), self.n_target)
            cand = _first_distinct(np.concatenate([cand, extra]), n)
            j += 1
        return cand

    def candidates(
        self, surface: str, n: int, rid: int, query_cat: int, query_shop: int, context_cats: np.ndarray
    ) -> np.ndarray:
        c = self.w.catalog
        if surface == "search":
            items = c.target_by_category.group(query_cat)
            head = items[: n // 2]
            tail = items[rng.integers(self.key, rid, streams.block_counters(SEARCH_TAIL, n), len(items))] if len(items) else items
            parent = c.parent_of[query_cat]
            related = np.flatnonzero(c.parent_of == parent)
            rel_items = np.concatenate([c.target_by_category.group(k)[:5] for k in related])
            return self._fill([head, tail, rel_items], n, rid)
        if surface == "shop":
            items = c.target_by_shop.group(query_shop)
            cat_items = c.target_by_category.group(int(c.shop_category[query_shop]))
            return self._fill([items[:n], cat_items[: n // 2]], n, rid)
        n_pop, n_ctx = streams.pool_sizes(n)
        ctx = n_ctx if len(context_cats) else 0
        # every draw of this request in one call (one counter block per pool)
        u = rng.uniform(self.key, rid, np.concatenate(
            [streams.block_counters(POPULAR, n_pop), streams.block_counters(CONTEXT, ctx),
             streams.block_counters(CONTEXT, ctx, CONTEXT_ITEM_OFFSET), streams.block_counters(RANDOM, n)]))
        u_pop, u_cat, u_pick, u_rand = np.split(u, np.cumsum([n_pop, ctx, ctx]))
        pools = [self.top[rng.scale(u_pop, len(self.top))]]
        if ctx:
            cats = context_cats[rng.scale(u_cat, len(context_cats))]
            sizes = c.target_by_category.sizes()[cats]
            pick = np.minimum((u_pick**2 * sizes).astype(np.int64), np.maximum(sizes - 1, 0))
            pools.append(c.target_by_category.items[c.target_by_category.offsets[cats] + pick])
        pools.append(rng.scale(u_rand, self.n_target))
        return self._fill(pools, n, rid)


def _first_distinct(items: np.ndarray, n: int) -> np.ndarray:
    """Distinct values of ``items`` in order of first appearance, at most ``n`` (a dict
    keeps insertion order; for the hundred-odd candidates of a request this is several
    times cheaper than ``np.unique``)."""
    return np.fromiter(dict.fromkeys(items.tolist()), items.dtype)[:n]
