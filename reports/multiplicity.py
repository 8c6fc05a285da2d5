"""Multiple-testing correction across every metric and treatment arm of a report.

The family is every confirmatory metric × treatment arm (guardrails form a family of their
own).  Stepwise corrections use the p-values only; ``maxt`` is simultaneous and uses the
comparisons' joint law.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

Correction = Literal["holm", "maxt", "bh", "bonferroni", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "maxt", "bh", "bonferroni", "none")
DESCRIPTIONS = {
    "holm": "Holm step-down (family-wise error rate)",
    "maxt": "single-step max-T over the comparisons' joint normal law (family-wise error rate; "
            "Dunnett's test for several treatments against one control)",
    "bh": "Benjamini-Hochberg (false discovery rate)",
    "bonferroni": "Bonferroni (family-wise error rate)",
    "none": "no correction",
}
#: the seed of the quasi-Monte-Carlo integration of the max-T law: the same report gives the same bytes
MAXT_SEED = 20_260_101


def adjust_p_values(
    p_values: Sequence[float], correction: Correction = "holm", correlation: np.ndarray | None = None
) -> list[float]:
    """Adjusted p-values, one family over all given tests.

    ``holm``: Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure",
    family-wise error control.  ``bh``: Benjamini & Hochberg (1995), false discovery rate.
    ``bonferroni``: m·p.  The stepwise formulas are :func:`stepwise_adjust`'s (the values of
    statsmodels' ``multipletests``, which tests/reports compare them with; not called here:
    its Holm branch runs a full garbage collection, a tenth of a second in a process that
    holds torch, at every report).  ``maxt``: :func:`maxt_adjust` with the tests'
    ``correlation`` (identity when not given).  NaN p-values (undefined tests) stay NaN and
    do not count as members of the family.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    defined = ~np.isnan(p)
    if correction == "none" or not defined.any():
        return out.tolist()
    if correction == "maxt":
        corr = np.eye(p.size) if correlation is None else np.asarray(correlation, dtype=float)
        out[defined] = maxt_adjust(p[defined], corr[np.ix_(defined, defined)])
        return out.tolist()
    out[defined] = stepwise_adjust(p[defined], correction)
    return out.tolist()


def stepwise_adjust(p: np.ndarray, correction: str) -> np.ndarray:
    """Adjusted p-values of ``holm``, ``bh`` or ``bonferroni`` for the m p-values ``p`` (no NaN):

    - Bonferroni: min(1, m·p_i).
    - Holm (step-down): with p sorted ascending, p~_(k) = max_{j<=k} min(1, (m - j + 1)·p_(j)).
    - Benjamini-Hochberg (step-up): p~_(k) = min_{j>=k} min(1, m·p_(j) / j).
    """
    p = np.asarray(p, dtype=float)
    m = p.size
    if correction == "bonferroni":
        return np.minimum(1.0, m * p)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if correction == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    elif correction == "bh":
        adjusted = np.minimum.accumulate(np.minimum(1.0, m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"not a stepwise correction: {correction!r}")
    out = np.empty(m)
    out[order] = adjusted
    return out


def maxt_adjust(p_values: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """Single-step max-T adjusted p-values (Westfall & Young 1993; Hothorn, Bretz & Westfall
    2008, "Simultaneous Inference in General Parametric Models"): each test's two-sided p is
    turned into |z_j| = Φ⁻¹(1 - p_j/2), and p_adj_j = P(max_i |Z_i| ≥ |z_j|) for Z ~ N(0, R)
    with R the tests' correlation (from the cross-covariances of the estimates).  With
    R = I this is Šidák's 1 - (1 - p)^m; with several treatments against one control and one
    metric it is Dunnett's test.  The multivariate normal box probabilities are Genz's
    quasi-Monte-Carlo integration (scipy) with a fixed seed, to about 1e-5.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 1:
        return p.copy()
    corr = np.asarray(correlation, dtype=float)
    z = stats.norm.isf(np.clip(p, 1e-300, 1.0) / 2)
    out = np.empty(m)
    for j in range(m):
        if not np.isfinite(z[j]) or z[j] > 40:
            out[j] = min(1.0, m * p[j])  # beyond the integrator's resolution: Bonferroni's bound
            continue
        inside = stats.multivariate_normal.cdf(
            np.full(m, z[j]), mean=np.zeros(m), cov=corr, allow_singular=True, abseps=1e-6, releps=1e-6,
            lower_limit=np.full(m, -z[j]), rng=np.random.default_rng(MAXT_SEED))
        out[j] = min(1.0, max(p[j], 1.0 - float(inside)))
    return out
