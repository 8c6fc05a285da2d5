"""Power analysis: the smallest lift a campaign can detect, and the users it needs.

Two-sample t-test power (Cohen 1988, "Statistical Power Analysis for the Behavioral
Sciences", ch. 2) via statsmodels ``TTestIndPower``: with per-unit standard deviation σ
(for ratio metrics: of the delta-method linearisation), the minimum detectable absolute
effect is d·σ where d solves power(d, n_c, n_t/n_c, α) = 1 - β (Brent's method on the
power function, on a bracket grown until it holds the root).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats
from scipy.optimize import brentq
from statsmodels.stats.power import TTestIndPower

from simab.errors import SimabError


@dataclass(frozen=True)
class Mde:
    """Minimum detectable effect at the given power and two-sided α."""

    abs_mde: float
    rel_mde: float | None
    n_control: int
    n_treatment: int
    alpha: float
    power: float


@dataclass(frozen=True)
class SampleSize:
    """Units needed per arm to detect ``rel_mde`` with the given power."""

    n_control: int
    n_treatment: int
    rel_mde: float
    alpha: float
    power: float


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise SimabError(f"alpha must be in (0, 1), got {alpha}", key="alpha")
    if not alpha / 2 < power < 1:
        raise SimabError(f"power must be in (alpha / 2, 1), got {power}", key="power")


def mde(
    unit_sd: float,
    n_control: int,
    n_treatment: int | None = None,
    *,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Mde:
    """Minimum detectable effect d·σ (absolute) and d·σ/baseline (relative) — module doc."""
    _check(alpha, power)
    n_treatment = n_control if n_treatment is None else n_treatment
    if n_control < 2 or n_treatment < 2 or not unit_sd > 0:
        rel = None
        return Mde(math.nan, rel, n_control, n_treatment, alpha, power)
    d = _effect_for(n_control, n_treatment / n_control, alpha, power)
    abs_mde = d * unit_sd
    rel = abs_mde / abs(baseline) if baseline else None
    return Mde(abs_mde, rel, n_control, n_treatment, alpha, power)


#: the largest arm :func:`sample_size` answers with (beyond it no campaign is possible)
MAX_UNITS = 10**15


def _power(d: float, n1: float, ratio: float, alpha: float) -> float:
    """Two-sided power of the two-sample t-test; where the noncentral t has no finite value
    (large noncentrality and df: scipy returns NaN) its normal limit, which it equals there."""
    value = float(TTestIndPower().power(effect_size=d, nobs1=n1, ratio=ratio, alpha=alpha))
    if math.isfinite(value):
        return value
    df = n1 * (1 + ratio) - 2
    crit = float(stats.t.isf(alpha / 2, df))
    nc = d * math.sqrt(n1 * ratio / (1 + ratio))
    return float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))


def _effect_for(n1: int, ratio: float, alpha: float, power: float) -> float:
    """The standardised effect d with ``power`` at n1 and n1 * ratio units: the root of
    power(d) = target in d, by Brent's method on a bracket grown until it holds the root
    (statsmodels' ``solve_power`` keeps a fixed bracket and, for a small alpha or a large
    n, returns a wrong root or NaN without saying so)."""
    lo, hi = 0.0, 1.0
    while _power(hi, n1, ratio, alpha) < power:
        lo, hi = hi, hi * 4
        if hi > 1e6:
            raise SimabError("no effect size reaches this power with so few units", key="power")
    return float(brentq(lambda d: _power(d, n1, ratio, alpha) - power, lo, hi, xtol=1e-15, rtol=1e-12))


def _units_for(d: float, ratio: float, alpha: float, power: float) -> float:
    """The control units n1 at which effect d has ``power`` (n1 * ratio treatment units)."""
    lo = 2.0 / min(ratio, 1.0)  # at least 2 units in each arm
    if _power(d, lo, ratio, alpha) >= power:
        return lo
    hi = lo * 4
    while _power(d, hi, ratio, alpha) < power:
        lo, hi = hi, hi * 4
        if hi > MAX_UNITS:
            raise SimabError(f"this lift needs more than {MAX_UNITS:.0e} units per arm: it is too small to "
                             "detect", key="power")
    return float(brentq(lambda n: _power(d, n, ratio, alpha) - power, lo, hi, rtol=1e-12))


def sample_size(
    rel_mde: float,
    baseline: float,
    unit_sd: float,
    *,
    ratio: float = 1.0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> SampleSize:
    """Units per arm so that a relative lift ``rel_mde`` over ``baseline`` has the given power."""
    _check(alpha, power)
    if not rel_mde or not baseline or not unit_sd > 0 or not ratio > 0:
        raise SimabError(
            "need a non-zero relative MDE and baseline, a positive sd and ratio", key="power"
        )
    d = abs(rel_mde * baseline) / unit_sd
    n1 = _units_for(d, ratio, alpha, power)
    return SampleSize(math.ceil(n1), math.ceil(n1 * ratio), rel_mde, alpha, power)
