import math

import pytest
from scipy import stats

from simab.cli.power import power_cli
from simab.errors import SimabError
from simab.reports.power import mde, sample_size


def test_sample_size_close_to_normal_formula():
    # n = 2 (z_{1-α/2} + z_{1-β})² σ² / δ²  (Cohen 1988); the t version is a little larger.
    n = sample_size(0.05, baseline=0.1, unit_sd=0.3, alpha=0.05, power=0.8)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    normal = 2 * z**2 * 0.3**2 / 0.005**2
    assert normal <= n.n_control <= normal * 1.001 + 2


def test_mde_inverts_sample_size():
    n = sample_size(0.02, baseline=1.0, unit_sd=1.0)
    m = mde(1.0, n.n_control, n.n_treatment, baseline=1.0)
    assert m.rel_mde == pytest.approx(0.02, rel=1e-3)
    assert math.isnan(mde(1.0, 1).abs_mde)


def test_power_cli(capsys):
    assert power_cli(["--baseline", "0.05", "--sd", "0.2", "--rel-mde", "0.02"]) == 0
    assert "users needed" in capsys.readouterr().out
    assert power_cli(["--baseline", "0.05", "--sd", "0.2", "--users", "100000"]) == 0
    assert "minimum detectable effect" in capsys.readouterr().out
    with pytest.raises(SimabError, match="--baseline"):
        power_cli(["--users", "10"])


def test_mde_with_unequal_arms_where_statsmodels_returns_an_array():
    """154 vs 148 users: ``solve_power`` answers with a one-element array here (its
    fallback root finder); the MDE must still be a float with the asked power."""
    from statsmodels.stats.power import TTestIndPower

    m = mde(0.074, 154, 148, baseline=0.12)
    d = m.abs_mde / 0.074
    achieved = TTestIndPower().power(effect_size=d, nobs1=154, ratio=148 / 154, alpha=0.05)
    assert achieved == pytest.approx(0.8, abs=1e-6)
