"""World dials of issue #19 (docs/world.md, "Dials"): each is off at its default, and its
signal moves with it on a world where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from simab.simulators import signals
from simab.simulators.spec import world_spec
from simab.simulators.world import World

from .conftest import logged_world


def test_user_click_bias_is_off_by_default_and_drawn_with_its_sd_and_activity_correlation():
    ids = np.arange(20_000)
    off = World.build(world_spec("default"), 3).population.users(ids)
    assert (off.click_bias == 0).all()
    sd, rho = 0.8, 0.5
    w = World.build(world_spec({"preset": "default", "response": {"user_click_bias_sd": sd,
                                                                 "user_click_bias_activity_corr": rho}}), 3)
    u = w.population.users(ids)
    n = len(ids)
    # sample sd of a normal: relative se 1 / sqrt(2 (n - 1)); 4 se
    assert abs(u.click_bias.std() / sd - 1) < 4 / np.sqrt(2 * (n - 1))
    # correlation with log activity: Fisher z, se 1 / sqrt(n - 3); 4 se
    r = np.corrcoef(u.click_bias, np.log(u.activity))[0, 1]
    assert abs(np.arctanh(r) - np.arctanh(rho)) < 4 / np.sqrt(n - 3)
    # the rest of the user is unchanged: the bias has its own draw
    np.testing.assert_array_equal(u.u, off.u)


def test_centred_click_bias_keeps_the_mean_click_odds_and_dumps_only_when_on():
    """``user_click_bias_centered`` (issue #30, TSP's dial at a fixed base rate): the same draws
    shifted by -sd^2/2, so E[exp(bias)] = 1 (the lognormal mean); off, the spec dumps as before."""
    ids = np.arange(20_000)
    sd = 1.0
    table = {"preset": "default", "response": {"user_click_bias_sd": sd, "user_click_bias_activity_corr": 0.8}}
    raw = World.build(world_spec(table), 3).population.users(ids)
    table["response"]["user_click_bias_centered"] = True
    spec = world_spec(table)
    centred = World.build(spec, 3).population.users(ids)
    np.testing.assert_allclose(centred.click_bias, raw.click_bias - sd**2 / 2, rtol=0, atol=1e-12)  # the same draws
    # mean of exp(N(-sd^2/2, sd^2)) is 1 with sd of the mean sqrt((e^{sd^2} - 1) / n); 4 se
    n = len(ids)
    assert abs(np.exp(centred.click_bias).mean() - 1) < 4 * np.sqrt((np.exp(sd**2) - 1) / n)
    assert spec.model_dump()["response"]["user_click_bias_centered"] is True
    assert "user_click_bias_centered" not in world_spec({"preset": "default"}).model_dump()["response"]


def test_user_click_icc_rises_with_the_click_bias():
    """Same world seed and users (common random numbers), bias sd 0 / 0.5 / 1.0.  Adding a
    per-user logit shift of variance s^2 to an attraction logit of total variance V with
    between-user share ICC0 gives (ICC0 V + s^2) / (V + s^2): measured V ~ 8 on this preset,
    so +0.02 at s = 0.5 and +0.08 at s = 1 (the exposure mix also moves a little)."""
    icc = []
    for sd in (0.0, 0.5, 1.0):
        w, log = logged_world("default", 300, 1.0, f'{{"response": {{"user_click_bias_sd": {sd}}}}}')
        icc.append(signals.user_click_icc(w, log.exposures))
    assert icc[0] < icc[1] < icc[2]
    assert icc[2] - icc[0] > 0.04


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_specific_share_splits_categories_into_shareable_and_specific(share):
    w = World.build(world_spec({"preset": "multiscenario3", "specific_share": share}), 0)
    K = w.catalog.n_categories
    assert w.oracle.specific_categories.sum() == round(share * K)
    shareable, _ = signals.scenario_label_correlation(w, subset="shareable")
    specific, _ = signals.scenario_label_correlation(w, subset="specific")
    # shareable items' logits differ across scenarios only by the base rate and the
    # per-scenario weight of long-term affinity (w_long): correlation ~1
    if share < 1:
        assert shareable > 0.99
    else:
        assert np.isnan(shareable)
    if share > 0:
        # the scenario-specific bilinear part decorrelates them (0.82 over all items at share 1)
        assert specific < 0.9
    else:
        assert np.isnan(specific)
    full = World.build(world_spec({"preset": "multiscenario3"}), 0)
    if share == 1.0:  # the default: every category specific, the same oracle as before the dial
        u = full.population.users(np.arange(50))
        items = np.arange(50 * 8).reshape(50, 8) % full.catalog.n_shop_items
        sc = np.zeros(50, np.int64)
        np.testing.assert_array_equal(w.oracle.affinity(u.u, np.zeros_like(u.u), sc, items),
                                      full.oracle.affinity(u.u, np.zeros_like(u.u), sc, items))


def _topic_share(w: World, n: int = 200) -> float:
    """Share of lifelong source events about an interest whose item has the user's topic."""
    u = w.population.users(np.arange(n))
    h = w.histories.source(u)
    hits = tot = 0
    interests = np.concatenate([u.active, u.dormant], axis=1)
    for i in range(n):
        cats, items = h.category[i][h.mask[i]], h.item[i][h.mask[i]]
        for j, k in enumerate(interests[i]):
            sel = cats == k
            hits += int((w.catalog.topic[items[sel]] == u.topics[i, j]).sum())
            tot += int(sel.sum())
    return hits / tot


def test_topics_are_off_by_default_and_leave_the_other_catalog_draws_alone():
    off = World.build(world_spec("lifelong"), 0)
    assert off.catalog.n_topics == 0 and off.catalog.topic is None and off.population.users(np.arange(3)).topics is None
    on = World.build(world_spec({"preset": "lifelong", "n_topics": 4}), 0)
    for f in ("category", "shop", "price", "quality", "logpop"):
        np.testing.assert_array_equal(getattr(on.catalog, f), getattr(off.catalog, f))
    assert set(np.unique(on.catalog.topic)) == {0, 1, 2, 3}
    # a shop item and a content item of the same (category, topic) are closer than of the same category alone
    c = on.catalog
    shop, content = c.domain == 0, c.domain == 1
    same_topic, other_topic = [], []
    for k in range(5):
        a = np.flatnonzero(shop & (c.category == k))[:30]
        b = np.flatnonzero(content & (c.category == k))[:30]
        sim = c.latent[a] @ c.latent[b].T
        eq = c.topic[a][:, None] == c.topic[b][None, :]
        same_topic.append(sim[eq].mean())
        other_topic.append(sim[~eq].mean())
    assert np.mean(same_topic) > np.mean(other_topic) + 0.1


def test_item_affinity_puts_the_users_topic_into_the_lifelong_history():
    """At item_affinity a an interest event is an item of the user's topic with probability
    a (when the (category, topic) group has items) plus (1 - a) times the popularity pick's
    chance of landing on it (~1 / T): 0.25 at a = 0 and ~0.85 at a = 0.8 for T = 4; 0.02
    below for the (category, topic) groups of the content domain without items."""
    base = _topic_share(World.build(world_spec({"preset": "lifelong", "n_topics": 4}), 0))
    assert abs(base - 0.25) < 0.05
    a = 0.8
    share = _topic_share(World.build(world_spec({"preset": "lifelong", "n_topics": 4,
                                                 "lifelong": {"item_affinity": a}}), 0))
    assert abs(share - (a + (1 - a) * base)) < 0.03


def test_topic_ratio_rises_when_the_history_reveals_the_users_topic():
    """Measured 0.91 at item_affinity 0 (the history's top topic is then the popular
    items' topic, not the user's) and 1.19 at 0.9 (lifelong preset, 300 users, 1 day)."""
    r = []
    for a in (0.0, 0.9):
        w, log = logged_world("lifelong", 300, 1.0, f'{{"n_topics": 4, "lifelong": {{"item_affinity": {a}}}}}')
        r.append(signals.topic_signal(w, log.exposures))
    assert r[0].strata > 300 and r[1].exposed > 1000
    assert r[1].ratio > r[0].ratio + 0.15 and r[1].ratio > 1.1
    w0, log0 = logged_world("lifelong", 50, 0.5)
    assert signals.topic_signal(w0, log0.exposures) is None  # no topics: no signal


def test_item_level_intent_pulls_towards_a_wanted_item_of_the_needs_category():
    from simab.simulators.state import UserState

    w = World.build(world_spec({"preset": "moveline", "intent": {"item_level": 0.7}}), 0)
    users = w.population.users(np.arange(200))
    st = UserState(w.spec, users, w.catalog.centroid, -86400.0, w.catalog)
    rows = np.arange(200)
    fresh = st.arrive_needs_batch(rows, users.ids, w.chain, np.zeros(200), w.catalog.n_categories)
    assert fresh.sum() > 50
    r = rows[fresh]
    item = st.need_item[r]
    assert (w.catalog.category[item] == st.need_cat[r]).all() and (w.catalog.domain[item] == 0).all()
    # the intent vector is strength * decay * ((1 - l) c_k + l v_i): its cosine with the
    # wanted item exceeds the centroid's own cosine with the item
    s = st.intent(r, np.zeros(len(r)))
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    lat, cen = w.catalog.latent[item], w.catalog.centroid[st.need_cat[r]]
    assert (cos(s, lat) > cos(cen, lat) + 1e-9).all()
    with pytest.raises(ValueError):
        UserState(w.spec, users, w.catalog.centroid)  # item-level intent needs the catalog


def test_item_intent_ratio_rises_with_item_level():
    """Measured 1.72 at item_level 0 (long-term preferences already favour items near the
    clicked ones) and 2.02 at 0.9 (moveline preset, 500 users, 1 day)."""
    r = []
    for lv in (0.0, 0.9):
        w, log = logged_world("moveline", 500, 1.0, f'{{"intent": {{"item_level": {lv}}}}}')
        r.append(signals.item_intent_signal(w, log.exposures, log.features))
    assert r[0].strata > 300 and r[1].strata > 300
    assert r[1].ratio > r[0].ratio + 0.15


def test_moveline_visible_changes_what_the_log_shows_and_nothing_the_world_does():
    """``moveline_visible`` (AMEN's dial, issue #30): the same users and seed at 0 / 0.5 / 1
    give identical exposures and clicks (the base CTR is fixed by construction); the moveline
    log at v holds a share v of the events at 1 (binomial, 4 se), each exactly as logged at
    1, and at 0 none: no event, no AISeq entry (a search / shop visit left out of the log
    leaves its clicks out of the AISeq), so AMEN's extra inputs are empty there."""
    from collections import Counter

    logs = {v: logged_world("moveline", 200, 1.0, f'{{"moveline_visible": {v}}}') for v in (0.0, 0.5, 1.0)}
    ref, ref_ml = logs[1.0][1].exposures, logs[1.0][1].moveline
    cols = ("user", "ts", "scene", "category", "shop")
    events = lambda ml: list(zip(*(ml.column(c).to_pylist() for c in cols), strict=True))  # noqa: E731
    n_ref = ref_ml.num_rows
    assert n_ref > 2000
    ais_ref = logs[1.0][1].features.column("ais_len").to_numpy().mean()
    assert ais_ref > 1.0
    for v, (_, log) in logs.items():
        for col in ("item", "clicked", "position", "p_click"):
            np.testing.assert_array_equal(log.exposures.column(col).to_numpy(), ref.column(col).to_numpy())
        ml = log.moveline
        assert abs(ml.num_rows / n_ref - v) <= 4 * np.sqrt(max(v * (1 - v), 1e-12) / n_ref) + 1e-12
        assert not Counter(events(ml)) - Counter(events(ref_ml))  # logged events are the world's, unchanged
        feats = log.features
        if v == 0.0:
            assert (feats.column("moveline_len").to_numpy() == 0).all()
            assert (feats.column("ais_len").to_numpy() == 0).all()
        elif v < 1.0:
            assert 0 < feats.column("ais_len").to_numpy().mean() < ais_ref
