"""Per-arm estimates from sufficient statistics, linearised by the delta method.

Each estimate is a smooth function f of column means (x̄_1..x̄_k).  By the delta method
(Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", KDD) its
variance is g'Σg / n, where g = ∇f at the means and Σ the per-unit covariance matrix.
For a ratio ȳ/x̄: g_y = 1/x̄, g_x = -ȳ/x̄².  A mean is the ratio with denominator 1.

CUPED (Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled
Experiments by Utilizing Pre-Experiment Data", WSDM) is applied to the linearised
variables: f_adj = f - θ·(h - h̄), θ = pooled g'Σk / k'Σk, where h is the pre-period
covariate functional with gradient k (ratio or mean, like f) and h̄ its pooled value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from simab.reports import messages
from simab.reports.moments import Moments


@dataclass(frozen=True)
class ArmEstimate:
    """One arm's metric value, with the per-unit variance of its linearisation."""

    arm: str
    value: float
    unit_var: float
    n: int
    flags: tuple[str, ...] = ()

    @property
    def var(self) -> float:
        """Variance of ``value``: unit_var / n."""
        return self.unit_var / self.n if self.n else float("nan")


@dataclass(frozen=True)
class Functional:
    """f = mean(num) / mean(den) over named Moments columns; ``den=None`` is a plain mean."""

    num: str
    den: str | None = None

    def value_and_gradient(self, m: Moments) -> tuple[float, np.ndarray, tuple[str, ...]]:
        means = m.means()
        grad = np.zeros(len(m.columns))
        y = means[m.columns.index(self.num)]
        if self.den is None:
            grad[m.columns.index(self.num)] = 1.0
            return float(y), grad, ()
        x = means[m.columns.index(self.den)]
        if not x:  # zero (NaN passes through as NaN)
            return float("nan"), grad * np.nan, (messages.ZERO_DENOMINATOR,)
        grad[m.columns.index(self.num)] = 1.0 / x
        grad[m.columns.index(self.den)] = -y / x**2
        return float(y / x), grad, ()


def _quadratic(a: np.ndarray, cov: np.ndarray, b: np.ndarray) -> float:
    return float(a @ cov @ b)


#: Relative size below which a variance g'Σg is rounding noise: the sum of k² products
#: |g_i Σ_ij g_j| carries an error of at most ~k²·eps of its absolute scale (Higham 2002,
#: "Accuracy and Stability of Numerical Algorithms", §3.1); 64·eps covers k <= 8 columns.
_VARIANCE_NOISE = 64 * np.finfo(np.float64).eps


def variance_form(g: np.ndarray, cov: np.ndarray) -> float:
    """g'Σg, the delta-method variance, exactly 0 when it is 0 up to rounding.

    A metric whose linearisation is constant across units (every exposure clicked: the
    per-unit ratio num/den is 1 everywhere) has g'Σg = 0 in exact arithmetic, but the
    floating-point sum of its terms cancels to some ±1e-17 that depends on the library's
    summation order.  A value within the rounding bound of the terms' absolute scale is
    set to 0 (and a negative one, impossible in exact arithmetic, is clipped), so a
    degenerate arm gives exact point intervals by construction, not by luck."""
    q = _quadratic(g, cov, g)
    scale = float(np.abs(g) @ np.abs(cov) @ np.abs(g))
    if q != q:
        return q
    return 0.0 if q <= _VARIANCE_NOISE * scale else q


def estimate(arm: str, m: Moments, metric: Functional) -> ArmEstimate:
    """Delta-method estimate of ``metric`` for one arm (Deng et al. 2018, eq. 2-4)."""
    if m.n == 0:
        return ArmEstimate(arm, float("nan"), float("nan"), 0, (messages.NO_UNITS.format(arm=arm),))
    value, grad, flags = metric.value_and_gradient(m)
    flags = tuple(f.format(arm=arm) for f in flags)
    if m.n < 2:
        return ArmEstimate(
            arm, value, float("nan"), m.n, (*flags, messages.ONE_UNIT.format(arm=arm))
        )
    unit_var = variance_form(grad, m.cov_matrix()) if value == value else float("nan")
    return ArmEstimate(arm, value, unit_var, m.n, flags)


@dataclass(frozen=True)
class CupedFit:
    """CUPED-adjusted estimates per arm, the pooled θ, and which arms were adjusted.

    ``reason`` is None when θ could be formed, else why CUPED was not applied (the
    estimates are then the plain ones)."""

    estimates: dict[str, ArmEstimate]
    theta: float
    adjusted: frozenset[str]
    reason: str | None


def cuped_fit(
    moments: Mapping[str, Moments], metric: Functional, covariate: Functional
) -> CupedFit:
    """CUPED-adjusted estimates for every arm and the pooled θ (Deng et al. 2013, eq. 3-4).

    θ pools the within-arm covariances weighted by unit count, so a treatment effect on
    the metric does not leak into θ.  Arms where θ cannot be formed (fewer than 2 units,
    undefined metric or covariate) keep their plain estimate and are not in ``adjusted``.
    """
    parts = {}
    cross = 0.0
    cov_var = 0.0
    pooled = sum((m for m in moments.values()), Moments.empty(next(iter(moments.values())).columns))
    h_pooled, _, _ = covariate.value_and_gradient(pooled) if pooled.n else (float("nan"), None, ())
    for arm, m in moments.items():
        if m.n < 2:
            continue
        f, g, f_flags = metric.value_and_gradient(m)
        h, k, h_flags = covariate.value_and_gradient(m)
        if f != f or h != h:
            continue
        cov = m.cov_matrix()
        parts[arm] = (f, g, h, k, cov)
        cross += m.n * _quadratic(g, cov, k)
        cov_var += m.n * variance_form(k, cov)
    if not cov_var > 0:
        reason = messages.CUPED_NO_VARIANCE if parts else messages.CUPED_TOO_FEW
        plain = {arm: estimate(arm, m, metric) for arm, m in moments.items()}
        return CupedFit(plain, 0.0, frozenset(), reason)
    theta = cross / cov_var
    out = {}
    for arm, m in moments.items():
        if arm not in parts:
            out[arm] = estimate(arm, m, metric)
            continue
        f, g, h, k, cov = parts[arm]
        lin = g - theta * k
        out[arm] = ArmEstimate(
            arm, f - theta * (h - h_pooled), variance_form(lin, cov), m.n
        )
    return CupedFit(out, float(theta), frozenset(parts), None)
