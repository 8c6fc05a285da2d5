"""Batched retrieval (``Retriever.candidates_batch`` / ``shop_for_batch``) gives, row by row,
exactly the candidates of the one-request-at-a-time retrieval, whatever else is in the batch.

The oracle is the scalar retrieval as it was before the batch version existed (world v3),
kept here verbatim (``ScalarRetriever``): ``Retriever.candidates`` is now a wrapper over the
batch code, so only an independent copy of the old rule can check that batching changed no
candidate.  Candidates are integers drawn from counter-keyed uniforms: equality is exact.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

from simab.engine.retrieval import Retriever
from simab.errors import SimabError
from simab.simulators import rng, streams
from simab.simulators.catalog import Csr
from simab.simulators.spec import world_spec
from simab.simulators.streams import (
    CONTEXT,
    CONTEXT_ITEM_OFFSET,
    POPULAR,
    RANDOM,
    SEARCH_TAIL,
    Stream,
)
from simab.simulators.world import World

SURFACES = ("home", "channel", "search", "shop")


class ScalarRetriever:
    """The scalar retrieval of world v3 (the oracle; see the module docstring).  ``rounds``
    records how many top-up rounds each request took, so that the tests can show they
    exercise the top-up."""

    def __init__(self, world: World):
        self.w = world
        c = world.catalog
        self.key = rng.stream_key(world.seed, world.stream(Stream.RETRIEVAL))
        self.n_target = c.n_shop_items
        self.top = c.popular_target[: max(200, c.n_shop_items // 10)]
        self.shops_by_cat = [np.flatnonzero(c.shop_category == k) for k in range(c.n_categories)]
        self.rounds: list[int] = []

    def shop_for(self, cat: int, u: float) -> int:
        shops = self.shops_by_cat[cat]
        if len(shops) == 0:
            return int(u * self.w.catalog.n_shops) % self.w.catalog.n_shops
        return int(shops[min(int(u * len(shops)), len(shops) - 1)])

    def _fill(self, pools: list[np.ndarray], n: int, rid: int) -> np.ndarray:
        cand = np.concatenate([p for p in pools if len(p)]) if any(len(p) for p in pools) else np.zeros(0, np.int64)
        cand = _first_distinct(cand, n)
        j = 0
        while len(cand) < n:
            extra = rng.integers(self.key, rid, streams.fill_counters(j, n), self.n_target)
            cand = _first_distinct(np.concatenate([cand, extra]), n)
            j += 1
        self.rounds.append(j)
        return cand

    def candidates(self, surface, n, rid, query_cat, query_shop, context_cats):
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
    return np.fromiter(dict.fromkeys(items.tolist()), items.dtype)[:n]


def _world_table(n_candidates: int, **over) -> dict:
    """A default-preset world table with every scenario at ``n_candidates`` (a slate of at
    most as many), so that small catalogues pass the spec check."""
    names = world_spec({}).scenario_names
    slate = min(10, n_candidates)
    return {"preset": "default", "scenarios": {s: {"n_candidates": n_candidates, "slate_size": slate} for s in names},
            **over}


# name -> (world table, seed, the candidate counts to test)
WORLDS = {
    # every category holds exactly one item and the catalogue barely covers n: top-up rounds
    "ten_items": (_world_table(10, n_shop_items=10, n_content_items=10, n_categories=10, n_parents=2, n_shops=3), 1,
                  (1, 2, 7, 10)),
    # mostly one-item categories, many shops without items, many categories without shops
    "many_categories": (_world_table(60, n_shop_items=300, n_content_items=250, n_categories=250, n_parents=5,
                                     n_shops=120), 2, (1, 3, 60, 150)),
    # the catalogue of the campaign tests, and one just big enough for the most candidates
    "small": (_world_table(60, n_shop_items=600, n_content_items=400, n_shops=40), 3, (5, 60, 301)),
    "largest_n": (_world_table(streams.MAX_CANDIDATES, n_shop_items=4000, n_content_items=50, n_shops=30), 4,
                  (streams.MAX_CANDIDATES,)),
}


@functools.cache
def _world(name: str) -> World:
    table, seed, _ = WORLDS[name]
    return World.build(world_spec(table), seed)


@functools.cache
def _world_with_empty_categories() -> World:
    """The ``small`` world with every third category emptied (a built world gives every
    category an item, but retrieval must not rely on it).  The last category keeps its
    items: a context draw of an empty category reads the item at its offset, which exists
    only while some later category is non-empty (the same in both versions)."""
    w = _world("small")
    csr = w.catalog.target_by_category
    k = w.catalog.n_categories
    keep = [csr.group(c) if c % 3 or c == k - 1 else np.zeros(0, np.int64) for c in range(k)]
    sizes = np.array([len(g) for g in keep])
    emptied = Csr(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.concatenate(keep))
    return replace(w, catalog=replace(w.catalog, target_by_category=emptied))


def random_requests(w: World, rows: int, seed: int, ctx_len: int) -> tuple[np.ndarray, ...]:
    """Random requests: ids of users up to 10^6, query categories and shops, and a context
    matrix of ``ctx_len`` columns whose absent entries (-1) fall anywhere in a row; one row
    in five has no context at all."""
    g = np.random.default_rng(seed)
    c = w.catalog
    users = g.integers(0, 1_000_000, rows)
    rids = np.array([streams.request_id(int(u), int(k)) for u, k in zip(users, g.integers(0, 5000, rows), strict=True)], np.int64)
    cats = g.integers(0, c.n_categories, rows)
    shops = g.integers(0, c.n_shops, rows)
    ctx = g.integers(0, c.n_categories, (rows, ctx_len))
    ctx[g.random((rows, ctx_len)) < 0.3] = -1
    ctx[g.random(rows) < 0.2] = -1
    return rids, cats, shops, ctx


def _check_rows(w: World, surface: str, n: int, rows: int, seed: int, ctx_len: int) -> list[int]:
    """candidates_batch == the oracle row by row (and the scalar wrapper too); the oracle's
    top-up rounds per row."""
    rids, cats, shops, ctx = random_requests(w, rows, seed, ctx_len)
    new, old = Retriever(w), ScalarRetriever(w)
    got = new.candidates_batch(surface, n, rids, cats, shops, ctx)
    assert got.shape == (rows, n) and got.dtype == np.int64
    for i in range(rows):
        context = ctx[i][ctx[i] >= 0]
        want = old.candidates(surface, n, int(rids[i]), int(cats[i]), int(shops[i]), context)
        np.testing.assert_array_equal(got[i], want, err_msg=f"{surface} row {i}")
        np.testing.assert_array_equal(new.candidates(surface, n, int(rids[i]), int(cats[i]), int(shops[i]), context),
                                      want)
    return old.rounds


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("name", list(WORLDS))
def test_batch_rows_equal_the_scalar_retrieval(name, surface):
    w = _world(name)
    for i, n in enumerate(WORLDS[name][2]):
        rows = 12 if n > 1000 else 80  # the oracle loops in Python; the largest n is slow there
        for ctx_len in (0, 1, 20):
            _check_rows(w, surface, n, rows, seed=100 * i + ctx_len, ctx_len=ctx_len)


def test_tiny_catalogues_exercise_the_top_up_rounds():
    """The equality above covers batches that mix rows needing no top-up round, one, and
    several (rows leave the round loop at different rounds)."""
    rounds = _check_rows(_world("ten_items"), "home", 10, 80, seed=7, ctx_len=5)
    assert {0, 1, 2} <= set(rounds)
    rounds = _check_rows(_world("largest_n"), "search", streams.MAX_CANDIDATES, 8, seed=8, ctx_len=0)
    assert min(rounds) >= 1


@pytest.mark.parametrize("surface", SURFACES)
def test_empty_categories_and_long_contexts(surface):
    w = _world_with_empty_categories()
    for n, ctx_len in ((1, 0), (60, 3), (60, 200)):
        _check_rows(w, surface, n, 60, seed=n + ctx_len, ctx_len=ctx_len)


def test_a_row_does_not_depend_on_the_rest_of_its_batch():
    w = _world("many_categories")
    r = Retriever(w)
    rids, cats, shops, ctx = random_requests(w, 200, seed=11, ctx_len=30)
    perm = np.random.default_rng(12).permutation(200)
    for surface in SURFACES:
        full = r.candidates_batch(surface, 60, rids, cats, shops, ctx)
        shuffled = r.candidates_batch(surface, 60, rids[perm], cats[perm], shops[perm], ctx[perm])
        np.testing.assert_array_equal(shuffled, full[perm])
        # a context matrix padded wider (more absent columns) changes nothing
        wide = np.concatenate([ctx, np.full((200, 7), -1)], axis=1)
        np.testing.assert_array_equal(r.candidates_batch(surface, 60, rids, cats, shops, wide), full)
        for i in (0, 57, 199):
            alone = r.candidates_batch(surface, 60, rids[i : i + 1], cats[i : i + 1], shops[i : i + 1], ctx[i : i + 1])
            np.testing.assert_array_equal(alone[0], full[i])
        assert r.candidates_batch(surface, 60, rids[:0], cats[:0], shops[:0], ctx[:0]).shape == (0, 60)


def test_exhausted_top_up_is_the_same_user_error():
    """More candidates than shop items can never fill: both versions stop after the rounds
    that fit and name world.n_shop_items."""
    w = _world("ten_items")
    rids, cats, shops, ctx = random_requests(w, 4, seed=13, ctx_len=3)
    for surface in SURFACES:
        with pytest.raises(SimabError, match="top-up rounds") as new:
            Retriever(w).candidates_batch(surface, 11, rids, cats, shops, ctx)
        with pytest.raises(SimabError, match="top-up rounds") as old:
            ScalarRetriever(w).candidates(surface, 11, int(rids[0]), int(cats[0]), int(shops[0]), ctx[0][ctx[0] >= 0])
        assert str(new.value) == str(old.value)
        assert new.value.key == "world.n_shop_items"


@pytest.mark.parametrize("name", ["ten_items", "many_categories", "small"])
def test_shop_for_batch_equals_the_scalar_choice(name):
    w = _world(name)
    k = w.catalog.n_categories
    cats = np.concatenate([np.random.default_rng(14).integers(0, k, 2000), np.arange(k), np.arange(k)])
    # uniforms of a stream, then the extremes it can give for every category: the largest
    # times a shop count may round up to the count itself
    u = np.concatenate([rng.uniform(rng.stream_key(1, "t"), np.arange(2000)), np.full(k, 0.5 / 2**53),
                        np.full(k, 1 - 0.5 / 2**53)])
    new, old = Retriever(w), ScalarRetriever(w)
    got = new.shop_for_batch(cats, u)
    want = np.array([old.shop_for(int(k), float(x)) for k, x in zip(cats, u, strict=True)])
    np.testing.assert_array_equal(got, want)
    assert [new.shop_for(int(k), float(x)) for k, x in zip(cats[:50], u[:50], strict=True)] == want[:50].tolist()
    if name == "many_categories":  # the branch for categories without a shop is covered
        assert np.any(np.array([len(old.shops_by_cat[k]) for k in cats]) == 0)
