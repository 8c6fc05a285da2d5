"""Lifelong histories (simulators/history.py): a user's history is a function of (seed,
stream, user) alone, ``max_len`` keeps the newest events of the same history, and the
vectorised counter-based draws follow the model's definition (module docstring): sorted
uniform timestamps over the span, 15% exploration of uniformly random categories, other
events about an interest by its weight (recent ones about active interests only), a
popularity-skewed item within the category, actions by ``ACTION_P``."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import stats

from simab.simulators import history
from simab.simulators.history import ACTION_P
from simab.simulators.spec import world_spec
from simab.simulators.units import DAY
from simab.simulators.world import World

FIELDS = ("item", "category", "action", "ts", "mask")
EXPLORATION = 0.15  # the model's share of events about a uniformly random category
# The draws are fixed by the seed, so every check below is deterministic; ALPHA is the
# chance that a correct generator would fail one of a test's checks for another seed
# (two-sided, Bonferroni-split over the test's checks).  With 10^5-10^6 events per check
# a wrong share of a few tenths of a percent is far outside the bounds.
ALPHA = 1e-4


@functools.cache
def _world(**lifelong) -> World:
    """The default world with every history at its full length (the per-event model is
    checked here; per-user lengths in ``test_per_user_lengths_*``)."""
    lifelong = {"length_median_share": 1.0, "length_sigma": 0.0, **lifelong}
    return World.build(world_spec({"preset": "default", "n_users": 100_000, "lifelong": lifelong}), 11)


def _histories(w: World, ids: np.ndarray, max_len: int | None = None) -> dict:
    users = w.population.users(ids)
    return {"source": w.histories.source(users, max_len=max_len), "target": w.histories.target(users, max_len=max_len)}


def _assert_same(a, b, what: str) -> None:
    # exact: the same arithmetic on the same draws (every operation is row-wise)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f"{what}: {f}")


def test_a_users_history_depends_only_on_seed_stream_and_user(monkeypatch):
    w = _world()
    ids = np.random.default_rng(0).choice(100_000, 200, replace=False)
    ids[:2] = [0, 99_999]
    ref = _histories(w, ids, max_len=40)
    shuffled = np.random.default_rng(1).permutation(len(ids))
    mixed = _histories(w, np.concatenate([ids[shuffled], ids[:5]]), max_len=40)  # other order, repeated users
    for name, h in ref.items():
        assert h.item.shape == (len(ids), 40) and h.mask.all()
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(mixed[name], f)[: len(ids)], getattr(h, f)[shuffled])
            np.testing.assert_array_equal(getattr(mixed[name], f)[len(ids):], getattr(h, f)[:5])
    for i in (0, 1, 57):  # alone
        for name, h in _histories(w, ids[i : i + 1], max_len=40).items():
            _assert_same(h, type(h)(*(getattr(ref[name], f)[i : i + 1] for f in FIELDS)), f"user {ids[i]} alone")
    monkeypatch.setattr(history, "_CHUNK", 1)  # one user per vectorised pass
    for name, h in _histories(w, ids, max_len=40).items():
        _assert_same(h, ref[name], f"{name}, one user per pass")


@pytest.mark.parametrize("domain", ["source", "target"])
def test_max_len_keeps_the_newest_events_of_the_same_history(domain):
    w = _world()
    ids = np.arange(0, 3000, 97)
    full = _histories(w, ids)[domain]
    n = full.item.shape[1]
    assert n == getattr(w.spec.lifelong, f"{domain}_length")
    assert (np.diff(full.ts, axis=1) >= 0).all() and (full.ts < 0).all() and (full.ts > -365 * DAY).all()
    for m in (1, 30, n - 1, n, n + 5):
        h = _histories(w, ids, max_len=m)[domain]
        keep = min(m, n)
        assert h.item.shape == (len(ids), keep)
        # exact: the newest events are drawn first and the cumulative sum giving their
        # timestamps runs newest to oldest, so a shorter history is a prefix of the same arithmetic
        _assert_same(h, type(h)(*(getattr(full, f)[:, n - keep :] for f in FIELDS)), f"max_len={m}")


def test_disabled_or_empty_histories_are_empty():
    ids = np.arange(4)
    off = _histories(_world(enabled=False), ids)
    assert off["source"].item.shape == (4, 0)
    assert off["target"].mask.all() and off["target"].item.shape == (4, 100)  # the shop history stays
    assert _histories(_world(target_length=0), ids)["target"].item.shape == (4, 0)


# --------------------------------------------------------------------------- distributions
@functools.cache
def _sample():
    """Full histories of 3,000 users (1.5 M source and 0.3 M target events)."""
    w = _world()
    ids = np.arange(3000)
    return w, w.population.users(ids), _histories(w, ids)


def _z(hits: np.ndarray, p: np.ndarray) -> float:
    """z-score of a count of independent events with probabilities ``p`` (a
    Poisson-binomial count: mean sum p, variance sum p(1 - p))."""
    p = np.broadcast_to(p, hits.shape)
    return float((hits.sum() - p.sum()) / np.sqrt((p * (1 - p)).sum()))


def _check_rates(checks: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    bound = stats.norm.isf(ALPHA / 2 / len(checks))
    z = {name: _z(hits, p) for name, (hits, p) in checks.items()}
    assert all(abs(v) < bound for v in z.values()), f"|z| >= {bound:.2f}: {z}"


def _category_checks(w: World, users, h, with_dormant: bool) -> dict:
    """Per interest slot (and for categories outside the interests): observed events of
    that category vs P = (1 - 0.15) * weight share + 0.15 / K, the weight share of a
    recent event's dormant interests being 0 and of its active ones w_j / sum(active w)."""
    K = w.spec.n_categories
    recent = h.ts > -w.spec.lifelong.dormant_recency_days * DAY
    wa, wd = users.active_w, users.dormant_w if with_dormant else np.zeros_like(users.dormant_w)
    total = (wa.sum(1) + wd.sum(1))[:, None]
    checks = {}
    slots = [("active", j, users.active[:, j], wa[:, j]) for j in range(wa.shape[1])]
    slots += [("dormant", j, users.dormant[:, j], wd[:, j]) for j in range(wd.shape[1])]
    for kind, j, cat, wj in slots:
        share_old = wj[:, None] / total
        share_recent = wj[:, None] / wa.sum(1)[:, None] if kind == "active" else np.zeros_like(share_old)
        hit = h.category == cat[:, None]
        for when, sel, share in (("recent", recent, share_recent), ("old", ~recent, share_old)):
            p = (1 - EXPLORATION) * np.broadcast_to(share, hit.shape) + EXPLORATION / K
            checks[f"{when} {kind} {j}"] = (hit[sel], p[sel])
    interests = np.concatenate([users.active, users.dormant], 1)
    outside = ~(h.category[:, :, None] == interests[:, None, :]).any(-1)
    checks["outside the interests"] = (outside, np.full(outside.shape, EXPLORATION * (K - interests.shape[1]) / K))
    return checks


@pytest.mark.parametrize("domain", ["source", "target"])
def test_categories_follow_interest_weights_recency_and_exploration(domain):
    """Recent events: active interests by weight (1 - 0.15 of them, plus exploration
    landing there); old source events: active and dormant interests by weight."""
    w, users, hs = _sample()
    h = hs[domain]
    recent = h.ts > -w.spec.lifelong.dormant_recency_days * DAY
    assert 0.2 < recent.mean() < 0.5  # both kinds are well represented (120 of 365 days)
    checks = _category_checks(w, users, h, with_dormant=domain == "source")
    K, ia = w.spec.n_categories, users.active.shape[1]
    in_active = (h.category[:, :, None] == users.active[:, None, :]).any(-1)
    # the share of recent events from active interests: 1 - 0.15 + 0.15 * n_active / K
    checks["recent from active interests"] = (in_active[recent], np.full(recent.sum(), 1 - EXPLORATION * (1 - ia / K)))
    _check_rates(checks)


def test_dormant_share_of_old_source_events_matches_their_weight():
    """Old source events are about a dormant interest with P = 0.85 * dormant_weight +
    0.15 * n_dormant / K (dormant_weight is the dormant interests' share of the weights)."""
    w, users, hs = _sample()
    h = hs["source"]
    old = h.ts <= -w.spec.lifelong.dormant_recency_days * DAY
    dormant = (h.category[:, :, None] == users.dormant[:, None, :]).any(-1)
    spec = w.spec.interest
    np.testing.assert_allclose(users.dormant_w.sum(1), spec.dormant_weight)  # rounding of the normalisation
    p = (1 - EXPLORATION) * spec.dormant_weight + EXPLORATION * spec.n_dormant / w.spec.n_categories
    _check_rates({"old dormant": (dormant[old], np.full(old.sum(), p))})


def test_timestamps_are_sorted_uniform_times_over_the_span():
    """All events of a history are an iid uniform sample over the span (sorted); the
    newest is the minimum of n uniforms, Beta(1, n), and the m-th newest Beta(m, n - m + 1)
    (order statistics).  KS tests, alpha split over the five."""
    w, users, hs = _sample()
    span = w.spec.lifelong.span_days * DAY
    tests = {}
    for domain, h in hs.items():
        n = h.ts.shape[1]
        x = -h.ts / span  # the fraction of the span before t = 0
        tests[f"{domain} all events"] = stats.kstest(x.ravel(), "uniform").pvalue
        tests[f"{domain} newest"] = stats.kstest(x[:, -1], "beta", args=(1, n)).pvalue
        m = 30
        short = -_histories(w, users.ids, max_len=m)[domain].ts[:, 0] / span  # drawn without the older events
        tests[f"{domain} {m}th newest"] = stats.kstest(short, "beta", args=(m, n - m + 1)).pvalue
    assert min(tests.values()) > ALPHA / len(tests), tests


def test_actions_and_item_popularity_follow_the_model():
    """Actions: independent categorical draws with P = ACTION_P, so each action's count
    is binomial.  Items: the item at popularity rank floor(s * u^2) of its category's s
    items, so P(rank < t) = sqrt(t / s) for t <= s (here t = ceil(s / 4))."""
    w, users, hs = _sample()
    checks = {}
    for domain, h in hs.items():
        for a, p in enumerate(ACTION_P, start=1):
            checks[f"{domain} action {a}"] = (h.action == a, np.full(h.action.shape, p))
        groups = w.catalog.content_by_category if domain == "source" else w.catalog.target_by_category
        rank = np.full(w.catalog.category.shape[0], -1)
        sizes = groups.sizes()
        rank[groups.items] = np.arange(len(groups.items)) - np.repeat(groups.offsets[:-1], sizes)
        assert (w.catalog.category[h.item] == h.category).all() and (rank[h.item] >= 0).all()
        s = sizes[h.category]
        t = -(-s // 4)
        checks[f"{domain} top quarter by popularity"] = (rank[h.item] < t, np.sqrt(t / s))
    _check_rates(checks)


# --------------------------------------------------------------------------- per-user lengths
@functools.cache
def _realistic() -> World:
    return World.build(world_spec({"preset": "default", "n_users": 100_000}), 11)


def test_per_user_lengths_follow_the_log_normal_law_and_activity():
    """Lengths are ``cap * share * exp(sigma z)`` rounded and clipped to [1, cap], with
    ``z`` correlated ``rho`` with log activity (HistoryGenerator.lengths)."""
    w = _realistic()
    lf = w.spec.lifelong
    assert lf.length_sigma > 0 and lf.length_median_share < 1  # the realistic default preset
    n = 20_000
    users = w.population.users(np.arange(n))
    cap = lf.source_length
    L = w.histories.lengths(users, cap)
    assert L.min() >= 1 and L.max() == cap
    # the median: z's sample median has sd 1.2533 / sqrt(n) (asymptotic), so 4 sd in log length
    tol = 4 * lf.length_sigma * 1.2533 / np.sqrt(n)
    assert abs(np.log(np.median(L) / (cap * lf.length_median_share))) < tol + 1.0 / (cap * lf.length_median_share)
    # share at the cap: P(z >= log(1 / share) / sigma), binomial sd; 4 sd
    p_cap = stats.norm.sf(np.log(1.0 / lf.length_median_share) / lf.length_sigma)
    assert abs((L == cap).mean() - p_cap) < 4 * np.sqrt(p_cap * (1 - p_cap) / n)
    # correlation of z with log activity is rho (Fisher z: sd 1 / sqrt(n - 3); 4 sd)
    z = users.length_z
    r = np.corrcoef(z, np.log(users.activity))[0, 1]
    assert abs(np.arctanh(r) - np.arctanh(lf.length_activity_corr)) < 4 / np.sqrt(n - 3)


@pytest.mark.parametrize("domain", ["source", "target"])
def test_per_user_lengths_mask_the_old_end_and_keep_the_newest_events(domain):
    w = _realistic()
    ids = np.arange(0, 3000, 29)
    users = w.population.users(ids)
    full = _histories(w, ids)[domain]
    cap = full.item.shape[1]
    L = w.histories.lengths(users, cap)
    # each row holds exactly its length of events, padding (zeros) at the old end (left)
    np.testing.assert_array_equal(full.mask.sum(1), L)
    assert (full.mask[:, ::-1].cumprod(1).sum(1) == L).all()
    assert (full.item[~full.mask] == 0).all() and (full.ts[~full.mask] == 0).all()
    real = full.ts[full.mask]
    assert (real < 0).all() and (real > -w.spec.lifelong.span_days * DAY).all()
    assert all((np.diff(full.ts[i][full.mask[i]]) >= 0).all() for i in range(len(ids)))
    for m in (1, 17, cap):
        h = _histories(w, ids, max_len=m)[domain]
        _assert_same(h, type(h)(*(getattr(full, f)[:, cap - m:] for f in FIELDS)), f"max_len={m}")
