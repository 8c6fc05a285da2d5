"""Markets inside the engines: every click (or purchase) of a limited item is charged or counted
over cap, units are never overspent, a sold-out item is never served again that day, units come
back the next day, and both engines agree under every design."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from simab.engine.engines import make_simulation
from simab.run.arm_policies import build_policy
from simab.run.design import markets_of, shard_setup
from simab.simulators.units import DAY
from simab.simulators.world import World
from simab.spec import load_campaign

WORLD = {"n_users": 240, "calibration": "dense", "pre_period_days": 0.5, "n_shop_items": 600,
         "n_content_items": 400, "n_shops": 40}


def simulate(design: dict, *, engine: str = "wave", days: float = 1.2, capacity: float = 25.0,
             resource: str = "budget", refresh_s: int = 1800, treatment: dict | None = None):
    """One shard of a small two-market campaign: (spec, exposures table, market table)."""
    spec = load_campaign(None, overrides={"arms": {
        "control": {"policy": "oracle", "share": 0.5},
        "treatment": treatment or {"policy": "oracle", "share": 0.5, "params": {"blend": 0.5}}}},
        set_values={"seed": 3, "duration_days": days, "shards": 1, "engine": engine, "design": design,
                    "world": {**WORLD, "market": {"enabled": True, "n_markets": 2, "capacity": capacity,
                                                  "resource": resource, "refresh_s": refresh_s}}})
    world = World.build(spec.world, spec.seed)
    policies = {a: build_policy({"kind": "fixed", "name": s.policy, "params": s.params}, world)
                for a, s in spec.arms.items()}
    setup = shard_setup(spec, world, 0, None, policies)
    sim = make_simulation(engine, world, setup.plan, list(spec.arms), setup.policies, campaign="t",
                          serving=spec.serving, unit=setup.unit, session_arm=setup.session_arm,
                          market=setup.market, market_pools=setup.market_pools)
    sim.run()
    exp = sim.tables()["exposures"]
    return spec, exp, setup.market.table(0)


def _limited_events(spec, exp: pa.Table, market: pa.Table, events: np.ndarray, t: np.ndarray):
    """Per (market, day, item) of the market table: the consumption events the exposures hold."""
    users = exp["user"].to_numpy()
    mk = markets_of(spec, users)
    item = exp["item"].to_numpy()
    limited = np.isin(item, market["item"].to_numpy())
    keep = events & limited & (t < spec.duration_days * DAY)
    key = (mk[keep] * 1000 + np.floor(t[keep] / DAY).astype(np.int64)) * 10_000 + item[keep]
    ids, counts = np.unique(key, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


_RUNS: dict = {}


def tight(kind: str):
    """The 1.2-day tight campaign of ``kind`` (simulated once per test session)."""
    if kind not in _RUNS:
        _RUNS[kind] = simulate({"kind": kind})
    return _RUNS[kind]


def test_every_click_is_charged_or_over_cap_and_units_are_never_overspent():
    spec, exp, market = tight("user")
    spent, units = market["spent"].to_numpy(), market["units"].to_numpy()
    assert (spent <= units).all()
    assert spent.sum() > 0 and (spent == units).any()  # a tight market: some items use every unit
    clicks = _limited_events(spec, exp, market, exp["clicked"].to_numpy(), exp["ts"].to_numpy())
    mk, day, item = (market[c].to_numpy() for c in ("market", "day", "item"))
    key = (mk * 1000 + day) * 10_000 + item
    events = spent + market["over_cap"].to_numpy()
    assert [clicks.get(k, 0) for k in key.tolist()] == events.tolist()


def test_purchases_consume_stock_when_they_land():
    spec, exp, market = simulate({"kind": "user"}, resource="stock", capacity=20.0, days=1.0)  # 2 units a market
    spent, units = market["spent"].to_numpy(), market["units"].to_numpy()
    assert (spent <= units).all() and spent.sum() > 0
    conv_ts = exp["conversion_ts"].to_numpy()
    buys = _limited_events(spec, exp, market, exp["converted"].to_numpy(), np.nan_to_num(conv_ts, nan=np.inf))
    key = (market["market"].to_numpy() * 1000 + market["day"].to_numpy()) * 10_000 + market["item"].to_numpy()
    assert [buys.get(k, 0) for k in key.tolist()] == (spent + market["over_cap"].to_numpy()).tolist()


@pytest.mark.parametrize("kind", ["user", "budget_split"])
def test_a_sold_out_item_is_not_served_again_that_day_and_returns_the_next(kind):
    spec, exp, market = tight(kind)
    sold = market.filter(pc.is_valid(market["sold_out_ts"]))
    sold = sold.filter(pc.invert(pc.is_nan(sold["sold_out_ts"])))
    assert sold.num_rows > 0
    users = exp["user"].to_numpy()
    mk = markets_of(spec, users)
    arm = exp["arm"].combine_chunks().cast(pa.string()).to_numpy(zero_copy_only=False)
    pool = arm if kind == "budget_split" else np.full(len(arm), "shared", object)
    item, ts = exp["item"].to_numpy(), exp["ts"].to_numpy()
    day = np.floor(ts / DAY)
    returned = 0
    for m, d, p, i, t_out in zip(*(sold[c].to_pylist() for c in ("market", "day", "pool", "item", "sold_out_ts")),
                                 strict=True):
        same = (mk == m) & (item == i) & (pool == p)
        assert not (same & (day == d) & (ts >= t_out)).any(), (m, d, p, i)  # never served once sold out
        returned += bool((same & (day == d + 1)).any())
    assert returned > 0  # units came back the next day: sold-out items were served again


CASES = {"user": {"kind": "user"}, "budget_split": {"kind": "budget_split"},
         "item": {"kind": "item", "cluster": "category"}, "two_sided": {"kind": "two_sided", "merge": "rank"},
         "switchback": {"kind": "switchback", "block_hours": 2.0}, "market": {"kind": "market"}}


def _same(a: pa.Table, b: pa.Table) -> bool:
    if a.num_rows != b.num_rows:
        return False
    for c in a.column_names:
        x, y = a[c].to_numpy(zero_copy_only=False), b[c].to_numpy(zero_copy_only=False)
        if not (np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)):
            return False
    return True


def _engines_agree(kind: str) -> None:
    tables = {}
    for engine in ("wave", "reference"):
        _, exp, market = simulate(CASES[kind], engine=engine, days=0.4, capacity=25.0, refresh_s=900)
        exp = exp.sort_by([("request", "ascending"), ("position", "ascending")]).drop(["arm", "scenario", "campaign"])
        tables[engine] = (exp, market)
    assert tables["wave"][0].num_rows > 1000
    assert _same(tables["wave"][0], tables["reference"][0])
    assert _same(tables["wave"][1], tables["reference"][1])


@pytest.mark.parametrize("kind", list(CASES))
def test_wave_and_reference_engines_agree_under_every_design(kind):
    _engines_agree(kind)
