import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from simab.reports import compare_mean_sums, mean_comparison, ratio_comparison


def test_gbstats_relative_reference():
    # gbstats test_frequentist.py, TwoSidedTTest relative: published reference values.
    r = compare_mean_sums((1396.87, 52377.9767, 3407), (2422.7, 134698.29, 3461))
    assert r.rel_lift == pytest.approx(0.70732, abs=5e-6)
    assert r.rel_ci[0] == pytest.approx(-0.03526, abs=5e-6)
    assert r.rel_ci[1] == pytest.approx(1.44989, abs=5e-6)
    assert r.rel_p_value == pytest.approx(0.06191, abs=5e-6)


def test_mean_comparison_matches_scipy_welch():
    rng = np.random.default_rng(1)
    xc, xt = rng.normal(1.0, 2.0, 300), rng.normal(1.4, 3.0, 500)
    r = mean_comparison(xc, xt)
    ref = stats.ttest_ind(xt, xc, equal_var=False)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert r.abs_ci == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_ratio_delta_method_by_hand():
    rng = np.random.default_rng(2)
    den = rng.poisson(5, (2, 400)) + 1
    num = rng.binomial(den, [[0.1], [0.13]])
    r = ratio_comparison(num[0], den[0], num[1], den[1])

    def var_of_ratio(y, x):  # Deng et al. 2018 eq. for Var(ȳ/x̄)
        n, mx, my = len(x), x.mean(), y.mean()
        c = np.cov(y, x)
        return (c[0, 0] / mx**2 - 2 * my * c[0, 1] / mx**3 + my**2 * c[1, 1] / mx**4) / n

    vc, vt = var_of_ratio(num[0], den[0]), var_of_ratio(num[1], den[1])
    rc, rt = num[0].sum() / den[0].sum(), num[1].sum() / den[1].sum()
    assert r.abs_lift == pytest.approx(rt - rc, rel=1e-12)
    assert r.abs_se == pytest.approx(math.sqrt(vc + vt), rel=1e-10)
    assert r.rel_se == pytest.approx(math.sqrt(vt / rc**2 + rt**2 * vc / rc**4), rel=1e-10)


def test_log_interval_is_asymmetric_and_brackets_lift():
    rng = np.random.default_rng(3)
    r = mean_comparison(rng.exponential(1.0, 200), rng.exponential(1.3, 200), rel_method="log")
    lo, hi = r.rel_ci
    assert lo < r.rel_lift < hi
    assert hi - r.rel_lift > r.rel_lift - lo  # exp() stretches the upper side
    assert lo > -1


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="rel_method"):
        mean_comparison([1, 2], [1, 2], rel_method="fieller")
    with pytest.raises(ValueError, match="differ in length"):
        ratio_comparison([1, 2], [1], [1], [1])
    with pytest.raises(ValueError, match="NaN"):
        mean_comparison([1, float("nan")], [1, 2])


@pytest.mark.parametrize(
    ("case", "arrays", "flag"),
    [
        ("no users", ([], [], [1, 2], [3, 4]), "no units"),
        ("one user", ([1], [3], [1, 2], [3, 4]), "fewer than 2"),
        ("zero clicks", ([0, 0], [3, 4], [0, 0], [5, 1]), "relative lift is undefined"),
        ("zero exposures", ([0, 0], [0, 0], [1, 2], [3, 4]), "zero denominator"),
    ],
)
def test_edge_cases_are_flagged(case, arrays, flag):
    r = ratio_comparison(*(np.array(a, dtype=float) for a in arrays))
    assert any(flag in f for f in r.flags), (case, r.flags)


def test_every_exposure_clicked_is_defined():
    den = np.array([3.0, 5.0, 2.0])
    r = ratio_comparison(den, den, den, den)
    assert (r.abs_lift, r.abs_ci, r.p_value, r.rel_lift, r.rel_ci) == (0, (0, 0), 1.0, 0, (0, 0))


unit = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=0, max_size=8)


@settings(max_examples=150, deadline=None)
@given(unit, unit, st.sampled_from(["delta", "log"]))
# undefined results (no control units; a zero control denominator; a zero control value)
# are always among the cases, so the NaN branch below is exercised on every run
@example([], [(1, 2)], "delta")
@example([(0, 0)], [(1, 2), (0, 3)], "log")
@example([(0, 1), (0, 1)], [(0, 1), (0, 1)], "delta")
def test_no_silent_nan(control, treatment, rel_method):
    def split(rows):
        num = np.array([min(a, b) for a, b in rows], dtype=float)
        den = np.array([b for _, b in rows], dtype=float)
        return num, den

    r = ratio_comparison(*split(control), *split(treatment), rel_method=rel_method)
    numbers = [r.abs_lift, *r.abs_ci, r.rel_lift, *r.rel_ci, r.p_value]
    if any(math.isnan(x) for x in numbers):
        assert r.flags, r
    if not math.isnan(r.p_value):
        assert 0 <= r.p_value <= 1


def test_log_interval_by_hand():
    # tea-tasting's log-scale interval: Welch-Satterthwaite df over the two log-scale terms.
    rng = np.random.default_rng(4)
    xc, xt = rng.exponential(2.0, 80), rng.exponential(2.5, 120)
    r = mean_comparison(xc, xt, rel_method="log")
    a = xt.var(ddof=1) / xt.size / xt.mean() ** 2
    b = xc.var(ddof=1) / xc.size / xc.mean() ** 2
    df = (a + b) ** 2 / (a**2 / (xt.size - 1) + b**2 / (xc.size - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(a + b)
    log_ratio = math.log(xt.mean() / xc.mean())
    assert r.rel_ci == pytest.approx(
        (math.expm1(log_ratio - half), math.expm1(log_ratio + half)), rel=1e-12
    )
