import math

import numpy as np
import pytest

from simab.reports.sequential import msprt, optimal_mixing_ratio


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
        r = msprt(days, est, se, alpha=0.05)
        rejected += r.p_value < 0.05
        naive += any(abs(e / s) > 1.96 for e, s in zip(est, se, strict=True))
    assert rejected / 400 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)
    assert naive / 400 > 0.1


def test_p_monotone_and_sequence_nested_and_detects_effect():
    days, est, se = _looks(np.random.default_rng(6), 0.2)
    r = msprt(days, est, se)
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
    assert msprt([0], [float("nan")], [0.1]) is None
    assert msprt([0, 1], [0.1, 0.1], [0.0, 0.05]).looks[0].day == 1


def test_matches_closed_form_at_one_look():
    r = msprt([0], [0.3], [0.1], alpha=0.05)
    v, t2 = 0.01, r.tau2
    lam = math.sqrt(v / (v + t2)) * math.exp(t2 * 0.09 / (2 * v * (v + t2)))
    assert r.p_value == pytest.approx(min(1, 1 / lam))
