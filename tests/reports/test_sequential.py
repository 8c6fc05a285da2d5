import math

import numpy as np
import pytest
from scipy import stats

from simab.reports.sequential import (
    group_sequential,
    msprt,
    obf_boundaries,
    obf_spent,
    optimal_mixing_ratio,
)

# the mixing variance fixed before the data: tuned to the planned horizon of _looks (10 looks of
# 200 draws of sd 1: V = 1/2000), as a user would from the planned sample size
TAU2 = optimal_mixing_ratio(0.05) / 2000


def _looks(rng, effect, n_looks=10, per_look=200, sd=1.0):
    """Cumulative mean of N(effect, sd²) at each look, with its standard error."""
    x = rng.normal(effect, sd, n_looks * per_look)
    n = per_look * np.arange(1, n_looks + 1)
    means = np.cumsum(x)[n - 1] / n
    return list(range(n_looks)), means.tolist(), (sd / np.sqrt(n)).tolist()


def test_always_valid_under_continuous_peeking():
    # Type-I error over all looks stays below alpha (Johari et al. 2017, Thm 1); a naive
    # fixed-horizon test peeked at 10 times exceeds it.  400 A/A runs: 3-sigma margin.
    rng = np.random.default_rng(5)
    rejected, naive = 0, 0
    for _ in range(400):
        days, est, se = _looks(rng, 0.0)
        r = msprt(days, est, se, alpha=0.05, tau2=TAU2)
        rejected += r.p_value < 0.05
        naive += any(abs(e / s) > 1.96 for e, s in zip(est, se, strict=True))
    assert rejected / 400 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)
    assert naive / 400 > 0.1


def test_p_monotone_and_sequence_nested_and_detects_effect():
    days, est, se = _looks(np.random.default_rng(6), 0.2)
    r = msprt(days, est, se, tau2=TAU2)
    ps = [look.p_value for look in r.looks]
    assert ps == sorted(ps, reverse=True)
    for a, b in zip(r.looks, r.looks[1:], strict=False):
        assert a.ci[0] <= b.ci[0] and b.ci[1] <= a.ci[1]
    assert r.p_value < 0.05 and r.ci[0] > 0
    fixed_half = 1.96 * se[-1]
    assert r.ci[1] - r.ci[0] > 2 * fixed_half  # the price of peeking


def test_mixing_ratio_minimises_width_and_unusable_looks():
    r = optimal_mixing_ratio(0.05)
    assert 1 < r < 100
    assert msprt([0], [float("nan")], [0.1], tau2=0.01) is None
    assert msprt([0, 1], [0.1, 0.1], [0.0, 0.05], tau2=0.01).looks[0].day == 1


def test_matches_closed_form_at_one_look():
    r = msprt([0], [0.3], [0.1], alpha=0.05, tau2=0.02)
    v, t2 = 0.01, r.tau2
    lam = math.sqrt(v / (v + t2)) * math.exp(t2 * 0.09 / (2 * v * (v + t2)))
    assert r.p_value == pytest.approx(min(1, 1 / lam))


def test_p_at_a_look_uses_only_looks_up_to_it():
    # tau is fixed before the data, so truncating the looks never changes an earlier p
    days, est, se = _looks(np.random.default_rng(8), 0.05)
    full = msprt(days, est, se, tau2=TAU2)
    for k in range(1, len(days) + 1):
        part = msprt(days[:k], est[:k], se[:k], tau2=TAU2)
        assert part.p_value == full.looks[k - 1].p_value
        assert part.ci == full.looks[k - 1].ci


def test_obf_boundaries_spend_alpha_as_planned():
    # the Lan-DeMets spending function: one look is the fixed-sample test; the boundaries fall;
    # a Monte-Carlo Brownian motion crosses them at each look with the planned increment
    assert obf_boundaries([1.0]) == pytest.approx([1.959964], abs=1e-6)
    t = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    c = np.array(obf_boundaries(t))
    assert np.all(np.diff(c) < 0)
    rng = np.random.default_rng(9)
    z = np.cumsum(rng.normal(0, 1, (400_000, 5)) * np.sqrt(np.diff(np.r_[0, t])), axis=1) / np.sqrt(t)
    crossed = np.abs(z) >= c
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    planned = np.diff(np.r_[0, [obf_spent(x, 0.05) for x in t]])
    for k in range(5):  # binomial sd of a rate p over 400k paths: sqrt(p/400k); 5 sd
        assert (first == k).mean() == pytest.approx(planned[k], abs=5 * math.sqrt(planned[k] / 400_000) + 1e-6)
    assert (first >= 0).mean() == pytest.approx(0.05, abs=5 * math.sqrt(0.05 / 400_000))


def test_group_sequential_controls_peeking_and_finds_an_effect():
    rng = np.random.default_rng(10)
    reject = 0
    for _ in range(2000):
        days, est, se = _looks(rng, 0.0, n_looks=5)
        p = [2 * stats.norm.sf(abs(e / s)) for e, s in zip(est, se, strict=True)]
        reject += group_sequential(days, p, est, planned_looks=5).rejected
    assert reject / 2000 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    days, est, se = _looks(rng, 0.2, n_looks=5)
    p = [2 * stats.norm.sf(abs(e / s)) for e, s in zip(est, se, strict=True)]
    assert group_sequential(days, p, est, planned_looks=5).rejected
