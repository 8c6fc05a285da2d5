"""The reference law of the studentized relative-lift statistic by re-randomisation, for
small experiments.

With a few hundred users a heavy-tailed metric (one user holding a tenth of an arm's
exposures, a dozen conversions per arm) makes the studentized statistic T = (log v_t - log
v_c)/se far from Student's t even with a small-sample variance: A/A tests then reject too
often for some metrics and too rarely for others.  The statistic's law under the sharp null
(the treatment changes no user's outcome) is known exactly: T recomputed over
re-randomisations of the same users into arms of the same sizes (Fisher 1935; Chung &
Romano 2013, "Exact and asymptotically robust permutation tests", Ann. Statist., show the
*studentized* statistic keeps the test asymptotically valid for a non-sharp null too).
So below ``PERMUTATION_MAX_UNITS`` users the report's relative p and interval use the
quantiles of |T*| over ``PERMUTATIONS`` re-randomisations (fixed seed, so the same data
give the same bytes):

    p = (1 + #{|T*| ≥ |T|}) / (B + 1),   CI = exp(log(v_t/v_c) ± q·se) - 1

with q the m-th largest |T*|, m = ⌈α(B + 1)⌉ - 1, which makes p < α exactly when the CI
excludes 0 (Monte-Carlo permutation tests are exact for any B: Dwass 1957).  Above the
threshold Student's t with Bell-McCaffrey df is used (the two agree there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PERMUTATIONS = 999
PERMUTATION_MAX_UNITS = 5_000
SEED = 27  # the re-randomisations are a fixed design, not a draw per report


@dataclass(frozen=True)
class Reference:
    """Sorted (descending) |T*| of the re-randomisations whose statistic is defined."""

    abs_t: np.ndarray

    @property
    def size(self) -> int:
        return int(self.abs_t.size)

    def p_value(self, t: float) -> float:
        return (1 + int(np.sum(self.abs_t >= abs(t)))) / (self.size + 1)

    def quantile(self, alpha: float) -> float:
        """q such that |T| > q exactly when p < alpha."""
        m = math.ceil(alpha * (self.size + 1) - 1e-12) - 1
        return float(self.abs_t[m - 1]) if m >= 1 else math.inf


def _arm_stats(y: np.ndarray, x: np.ndarray, member: np.ndarray, small_sample: str):
    """Per re-randomisation (rows of ``member``): value r, Var(r) with HC2 or plain delta."""
    n = member.sum(axis=1)
    sx = member @ x
    sy = member @ y
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sy / sx
        e = y[None, :] - r[:, None] * x[None, :]
        if small_sample == "hc2":
            h = x[None, :] / sx[:, None]
            c = np.where(member, e * e / np.maximum(1.0 - h, 1.0 / n[:, None]), 0.0)
            var = c.sum(axis=1) / sx**2
        else:
            mean_e = np.where(member, e, 0.0).sum(axis=1) / n
            d = np.where(member, e - mean_e[:, None], 0.0)
            var = (d * d).sum(axis=1) * (n / (n - 1)) / sx**2
    return r, var


def statistic(rc, vc, rt, vt, rel_method: str):
    """The studentized relative-lift statistic (log ratio or linear ratio over its se)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if rel_method == "delta-log":
            return np.log(rt / rc) / np.sqrt(vt / rt**2 + vc / rc**2)
        return (rt / rc - 1) / np.sqrt(vt / rc**2 + rt**2 * vc / rc**4)


def reference(y_c, x_c, y_t, x_t, rel_method: str, small_sample: str = "hc2",
              permutations: int = PERMUTATIONS) -> Reference | None:
    """The permutation reference of one comparison (module doc); None above the size
    threshold or with fewer than 2 users in an arm."""
    y = np.concatenate([y_c, y_t]).astype(np.float64)
    x = np.concatenate([np.ones_like(y_c) if x_c is None else x_c,
                        np.ones_like(y_t) if x_t is None else x_t]).astype(np.float64)
    n, nt = y.size, len(y_t)
    if n > PERMUTATION_MAX_UNITS or nt < 2 or n - nt < 2:
        return None
    rng = np.random.default_rng(SEED)
    treated = np.zeros((permutations, n), dtype=bool)
    treated[:, :nt] = True
    treated = rng.permuted(treated, axis=1)
    rt, vt = _arm_stats(y, x, treated, small_sample)
    rc, vc = _arm_stats(y, x, ~treated, small_sample)
    t = statistic(rc, vc, rt, vt, rel_method)
    t = np.abs(t[np.isfinite(t)])
    if t.size < 19:  # too few defined re-randomisations to say anything
        return None
    return Reference(np.sort(t)[::-1])
