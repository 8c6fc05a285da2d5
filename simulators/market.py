"""Markets: shared, constrained resources, the daily budgets (or stock) of limited items.

With ``[world.market] enabled = true`` a share of the target items is *limited*: each has a
daily budget that clicks spend (``resource = "budget"``, one unit per click, as a cost-per-click
advertiser's) or a daily stock that purchases take (``"stock"``, one unit per purchase).  Every
user of a market draws on the same units, whatever their arm: this is the interference a
user-randomised experiment cannot see (docs/interference.md).

Users are split by hash into ``n_markets`` markets (cities, say; :func:`market_of`).  Each
market has its own units of every limited item, scaled to its users:
``units = capacity * users / 1000`` (``capacity``, the tightness dial, is in units per 1,000
users and day).  A market couples its users, so a shard holds whole markets
(``simab.run.plan``): shards stay independent units of work and results do not depend on the
number of shards or workers.

The units of a market live in *pools*: one pool shared by every arm, or under the budget-split
design one pool per arm holding the arm's traffic share of the units (Liu et al., KDD 2021).

Semantics (the same in both engines, which call :meth:`Market.catch_up` before serving):

- The serving index (which items are available) is refreshed every ``refresh_s`` seconds, at
  the boundaries ``k * refresh_s`` from t = 0.  A request served at ``t`` sees the index of the
  interval holding ``t``.
- At a boundary every consumption event before it (clicks at their exposure's time, purchases
  at their conversion's time) is charged in (time, request id, slate position) order, one unit
  each, while the item's pool has a unit left: **spend never exceeds the units**.  An event
  past the last unit (possible only within one refresh interval, while the index was stale) is
  counted as *over cap* (an unbilled click, a backordered purchase) and not charged.
- An item is available in an interval while its pool has a whole unit left at the interval's
  start; with ``pacing = "even"`` only while spend + 1 is within the elapsed share of the day's
  units at the interval's end (a budget spread over the day instead of sold out early).
- Spend resets at every day boundary (a multiple of a day from t = 0).

Unavailable items are dropped from retrieval's candidate pools, so a sold-out item is never
served (``simab.engine.retrieval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from simab.simulators import rng
from simab.simulators.catalog import Catalog
from simab.simulators.spec import MarketSpec
from simab.simulators.streams import Stream
from simab.simulators.units import DAY

#: units below a whole one that float rounding of ``capacity * users / 1000 * share`` may lose
_EPS = 1e-9

MARKET_SCHEMA = pa.schema([
    ("shard", pa.int32()), ("day", pa.int32()), ("market", pa.int64()), ("pool", pa.string()),
    ("item", pa.int64()), ("units", pa.int64()), ("spent", pa.int64()), ("over_cap", pa.int64()),
    ("sold_out_ts", pa.float64()),
])


def market_of(seed: int, users: np.ndarray, n_markets: int) -> np.ndarray:
    """The market of each user: a hash of (seed, user), so it depends on nothing else."""
    users = np.asarray(users, np.int64)
    if n_markets == 1:
        return np.zeros(users.shape, np.int64)
    return (rng.bits(rng.stream_key(seed, Stream.MARKET_OF), users) % np.uint64(n_markets)).astype(np.int64)


def limited_items(spec: MarketSpec, catalog: Catalog, seed: int) -> np.ndarray:
    """The limited target items, sorted: the ``limited_share`` most popular (``head``) or a
    random set of that size keyed by the world's seed (``random``)."""
    n = max(1, int(round(spec.limited_share * catalog.n_shop_items)))
    if spec.limited == "head":
        return np.sort(catalog.popular_target[:n]).astype(np.int64)
    u = rng.uniform(rng.stream_key(seed, Stream.MARKET_LIMITED), np.arange(catalog.n_shop_items, dtype=np.int64))
    return np.sort(np.argsort(u, kind="stable")[:n]).astype(np.int64)


def split_units(total: np.ndarray, shares: np.ndarray, n_items: int) -> np.ndarray:
    """Whole units per (market, pool, item), [markets * pools, items]: each market's ``total``
    units of an item apportioned to the pools by their ``shares`` with the largest-remainder
    rule (Hamilton), so the pools hold exactly the market's units; a remainder tied between
    pools goes to pool ``(item + j) % pools`` first, so no pool is favoured across items."""
    P = len(shares)
    quota = total[:, None] * shares[None, :]  # [M, P]
    base = np.floor(quota + _EPS).astype(np.int64)
    left = total - base.sum(axis=1)  # [M] units still to give
    frac = quota - base
    out = np.repeat(base[:, :, None], n_items, axis=2)  # [M, P, L]
    if P > 1 and left.any():
        rotation = (np.arange(P)[:, None] - np.arange(n_items)[None, :]) % P  # [P, L]: tie order per item
        # rank pools per (market, item) by (largest remainder, rotation)
        remainder = np.round(frac * 1e9).astype(np.int64)  # equal up to rounding: a tie
        score = -remainder[:, :, None] * P + rotation[None, :, :]  # [M, P, L]: remainder first, then rotation
        order = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
        out += order < left[:, None, None]
    return out.reshape(len(total) * P, n_items)


class Availability(NamedTuple):
    """The serving index seen by a batch of requests: ``mask[pool[i], item]`` says whether
    request ``i`` may be shown ``item``."""

    mask: np.ndarray  # [pools, items] bool
    pool: np.ndarray  # [B] each request's pool

    def rows(self, sel) -> Availability:
        """The index of the requests ``sel`` (a mask or indices) of the batch."""
        return Availability(self.mask, self.pool[sel])

    def of(self, items: np.ndarray) -> np.ndarray:
        """Whether each entry of ``items`` ([B, W] item ids, -1 missing) is available to its row."""
        return (items >= 0) & self.mask[self.pool[:, None], np.maximum(items, 0)]


@dataclass(frozen=True)
class DayStats:
    """One closed day: per (pool, limited item) what was spent, what came past the last unit,
    and when the item stopped being served (NaN: never)."""

    day: int
    spent: np.ndarray  # [pools, L] units charged
    over_cap: np.ndarray  # [pools, L] events past the last unit
    sold_out_ts: np.ndarray  # [pools, L] first refresh at which the item was unavailable


class Market:
    """The limited items' units of the markets of one shard (module docstring).

    ``markets``: the market of each of the shard's users (state rows); ``active``: the users
    the shard simulates (their count scales each market's units); ``shares``: each pool's
    share of a market's units, ``pool_names`` their names."""

    def __init__(self, spec: MarketSpec, catalog: Catalog, seed: int, markets: np.ndarray, active: np.ndarray,
                 shares: Sequence[float] = (1.0,), pool_names: Sequence[str] = ("shared",)):
        self.spec = spec
        self.refresh_s = float(spec.refresh_s)
        self.steps_per_day = int(round(DAY / spec.refresh_s))
        self.limited = limited_items(spec, catalog, seed)
        self.slot = np.full(catalog.n_items, -1, np.int64)  # item -> its index among the limited
        self.slot[self.limited] = np.arange(len(self.limited))
        self.market_ids, self.local = np.unique(np.asarray(markets, np.int64), return_inverse=True)
        users = np.bincount(self.local[np.asarray(active, bool)], minlength=len(self.market_ids))
        self.pool_names = tuple(pool_names)
        self.n_pools = len(self.pool_names)
        #: the daily units of every limited item in each (market, pool) [market * n_pools + pool, L]
        self.units = split_units(np.floor(spec.capacity * users / 1000.0 + _EPS).astype(np.int64),
                                 np.asarray(shares, np.float64), len(self.limited))
        shape = self.units.shape
        self.spend = np.zeros(shape, np.int64)
        self.over_cap = np.zeros(shape, np.int64)
        self.sold_out_ts = np.full(shape, np.nan)
        self.available = np.ones((shape[0], catalog.n_items), bool)  # the serving index per pool
        self.days: list[DayStats] = []
        self.k = 0  # the interval the index is for: [k * refresh_s, (k + 1) * refresh_s)
        self._events: list[tuple[np.ndarray, ...]] = []  # (pool, slot, t, request, position)
        self.closed = False
        self._refresh()

    # --- what serving reads -----------------------------------------------------------
    def pools(self, rows: np.ndarray, pool: int = 0) -> np.ndarray:
        """The pool index of each state row's market for the arm pool ``pool``."""
        return self.local[rows] * self.n_pools + pool

    def catch_up(self, t: float) -> None:
        """Bring the index to the interval holding ``t``: every boundary up to it is passed in
        time order (charges, daily resets, refreshes).  Callers serve in time order across
        intervals (the wave engine's ticks are the refresh intervals)."""
        target = int(np.floor(t / self.refresh_s))
        while self.k < target:
            self._boundary(self.k + 1)

    def index(self, pools: np.ndarray) -> Availability:
        """The current serving index for requests of the given pools."""
        return Availability(self.available, np.asarray(pools, np.int64))

    # --- what serving writes ----------------------------------------------------------
    def record(self, pools: np.ndarray, items: np.ndarray, events: np.ndarray, t: np.ndarray,
               requests: np.ndarray) -> None:
        """Consumption events of one served batch: ``events`` [B, K] marks the slate positions
        that consume (clicks or purchases), ``t`` [B, K] their times, ``pools`` and
        ``requests`` [B] each request's pool and id."""
        slot = self.slot[items]
        hit = events & (slot >= 0)
        if not hit.any():
            return
        b, pos = np.nonzero(hit)
        self._events.append((np.asarray(pools, np.int64)[b], slot[b, pos], np.asarray(t, np.float64)[b, pos],
                             np.asarray(requests, np.int64)[b], pos.astype(np.int64)))

    def close(self, t_end: float) -> None:
        """The end of the run: pass the remaining boundaries, charge the events before
        ``t_end`` and close the last (partial) day (once: later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        self.catch_up(t_end)
        self._charge(t_end)
        if self.k % self.steps_per_day or self.k == 0:  # (a day ending on a boundary is closed there)
            self._close_day(self.k // self.steps_per_day)
        self._events = []

    # --- boundaries -------------------------------------------------------------------
    def _boundary(self, k: int) -> None:
        self._charge(k * self.refresh_s)
        self.k = k
        if k % self.steps_per_day == 0:
            self._close_day(k // self.steps_per_day - 1)
        self._refresh()

    def _charge(self, before: float) -> None:
        """Charge the events before ``before`` in (time, request, position) order, one unit each
        while a unit is left in the item's pool; the rest are over cap."""
        if not self._events:
            return
        pool, slot, t, req, pos = (np.concatenate(c) for c in zip(*self._events, strict=True))
        due = t < before
        self._events = [tuple(c[~due] for c in (pool, slot, t, req, pos))] if (~due).any() else []
        if not due.any():
            return
        pool, slot, t, req, pos = pool[due], slot[due], t[due], req[due], pos[due]
        order = np.lexsort((pos, req, t))
        L = len(self.limited)
        key = pool[order] * L + slot[order]
        # each event's rank among the earlier events of its (pool, item)
        by_key = np.argsort(key, kind="stable")
        sorted_key = key[by_key]
        first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))
        rank = np.empty(len(key), np.int64)
        rank[by_key] = np.arange(len(key)) - start
        p, s = key // L, key % L
        charged = rank < np.maximum(self.units[p, s] - self.spend[p, s], 0)
        np.add.at(self.spend, (p[charged], s[charged]), 1)
        np.add.at(self.over_cap, (p[~charged], s[~charged]), 1)

    def _close_day(self, day: int) -> None:
        self.days.append(DayStats(day, self.spend.copy(), self.over_cap.copy(), self.sold_out_ts.copy()))
        self.spend[:] = 0
        self.over_cap[:] = 0
        self.sold_out_ts[:] = np.nan

    def _refresh(self) -> None:
        """The index of interval ``k``: an item is available while a whole unit is left (with
        even pacing: while spend + 1 is within the elapsed share of the day's units)."""
        allowance = self.units.astype(np.float64)
        if self.spec.pacing == "even":
            allowance = allowance * (((self.k % self.steps_per_day) + 1) / self.steps_per_day)
        ok = self.spend + 1 <= allowance + _EPS  # [pools, L]
        self.available[:, self.limited] = ok
        newly = ~ok & np.isnan(self.sold_out_ts)
        self.sold_out_ts[newly] = self.k * self.refresh_s

    # --- results ----------------------------------------------------------------------
    def table(self, shard: int) -> pa.Table:
        """One row per (day, market, pool, limited item): the day's units, spent and over-cap
        counts, and when the item stopped being served."""
        if not self.days:
            return MARKET_SCHEMA.empty_table()
        n, L = self.units.shape
        market = np.repeat(np.repeat(self.market_ids, self.n_pools), L)
        pool = np.repeat(np.tile(np.array(self.pool_names, object), len(self.market_ids)), L)
        cols: dict[str, list] = {f.name: [] for f in MARKET_SCHEMA}
        for d in self.days:
            cols["shard"].append(np.full(n * L, shard, np.int32))
            cols["day"].append(np.full(n * L, d.day, np.int32))
            cols["market"].append(market)
            cols["pool"].append(pool)
            cols["item"].append(np.tile(self.limited, n))
            cols["units"].append(self.units.reshape(-1))
            cols["spent"].append(d.spent.reshape(-1))
            cols["over_cap"].append(d.over_cap.reshape(-1))
            cols["sold_out_ts"].append(d.sold_out_ts.reshape(-1))
        return pa.Table.from_arrays([pa.array(np.concatenate(cols[f.name]), f.type) for f in MARKET_SCHEMA],
                                    schema=MARKET_SCHEMA)
