import numpy as np
import pytest
import statsmodels.api as sm

from simab.reports import ratio_comparison
from simab.reports.cross_check import cluster_ols, cross_check


def _users(rng, n, ctr):
    den = rng.poisson(6, n) + 1
    p = 1 / (1 + np.exp(-(np.log(ctr / (1 - ctr)) + rng.normal(0, 0.6, n))))
    return rng.binomial(den, p).astype(float), den.astype(float)


def test_unit_level_wls_equals_exposure_level_clustered_ols():
    rng = np.random.default_rng(8)
    (nc, dc), (nt, dt) = _users(rng, 150, 0.1), _users(rng, 170, 0.12)
    rows = []
    for treated, num, den, offset in ((0, nc, dc, 0), (1, nt, dt, 1000)):
        for u, (k, m) in enumerate(zip(num.astype(int), den.astype(int), strict=True)):
            rows += [(treated, 1.0 if j < k else 0.0, u + offset) for j in range(m)]
    treat, y, g = map(np.array, zip(*rows, strict=True))
    fit = sm.OLS(y, sm.add_constant(treat.astype(float))).fit(
        cov_type="cluster", cov_kwds={"groups": g, "use_correction": False}
    )
    lift, se = cluster_ols(nc, dc, nt, dt)
    assert lift == pytest.approx(fit.params[1], rel=1e-10)
    assert se == pytest.approx(fit.bse[1], rel=1e-8)


def test_delta_method_agrees_with_cluster_ols_to_1e_3():
    rng = np.random.default_rng(9)
    (nc, dc), (nt, dt) = _users(rng, 3000, 0.05), _users(rng, 3000, 0.055)
    delta = ratio_comparison(nc, dc, nt, dt, small_sample="none")
    check = cross_check(nc, dc, nt, dt, delta.abs_se)
    assert check.abs_lift == pytest.approx(delta.abs_lift, rel=1e-10)
    assert abs(check.rel_se_difference) < 1e-3
    # exact after the documented n/(n-1) factor: both arms have n = 3000 units
    assert check.se * np.sqrt(3000 / 2999) == pytest.approx(delta.abs_se, rel=1e-9)


def test_mean_metric_cross_check():
    rng = np.random.default_rng(10)
    xc, xt = rng.exponential(10, 2000), rng.exponential(11, 2500)
    lift, se = cluster_ols(xc, None, xt, None)
    assert lift == pytest.approx(xt.mean() - xc.mean(), rel=1e-10)
    assert se == pytest.approx(np.sqrt(xc.var() / 2000 + xt.var() / 2500), rel=1e-8)
