"""The off-policy estimators (simab/ope/estimators.py): their formulas on a hand-made log, the
delta-method interval, and unbiasedness / coverage under uniform logging on synthetic
item-position logs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simab.ope.estimators import SlateLog, TargetPolicy, estimate, fit_reward_model, lift, predict

# A hand-made log: 2 users, 5 exposures (positions 0/1), the target's probability of the
# logged item at its position, and a reward model at the logged and the target's items.
USER = np.array([0, 0, 1, 1, 1])
POSITION = np.array([0, 1, 0, 1, 0])
REWARD = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
PROPENSITY = np.array([0.5, 0.25, 0.5, 0.25, 0.5])
PROB = np.array([1.0, 1.0, 0.0, 1.0, 1.0])  # weights w = PROB / PROPENSITY = [2, 4, 0, 4, 2]
Q_LOGGED = np.array([0.4, 0.2, 0.3, 0.1, 0.5])
Q_TARGET = np.array([0.6, 0.2, 0.5, 0.3, 0.4])
LOG = SlateLog(USER, POSITION, REWARD, PROPENSITY, Q_LOGGED)
TARGET = TargetPolicy(PROB, Q_TARGET)


@pytest.mark.parametrize(("estimator", "expected"), [
    # sum w r / N = (2 + 0 + 0 + 4 + 2) / 5
    ("ips", 8 / 5),
    # position 0: sum w r / sum w = 4 / 4 over n_0 = 3 rows; position 1: 4 / 8 over n_1 = 2
    ("snips", (3 * 1.0 + 2 * 0.5) / 5),
    # mean of the reward model at the target's items
    ("dm", 2.0 / 5),
    # sum [q_t + w (r - q_l)] / N = (1.8 - 0.6 + 0.5 + 3.9 + 1.4) / 5
    ("dr", 7.0 / 5),
])
def test_estimator_formulas_on_a_hand_made_log(estimator, expected):
    # the expected values are the formulas of simab/ope/estimators.py's docstring worked by hand
    # (above); approx only for float rounding in sums
    assert estimate(LOG, TARGET, estimator).value == pytest.approx(expected, rel=1e-12)


def test_ips_interval_is_the_clustered_delta_method():
    # per user: A = sum w r = [2, 6], N = [2, 3]; V = 8/5; the linearised residuals
    # (A_u - V N_u) / mean(N) = [-0.48, +0.48] have sample variance 0.4608, so
    # se = sqrt(0.4608 / 2) = 0.48 and the 95% interval is V -/+ 1.959964 * 0.48
    est = estimate(LOG, TARGET, "ips", alpha=0.05)
    assert est.se == pytest.approx(0.48, rel=1e-12)
    z = 1.959963984540054  # the standard normal's 0.975 quantile
    assert est.ci[0] == pytest.approx(1.6 - z * 0.48, rel=1e-9)
    assert est.ci[1] == pytest.approx(1.6 + z * 0.48, rel=1e-9)


def test_ope_intervals_are_the_campaign_reports_delta_method():
    """A target that ranks as the logger did (w = 1) has IPS = the logged reward rate
    sum r / N: the campaign report's ratio estimate (reports' moments and delta method) on
    the same per-user sums gives its value and standard error.  The two paths evaluate the
    same formulas through different gradients, so they agree to rounding (rel 1e-12)."""
    from simab.reports.estimates import Functional
    from simab.reports.estimates import estimate as report_estimate
    from simab.reports.moments import Moments

    g = np.random.default_rng(5)
    user = np.sort(g.integers(0, 60, 400))
    reward = (g.random(400) < 0.3).astype(float)
    log = SlateLog(user, g.integers(0, 4, 400), reward, np.full(400, 0.25), np.zeros(400))
    est = estimate(log, TargetPolicy(np.full(400, 0.25), np.zeros(400)), "ips", alpha=0.1)
    ids = np.unique(user)
    clicks = np.array([reward[user == u].sum() for u in ids])
    rows = np.array([(user == u).sum() for u in ids], float)
    ref = report_estimate("arm", Moments.from_columns({"r": clicks, "n": rows}), Functional("r", "n"))
    assert est.value == pytest.approx(ref.value, rel=1e-12)
    assert est.se == pytest.approx(math.sqrt(ref.var), rel=1e-12)
    assert est.ci[1] - est.value == pytest.approx(1.6448536269514722 * est.se, rel=1e-9)  # the normal's 0.95 quantile


@pytest.mark.parametrize("estimator", ["ips", "snips", "dm", "dr"])
def test_lift_of_a_policy_against_itself_is_zero_with_zero_width(estimator):
    a, r = lift(LOG, TARGET, TARGET, estimator)
    assert a.value == 0.0 and r.value == 0.0
    # paired: the two arms' totals are the same numbers, so the gradient cancels exactly
    # up to rounding
    assert a.se == pytest.approx(0.0, abs=1e-12) and r.se == pytest.approx(0.0, abs=1e-12)


def test_lift_values_are_the_ratio_of_the_arms_estimates():
    other = TargetPolicy(np.array([0.0, 1.0, 1.0, 0.0, 1.0]), Q_TARGET[::-1].copy())
    for e in ("ips", "snips", "dm", "dr"):
        vc, vt = estimate(LOG, TARGET, e).value, estimate(LOG, other, e).value
        a, r = lift(LOG, TARGET, other, e)
        assert a.value == pytest.approx(vt - vc, rel=1e-12, abs=1e-15)  # two code paths: approx
        assert r.value == pytest.approx(vt / vc - 1, rel=1e-12, abs=1e-15)
        assert a.ci[0] < a.value < a.ci[1]


def test_reward_model_matches_statsmodels_logit():
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(5000), rng.normal(size=5000), rng.normal(size=5000)])
    y = (rng.random(5000) < 1 / (1 + np.exp(-(x @ np.array([-1.0, 0.8, -0.5]))))).astype(float)
    beta = fit_reward_model(x, y)
    ref = sm.Logit(y, x).fit(disp=0).params
    # our fit carries a 1e-3 ridge penalty against 5,000 rows' information: the
    # coefficients agree to well within 1e-4 (a different optimiser: approx)
    assert beta == pytest.approx(ref, abs=1e-4)
    assert predict(x[:3], beta) == pytest.approx(1 / (1 + np.exp(-(x[:3] @ ref))), abs=1e-5)


def synthetic_requests(rng, users=300, C=10, K=4):
    """Requests of the item-position model: users with a per-user click propensity (so rows
    of a user are correlated), true P(click of a at k) = exam(k) * attraction(a), and a
    deterministic target that ranks by a noisy score; returns (request's user, attraction
    [R, C], exam [K], target [R, K])."""
    n_req = 1 + rng.poisson(4, size=users)
    req_user = np.repeat(np.arange(users), n_req)
    R = len(req_user)
    user_effect = np.exp(rng.normal(0, 0.5, size=users))[req_user]
    attraction = np.clip(rng.uniform(0.02, 0.25, size=(R, C)) * user_effect[:, None], 0, 1)
    exam = (1.0 + np.arange(K)) ** -0.8
    target = np.argsort(-(attraction + rng.normal(0, 0.05, size=(R, C))), axis=1)[:, :K]
    return req_user, attraction, exam, target


def _synthetic_world(rng, users=300, C=10, K=4):
    """One log of :func:`synthetic_requests` under uniformly random slates; returns the log,
    the target and its true value on these requests."""
    req_user, attraction, exam, target = synthetic_requests(rng, users, C, K)
    R = len(req_user)
    logged = np.argsort(rng.random((R, C)), axis=1)[:, :K]
    p_logged = exam * np.take_along_axis(attraction, logged, axis=1)
    clicks = (rng.random((R, K)) < p_logged).astype(float)
    truth = float((exam * np.take_along_axis(attraction, target, axis=1)).sum() / (R * K))
    n = R * K
    log = SlateLog(np.repeat(req_user, K), np.tile(np.arange(K), R), clicks.reshape(-1), np.full(n, 1.0 / C),
                   np.full(n, 0.1))
    tgt = TargetPolicy((target == logged).astype(float).reshape(-1), np.full(n, 0.1))
    return log, tgt, truth


def test_ips_and_dr_are_unbiased_and_cover_at_the_nominal_rate_under_uniform_logging():
    rng = np.random.default_rng(20)
    runs = 400
    err = {"ips": [], "dr": []}
    covered = {"ips": 0, "dr": 0}
    for _ in range(runs):
        log, tgt, truth = _synthetic_world(rng)
        for e in err:
            est = estimate(log, tgt, e)
            err[e].append((est.value - truth) / est.se)
            covered[e] += est.ci[0] <= truth <= est.ci[1]
    for e in err:
        # coverage of a 95% interval over 400 independent worlds: binomial sd
        # sqrt(0.95 * 0.05 / 400) = 0.011; 3 sd either side
        sd = math.sqrt(0.95 * 0.05 / runs)
        assert abs(covered[e] / runs - 0.95) <= 3 * sd, (e, covered[e] / runs)
        # unbiased: the standardised errors average 0 within 3 standard errors of their mean
        z = np.array(err[e])
        assert abs(z.mean()) <= 3 * z.std(ddof=1) / math.sqrt(runs), (e, z.mean())
