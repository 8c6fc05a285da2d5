"""The world's mechanics: determinism, on-demand users and histories, base rates, the
position-bias curve and spec errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from simab.cli.world import sample_pre_period
from simab.errors import SimabError
from simab.simulators.oracle import sigmoid
from simab.simulators.spec import world_spec
from simab.simulators.summary import position_curve
from simab.simulators.world import World

from .conftest import logged_world

SMALL = {"n_shop_items": 800, "n_content_items": 600, "n_shops": 60}


def _by_user(t: pa.Table, user: int) -> dict[str, np.ndarray]:
    t = t.filter(pa.compute.equal(t.column("user"), user)).sort_by([("request", "ascending"), ("position", "ascending")])
    return {k: t.column(k).to_numpy() for k in ("request", "position", "item", "clicked", "converted", "p_click", "ts")}


def test_user_trajectory_does_not_depend_on_shard_or_company():
    """A user's exposures are the same whether simulated alone, with others, or in
    another shard grouping: every draw is keyed by (user, session, step) or request."""
    w = World.build(world_spec({"preset": "moveline", "n_users": 500, **SMALL}), 3)
    users = np.arange(40, dtype=np.int64)
    together = sample_pre_period(w, users, 0.5, shards=1).exposures
    sharded = sample_pre_period(w, users, 0.5, shards=3).exposures
    u_rows = together.column("user").to_numpy()
    picked = np.unique(u_rows)[[0, -1]]
    picked = np.append(picked, np.bincount(u_rows).argmax())
    alone = sample_pre_period(w, picked[::-1], 0.5, shards=2).exposures
    assert together.num_rows == sharded.num_rows > 0
    for u in picked:
        a, b, c = _by_user(together, u), _by_user(sharded, u), _by_user(alone, u)
        assert len(a["item"]) > 0
        for k in ("request", "position", "item", "clicked", "converted"):
            np.testing.assert_array_equal(a[k], b[k])
            np.testing.assert_array_equal(a[k], c[k])
        # serving batches may close a few ms apart; intent decays over hours
        np.testing.assert_allclose(a["p_click"], c["p_click"], rtol=1e-6)


def test_users_and_histories_are_on_demand_and_reproducible_alone():
    """Attributes and lifelong histories of a user do not depend on the batch, on the
    other users, or on the size of the population (1M users build as fast as 1k)."""
    big = World.build(world_spec({"preset": "lifelong", "n_users": 1_000_000}), 5)
    small = World.build(world_spec({"preset": "lifelong", "n_users": 1000}), 5)
    ids = np.array([3, 999, 17])
    batch = big.population.users(ids)
    one = small.population.users(ids[1:2])
    np.testing.assert_array_equal(batch.active[1], one.active[0])
    np.testing.assert_allclose(batch.u[1], one.u[0])
    hb = big.histories.source(batch)
    ho = small.histories.source(one)
    assert hb.item.shape == (3, 2000)  # the lifelong preset's cap of 2,000 source-domain events
    np.testing.assert_array_equal(hb.item[1], ho.item[0])
    np.testing.assert_array_equal(hb.ts[1], ho.ts[0])
    last = big.population.users(np.array([999_999]))
    assert big.histories.target(last).mask.sum() == big.histories.lengths(last, big.spec.lifelong.target_length)[0]
    # domains never overlap: source histories hold content items only, target shop items
    assert (big.catalog.domain[hb.item[hb.mask]] == 1).all()
    ht = big.histories.target(batch)
    assert (big.catalog.domain[ht.item[ht.mask]] == 0).all()


def test_dormant_interests_only_in_old_source_history():
    w = World.build(world_spec({"preset": "lifelong", "n_users": 1000}), 1)
    users = w.population.users(np.arange(50))
    h = w.histories.source(users)
    recent = h.ts > -w.spec.lifelong.dormant_recency_days * 86400.0
    is_dormant = (h.category[:, :, None] == users.dormant[:, None, :]).any(-1)
    # dormant categories appear in recent events only by the 15% uniform exploration:
    # expected share 0.15 * n_dormant / K = 0.15 * 3 / 60 = 0.0075
    assert (is_dormant & recent & h.mask).sum() / (recent & h.mask).sum() < 2 * 0.0075
    assert (is_dormant & ~recent & h.mask).sum() / (~recent & h.mask).sum() > 0.2


def test_base_logit_is_the_neutral_item_ctr_at_the_top():
    """With affinity, quality and popularity weights at 0, P(click) at position 0 is
    sigmoid(base_logit) of the scenario, and (1 + p)^-decay of it at position p."""
    w = World.build(world_spec({"preset": "multiscenario4", "n_users": 100,
                                "response": {"beta": 0.0, "gamma": 0.0, "pop_weight": 0.0}}), 0)
    users = w.population.users(np.arange(4))
    items = np.tile(np.arange(10), (4, 1))
    pos = np.tile(np.arange(10), (4, 1))
    for s, name in enumerate(w.scenario_names):
        sc = np.full(4, s)
        p, _, _ = w.oracle.probabilities(users.u, np.zeros_like(users.u), sc, items, pos, np.zeros((4, 10)),
                                         users.price_sensitivity, users.conversion_propensity)
        spec = w.spec.scenarios[name]
        np.testing.assert_allclose(p, sigmoid(spec.base_logit) * (1.0 + pos) ** -spec.position_decay)


def test_realised_ctr_per_scenario_matches_the_oracle():
    """Realised CTR per scenario is within 4 standard errors of the mean true P(click)
    the oracle logged for the same exposures (SE = sqrt(sum p(1-p)) / n), and scenarios
    with a higher base logit have a higher true CTR at position 0 in this preset."""
    w, log = logged_world("default", 300, 1.0)
    e = log.exposures
    sc = np.asarray(e.column("scenario").to_pylist())
    clicked = e.column("clicked").to_numpy().astype(float)
    p = e.column("p_click").to_numpy()
    for name in w.scenario_names:
        m = sc == name
        assert m.sum() > 1000
        se = np.sqrt((p[m] * (1 - p[m])).sum()) / m.sum()
        assert abs(clicked[m].mean() - p[m].mean()) < 4 * se, name


@pytest.mark.parametrize("preset", ["default"])
def test_position_bias_curve_is_recovered_from_the_logs(preset):
    """The examination exponent fitted on explored exposures' clicks is the preset's:
    within 4 standard errors (weighted least squares) plus 0.1 for the depletion bias
    (a random pick at position p never sees the items placed above it, which the
    popularity-first logging policy takes from the top of the candidate list).  1,500 users:
    at the realistic base rates (CTR ~4%) the fit needs ~5x the users of the dense ones."""
    w, log = logged_world(preset, 1500, 1.0)
    e = log.exposures
    sc = np.asarray(e.column("scenario").to_pylist())
    pos = e.column("position").to_numpy().astype(np.int64)
    clicked = e.column("clicked").to_numpy()
    explored = e.column("propensity").to_numpy() < 1 - w.spec.logging_epsilon
    for name in w.scenario_names:
        m = sc == name
        c = position_curve(pos[m], clicked[m], explored[m])
        true = w.spec.scenarios[name].position_decay
        assert abs(c["decay"] - true) < 4 * c["decay_se"] + 0.1, (name, c["decay"], c["decay_se"], true)
        assert c["decay_se"] < 0.25  # enough data for the check to mean something


def test_position_curve_fit_on_synthetic_clicks():
    """The fit itself: clicks drawn from 0.2 (1 + p)^-0.9 give back 0.9."""
    g = np.random.default_rng(0)
    pos = g.integers(0, 10, 200_000)
    clicked = g.random(pos.size) < 0.2 * (1.0 + pos) ** -0.9
    c = position_curve(pos, clicked, np.ones(pos.size, bool))
    assert abs(c["decay"] - 0.9) < 4 * c["decay_se"]


@pytest.mark.parametrize(
    "table, key, words",
    [
        ({"preset": "default", "n_userz": 5}, "world.n_userz", "unknown key"),
        ({"preset": "default", "n_users": 1}, "world.n_users", "greater than or equal"),
        ({"preset": "default", "logging_epsilon": 1.5}, "world.logging_epsilon", "less than or equal"),
        ({"preset": "default", "intent": {"scene_first": -0.1}}, "world.intent.scene_first", "greater than or equal"),
        ({"preset": "nowhere"}, "world.preset", "unknown preset"),
    ],
)
def test_spec_errors_are_one_line_with_the_key(table, key, words):
    with pytest.raises(SimabError) as ei:
        world_spec(table, source="w.toml")
    msg = ei.value.one_line()
    assert "\n" not in msg and msg.startswith(f"error: w.toml: {key}: ") and words in msg, msg


def test_impossible_slate_is_rejected():
    with pytest.raises(SimabError) as ei:
        world_spec({"preset": "default", "scenarios": {"home_feed": {"slate_size": 80}}}, source="w.toml")
    assert "slate_size 80 exceeds n_candidates 60" in ei.value.one_line()


def test_scalar_draws_are_bit_identical_to_vectorised_draws():
    """The scalar fast path of ``rng.uniform`` (pure-Python 64-bit arithmetic) must give
    exactly the vectorised numpy result, including negative units and large counters."""
    from simab.simulators import rng

    key = rng.stream_key(11, "test/scalar")
    g = np.random.default_rng(0)
    units = g.integers(-(2**40), 2**62, 2000)
    counters = g.integers(0, 2**40, 2000)
    vectorised = rng.uniform(key, units, counters)
    scalar = np.array([rng.uniform(key, int(u), int(c)) for u, c in zip(units, counters, strict=True)])
    assert np.array_equal(vectorised, scalar)


def test_multi_stream_draws_are_bit_identical_to_one_stream_at_a_time():
    """``rng.uniforms`` (several streams in one pass, used for the response draws) must give
    exactly ``rng.uniform`` per stream, for array and scalar units, and ``box_muller`` on
    counters 2c, 2c+1 exactly ``rng.normal``."""
    from simab.simulators import rng

    keys = [rng.stream_key(3, f"test/multi/{s}") for s in "abc"]
    g = np.random.default_rng(1)
    rid = g.integers(0, 2**50, (7, 1))
    pos = np.broadcast_to(np.arange(10), (7, 10))
    counters = (pos, 2 * pos + 1, g.integers(0, 2**40, (7, 10)))
    stacked = rng.uniforms(keys, rid, counters)
    for k, c, got in zip(keys, counters, stacked, strict=True):
        assert np.array_equal(got, rng.uniform(k, rid, c))
    scalar_unit = rng.uniforms(keys, 12345, (np.arange(5),) * 3)
    assert np.array_equal(scalar_unit[2], rng.uniform(keys[2], 12345, np.arange(5)))
    u1, u2 = rng.uniforms(keys[:1] * 2, rid, (2 * pos, 2 * pos + 1))
    assert np.array_equal(rng.box_muller(u1, u2), rng.normal(keys[0], rid, pos))


def test_ring_tail_is_the_end_of_a_gather():
    from simab.simulators.state import Ring

    ring = Ring(3, 6, {"cat": np.int64})
    for row, n in ((0, 0), (1, 4), (2, 15)):  # empty, part-filled, wrapped round
        for j in range(n):
            ring.push_one(row, cat=100 * row + j)
    for row in range(3):
        vals, mask = ring.gather(np.array([row]))
        for n in (3, 6, 10):
            tails, reals = ring.tail_rows(np.array([row]), "cat", n)
            tail, real = tails[0], reals[0]
            assert np.array_equal(real, mask[0][-n:])
            assert np.array_equal(tail[real], vals["cat"][0][-n:][mask[0][-n:]])


def test_vectorised_history_seeding_equals_pushing_one_by_one():
    """``UserState.seed_history`` on empty rings (vectorised) must leave the rings exactly
    as pushing every row's last ``seq_len`` real events one at a time does."""
    from simab.simulators.state import UserState

    w = World.build(world_spec({"preset": "default", "n_users": 30}), 3)
    users = w.population.users(np.arange(12))
    g = np.random.default_rng(0)
    width = w.spec.seq_len + 7
    items = g.integers(0, 500, (12, width))
    cats = g.integers(0, 40, (12, width))
    ts = np.sort(g.random((12, width)), axis=1)
    mask = g.random((12, width)) < 0.8
    mask[0] = False  # no history at all
    mask[1, :3] = True
    mask[1, 3:] = False  # shorter than the ring
    fast = UserState(w.spec, users, w.catalog.centroid)
    fast.seed_history(np.arange(12), items, cats, ts, mask)
    slow = UserState(w.spec, users, w.catalog.centroid)
    for r in range(12):
        idx = np.flatnonzero(mask[r])[-w.spec.seq_len:]
        for j in idx:
            slow.seq.push_one(r, item=items[r, j], cat=cats[r, j], ts=ts[r, j])
    assert np.array_equal(fast.seq.count, slow.seq.count)
    for field in ("item", "cat", "ts"):
        assert np.array_equal(fast.seq.data[field], slow.seq.data[field])
