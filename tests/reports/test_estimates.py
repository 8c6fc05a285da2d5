import numpy as np
import pytest

from simab.reports.comparison import compare
from simab.reports.estimates import Functional, cuped_fit, estimate
from simab.reports.moments import Moments


def test_cuped_variance_reduction_is_rho_squared():
    # Deng et al. 2013: Var(Y_cuped) = Var(Y)(1 - ρ²) for the optimal θ.
    rng = np.random.default_rng(11)
    rho = 0.7
    moments = {}
    for arm, effect in (("control", 0.0), ("treatment", 0.3)):
        pre = rng.normal(size=20000)
        y = effect + rho * pre + np.sqrt(1 - rho**2) * rng.normal(size=20000)
        moments[arm] = Moments.from_columns({"y": y, "pre": pre})
    fit = cuped_fit(moments, Functional("y"), Functional("pre"))
    adjusted, theta = fit.estimates, fit.theta
    plain = {a: estimate(a, m, Functional("y")) for a, m in moments.items()}
    assert theta == pytest.approx(rho, abs=0.02)
    reduction = 1 - adjusted["control"].var / plain["control"].var
    assert reduction == pytest.approx(rho**2, abs=0.02)
    lift = compare(adjusted["control"], adjusted["treatment"])
    assert lift.abs_ci[0] < 0.3 < lift.abs_ci[1]


def test_cuped_on_ratio_metric_keeps_point_close_and_reduces_variance():
    rng = np.random.default_rng(12)
    moments = {}
    for arm in ("control", "treatment"):
        z = rng.normal(0, 0.8, 5000)
        p = 1 / (1 + np.exp(-(-2.5 + z)))
        exp_, pre_exp = rng.poisson(20, 5000) + 1, rng.poisson(40, 5000) + 1
        moments[arm] = Moments.from_columns(
            {
                "clicks": rng.binomial(exp_, p),
                "exposures": exp_,
                "pre_clicks": rng.binomial(pre_exp, p),
                "pre_exposures": pre_exp,
            }
        )
    adjusted = cuped_fit(
        moments, Functional("clicks", "exposures"), Functional("pre_clicks", "pre_exposures")
    ).estimates
    plain = estimate("control", moments["control"], Functional("clicks", "exposures"))
    assert adjusted["control"].var < 0.8 * plain.var
    assert adjusted["control"].value == pytest.approx(plain.value, abs=3 * plain.var**0.5)
