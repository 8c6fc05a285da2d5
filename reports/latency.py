"""Latency percentiles per arm with a user-clustered interval.

Requests of one user are correlated, so the i.i.d. order-statistic interval is too
narrow.  We use Woodruff's (1952) outer interval made cluster-aware by the delta method
(Deng, Knoblich & Lu 2018, section 4.2): the CDF value F̂(Q̂_p) = Σ_i #(lat_ij ≤ Q̂_p) / Σ_i n_i
is a ratio of per-user sums, so its standard error σ comes from the delta method; the
interval is [Q̂(p - zσ), Q̂(p + zσ)] and se(Q̂_p) = (upper - lower) / (2z).  The difference
of two arms' percentiles is then compared like every other metric (Welch df, ≈ normal here).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from simab.reports import messages
from simab.reports.estimates import ArmEstimate, Functional, estimate
from simab.reports.moments import Moments


def percentile_estimate(
    arm: str, latency_ms: np.ndarray, user: np.ndarray, q: float = 0.99, alpha: float = 0.05
) -> ArmEstimate:
    """p-th percentile of ``latency_ms`` with a user-clustered variance (see module doc)."""
    latency_ms = np.asarray(latency_ms, dtype=float)
    if latency_ms.size == 0:
        return ArmEstimate(arm, math.nan, math.nan, 0, (messages.NO_UNITS.format(arm=arm),))
    value = float(np.quantile(latency_ms, q, method="inverted_cdf"))
    _, codes = np.unique(np.asarray(user), return_inverse=True)
    below = np.bincount(codes, weights=(latency_ms <= value).astype(float))
    requests = np.bincount(codes).astype(float)
    if below.sum() == requests.sum():
        # the estimate is the sample maximum (fewer than 1/(1-q) requests): the CDF at it is
        # exactly 1 with zero variance, which would give a zero-width interval
        return ArmEstimate(
            arm, value, math.nan, int(requests.size), (messages.PERCENTILE_AT_MAX.format(arm=arm),)
        )
    cdf = estimate(
        arm, Moments.from_columns({"below": below, "n": requests}), Functional("below", "n")
    )
    if cdf.unit_var != cdf.unit_var:
        return ArmEstimate(arm, value, math.nan, cdf.n, cdf.flags)
    z = stats.norm.ppf(1 - alpha / 2)
    sigma = math.sqrt(cdf.var)
    lower = np.quantile(latency_ms, min(max(q - z * sigma, 0.0), 1.0), method="inverted_cdf")
    upper = np.quantile(latency_ms, min(max(q + z * sigma, 0.0), 1.0), method="inverted_cdf")
    se = float(upper - lower) / (2 * z)
    return ArmEstimate(arm, value, se**2 * cdf.n, cdf.n, ())
