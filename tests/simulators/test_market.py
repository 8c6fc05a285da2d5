"""The market's accounting on its own: units never overspent, charges in (time, request,
position) order, daily resets, the refreshed serving index, even pacing, the split of units
between pools, and which items are limited."""

from __future__ import annotations

import numpy as np
import pytest

from simab.errors import SimabError
from simab.simulators.catalog import Catalog
from simab.simulators.market import Market, limited_items, market_of, split_units
from simab.simulators.spec import MarketSpec, world_spec
from simab.simulators.units import DAY


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.build(world_spec({"preset": "default", "n_shop_items": 600, "n_content_items": 400,
                                     "n_shops": 40}), 3)


def market(catalog, *, capacity=10.0, users=300, refresh_s=3600, shares=(1.0,), names=("shared",), **kw) -> Market:
    spec = MarketSpec(enabled=True, capacity=capacity, refresh_s=refresh_s, **kw)
    return Market(spec, catalog, 3, np.zeros(users, np.int64), np.ones(users, bool), shares, names)


def clicks(m: Market, item: int, times, requests=None, pool: int = 0) -> None:
    """One click on ``item`` per time (request ids 0, 1, ... unless given)."""
    times = np.asarray(times, np.float64)
    requests = np.arange(len(times)) if requests is None else np.asarray(requests)
    m.record(np.full(len(times), pool), np.full((len(times), 1), item), np.ones((len(times), 1), bool),
             times[:, None], requests)


def test_units_are_capacity_per_thousand_users_floored(catalog):
    m = market(catalog, capacity=10.0, users=300)  # 10 * 300 / 1000 = 3 units per item and day
    assert (m.units == 3).all()
    assert market(catalog, capacity=10.0, users=299).units.max() == 2  # 2.99: a unit is whole or absent


def test_spend_never_exceeds_the_units_and_the_excess_is_over_cap(catalog):
    m = market(catalog)
    item = int(m.limited[0])
    clicks(m, item, np.linspace(10.0, 3000.0, 8))  # 8 clicks within the first refresh interval (stale index)
    assert m.available[0, item]  # the index has not been refreshed yet
    m.catch_up(3600.0)
    s = m.slot[item]
    assert m.spend[0, s] == 3 and m.over_cap[0, s] == 5  # 3 units charged, 5 past the last unit
    assert not m.available[0, item]  # sold out from the next interval on
    assert m.sold_out_ts[0, s] == 3600.0


def test_recording_order_does_not_change_the_charges(catalog):
    a, b = market(catalog, capacity=10.0, users=200), market(catalog, capacity=10.0, users=200)  # 2 units
    item = int(a.limited[0])
    times, reqs = [50.0, 5.0, 5.0, 900.0], [1, 9, 12, 3]
    clicks(a, item, times, requests=reqs)
    for t, r in zip(times[::-1], reqs[::-1], strict=True):  # one at a time, in reverse
        clicks(b, item, [t], requests=[r])
    for m in (a, b):
        m.catch_up(3600.0)
    assert (a.spend == b.spend).all() and (a.over_cap == b.over_cap).all()
    assert a.spend[0, a.slot[item]] == 2 and a.over_cap[0, a.slot[item]] == 2


def test_events_after_a_boundary_wait_for_the_next_one(catalog):
    m = market(catalog)
    item = int(m.limited[0])
    clicks(m, item, [100.0, 7300.0])  # the second is in interval 2
    m.catch_up(3600.0)
    assert m.spend[0, m.slot[item]] == 1
    m.catch_up(7200.0)
    assert m.spend[0, m.slot[item]] == 1
    m.catch_up(10800.0)
    assert m.spend[0, m.slot[item]] == 2


def test_units_reset_at_every_day_boundary(catalog):
    m = market(catalog)
    item = int(m.limited[0])
    clicks(m, item, [100.0, 200.0, 300.0])
    m.catch_up(3600.0)
    assert not m.available[0, item]
    m.catch_up(DAY - 1.0)
    assert not m.available[0, item]  # sold out for the rest of day 0
    m.catch_up(DAY)
    assert m.available[0, item] and m.spend[0, m.slot[item]] == 0  # a new day, new units
    assert m.days[0].spent[0, m.slot[item]] == 3 and m.days[0].day == 0
    clicks(m, item, [DAY + 10.0], requests=[99])
    m.close(DAY + 5000.0)
    assert [d.day for d in m.days] == [0, 1] and m.days[1].spent[0, m.slot[item]] == 1
    m.close(2 * DAY)  # closing twice changes nothing
    assert len(m.days) == 2


def test_even_pacing_releases_units_with_the_day(catalog):
    m = market(catalog, capacity=40.0, users=100, pacing="even", refresh_s=21600)  # 4 units, 4 intervals a day
    item = int(m.limited[0])
    s = m.slot[item]
    clicks(m, item, [10.0, 20.0])  # interval 0 allows spend + 1 <= 4 * 1/4 = 1
    m.catch_up(21600.0)
    assert m.spend[0, s] == 2 and m.over_cap[0, s] == 0
    assert not m.available[0, item]  # interval 1 allows spend + 1 <= 2: 3 > 2
    m.catch_up(2 * 21600.0)
    assert m.available[0, item]  # interval 2 allows 3
    spec = MarketSpec(enabled=True, capacity=40.0, refresh_s=21600, pacing="none")
    plain = Market(spec, catalog, 3, np.zeros(100, np.int64), np.ones(100, bool))
    assert plain.available[0, item]


def test_budget_split_pools_apportion_the_market_units_exactly():
    # 3 units halved: 1.5 each; the spare unit alternates between the pools over the items
    u = split_units(np.array([3]), np.array([0.5, 0.5]), 4)
    assert u.sum(axis=0).tolist() == [3, 3, 3, 3]
    assert u[0].tolist() == [2, 1, 2, 1] and u[1].tolist() == [1, 2, 1, 2]
    # the largest remainder wins: 3 * 0.6 = 1.8 -> 2, 3 * 0.4 = 1.2 -> 1
    assert split_units(np.array([3]), np.array([0.4, 0.6]), 2).tolist() == [[1, 1], [2, 2]]
    rng = np.random.default_rng(0)
    for _ in range(50):
        total = rng.integers(0, 40, size=3)
        shares = rng.dirichlet(np.ones(3))
        u = split_units(total, shares, 5).reshape(3, 3, 5)
        assert (u.sum(axis=1) == total[:, None]).all()
        assert (np.abs(u - total[:, None, None] * shares[None, :, None]) < 1 + 1e-9).all()


def test_limited_items_are_the_head_or_a_keyed_random_set(catalog):
    head = limited_items(MarketSpec(enabled=True, limited_share=0.1), catalog, 3)
    assert len(head) == 60 and set(head) == set(catalog.popular_target[:60].tolist())
    rnd = limited_items(MarketSpec(enabled=True, limited_share=0.1, limited="random"), catalog, 3)
    assert len(rnd) == 60 and (rnd < catalog.n_shop_items).all()
    assert (rnd == limited_items(MarketSpec(enabled=True, limited_share=0.1, limited="random"), catalog, 3)).all()
    assert set(rnd) != set(head)


def test_markets_split_users_by_hash_and_each_market_has_its_own_units(catalog):
    users = np.arange(2000)
    mk = market_of(5, users, 4)
    assert set(mk.tolist()) == {0, 1, 2, 3} and (market_of(5, users[::-1], 4) == mk[::-1]).all()
    spec = MarketSpec(enabled=True, capacity=10.0, refresh_s=3600)
    m = Market(spec, catalog, 3, mk, np.ones(2000, bool))
    per_market = np.bincount(mk)
    assert m.units[:, 0].tolist() == [int(10 * n / 1000) for n in per_market]
    item = int(m.limited[0])
    m.record(m.pools(np.array([0])), np.array([[item]]), np.array([[True]]), np.array([[5.0]]), np.array([0]))
    m.catch_up(3600.0)
    assert m.spend[:, m.slot[item]].tolist() == [1 if k == mk[0] else 0 for k in range(4)]


def test_the_market_is_off_by_default_and_refuses_a_refresh_that_does_not_divide_a_day():
    assert not world_spec("default").market.enabled
    assert "market" not in world_spec("default").model_dump()
    with pytest.raises(SimabError, match="world.market.refresh_s: .*must divide a day"):
        world_spec({"preset": "default", "market": {"enabled": True, "refresh_s": 7000}})
    with pytest.raises(SimabError, match="limited_share 0.5 leaves 150 unlimited"):
        world_spec({"preset": "default", "n_shop_items": 300, "market": {"enabled": True, "limited_share": 0.5}})


def test_the_market_does_not_key_the_pre_period_and_model_caches():
    """The pre-period runs without a market, so its cached logs and the models trained on them
    are shared by every market setting of a world."""
    from simab.simulators.world import World

    plain = World.build(world_spec("default"), 1)
    with_market = World.build(world_spec({"preset": "default", "market": {"enabled": True, "capacity": 3.0}}), 1)
    assert plain.fingerprint() == with_market.fingerprint()
    assert World.build(world_spec({"preset": "default", "n_users": 999}), 1).fingerprint() != plain.fingerprint()
