"""Treatment-vs-control lifts with Welch degrees of freedom.

Absolute lift Δ = v_t - v_c with Var(Δ) = V_t + V_c (independent units) and the
Welch-Satterthwaite df = (V_t + V_c)² / (V_t²/(n_t-1) + V_c²/(n_c-1))
(Welch 1947, Biometrika 34).  Relative lift v_t/v_c - 1:

- ``rel_method="delta"``: Var = V_t/v_c² + v_t²·V_c/v_c⁴ (first-order delta method,
  Deng, Knoblich & Lu 2018), the same df; this is what gbstats reports.
- ``rel_method="log"``: CI = exp(log(v_t/v_c) ± t·√(V_t/v_t² + V_c/v_c²)) - 1, which
  never crosses -100 % and is asymmetric like the ratio itself (tea-tasting's choice);
  its df is Welch-Satterthwaite over the two log-scale terms V_t/v_t² and V_c/v_c².

``p_value`` tests Δ = 0 (Welch t-test), so it always agrees with ``abs_ci``;
``rel_p_value`` is the test that matches ``rel_ci`` for the chosen ``rel_method``.
Where a number cannot be defined it is NaN *and* ``flags`` says why; never silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from simab.reports import messages
from simab.reports.estimates import ArmEstimate, Functional, estimate
from simab.reports.moments import Moments

RelMethod = Literal["delta", "log"]
NAN = float("nan")


@dataclass(frozen=True)
class Comparison:
    """One treatment-vs-control comparison of one metric."""

    control_value: float
    treatment_value: float
    abs_lift: float
    abs_se: float
    abs_ci: tuple[float, float]
    rel_lift: float
    rel_se: float
    rel_ci: tuple[float, float]
    p_value: float
    rel_p_value: float
    df: float
    alpha: float
    rel_method: str
    n_control: int
    n_treatment: int
    flags: tuple[str, ...] = ()


RatioComparison = Comparison
"""The result type of :func:`ratio_comparison` and :func:`mean_comparison`."""


def _satterthwaite(v1: float, n1: int, v2: float, n2: int) -> float:
    """(v1 + v2)² / (v1²/(n1-1) + v2²/(n2-1)) (Satterthwaite 1946); inf when both are exact."""
    if n1 < 2 or n2 < 2 or v1 != v1 or v2 != v2:
        return NAN
    denom = (v1**2 / (n1 - 1) if v1 else 0.0) + (v2**2 / (n2 - 1) if v2 else 0.0)
    return (v1 + v2) ** 2 / denom if denom > 0 else math.inf


def welch_df(control: ArmEstimate, treatment: ArmEstimate) -> float:
    """Welch-Satterthwaite degrees of freedom of Var(Δ) = V_t + V_c (Welch 1947)."""
    return _satterthwaite(treatment.var, treatment.n, control.var, control.n)


def t_interval(
    point: float, se: float, df: float, alpha: float
) -> tuple[tuple[float, float], float]:
    """(CI, two-sided p) of a t statistic with ``df`` degrees of freedom (``inf``: the
    normal); a zero SE gives a point interval and p ∈ {0, 1}."""
    if not (point == point and se == se):
        return (NAN, NAN), NAN
    if se == 0:
        return (point, point), (1.0 if point == 0 else 0.0)
    q = stats.t.ppf(1 - alpha / 2, df)
    p = float(2 * stats.t.sf(abs(point) / se, df))
    return (float(point - q * se), float(point + q * se)), p


def compare(
    control: ArmEstimate,
    treatment: ArmEstimate,
    alpha: float = 0.05,
    rel_method: RelMethod = "delta",
) -> Comparison:
    """Absolute and relative lift of ``treatment`` over ``control`` (formulas: module doc)."""
    if rel_method not in ("delta", "log"):
        raise ValueError(f"rel_method must be 'delta' or 'log', got {rel_method!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    flags = [*control.flags, *treatment.flags]
    vc, vt = control.value, treatment.value
    Vc, Vt = control.var, treatment.var
    df = welch_df(control, treatment) if control.n >= 2 and treatment.n >= 2 else NAN
    abs_lift = vt - vc
    abs_se = math.sqrt(Vc + Vt) if Vc == Vc and Vt == Vt else NAN
    if abs_se == 0 and flags == []:
        flags.append(messages.ZERO_VARIANCE)
    abs_ci, p_value = t_interval(abs_lift, abs_se, df, alpha)

    rel_lift, rel_se, rel_ci, rel_p = NAN, NAN, (NAN, NAN), NAN
    if vc == 0:
        flags.append(messages.ZERO_CONTROL)
    elif vc == vc and vt == vt:
        rel_lift = vt / vc - 1
        if rel_method == "delta":
            rel_se = math.sqrt(Vt / vc**2 + vt**2 * Vc / vc**4) if abs_se == abs_se else NAN
            rel_ci, rel_p = t_interval(rel_lift, rel_se, df, alpha)
        elif vc > 0 and vt > 0:
            log_se = math.sqrt(Vt / vt**2 + Vc / vc**2) if abs_se == abs_se else NAN
            log_df = _satterthwaite(Vt / vt**2, treatment.n, Vc / vc**2, control.n)
            (lo, hi), rel_p = t_interval(math.log(vt / vc), log_se, log_df, alpha)
            rel_ci = (math.expm1(lo), math.expm1(hi))
            rel_se = log_se * (1 + rel_lift)  # delta method back from the log scale
        else:
            flags.append(messages.NONPOSITIVE_FOR_LOG)
    return Comparison(
        control_value=vc,
        treatment_value=vt,
        abs_lift=abs_lift,
        abs_se=abs_se,
        abs_ci=abs_ci,
        rel_lift=rel_lift,
        rel_se=rel_se,
        rel_ci=rel_ci,
        p_value=p_value,
        rel_p_value=rel_p,
        df=df,
        alpha=alpha,
        rel_method=rel_method,
        n_control=control.n,
        n_treatment=treatment.n,
        flags=tuple(dict.fromkeys(flags)),
    )


def _per_unit(name: str, values: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional per-unit values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def ratio_comparison(
    num_control: np.ndarray,
    den_control: np.ndarray,
    num_treatment: np.ndarray,
    den_treatment: np.ndarray,
    alpha: float = 0.05,
    rel_method: RelMethod = "delta",
) -> Comparison:
    """Compare the ratio Σnum/Σden between two arms from per-unit arrays.

    Example: per-user clicks and exposures give the CTR lift, analysed at the
    randomisation unit with the delta method (Deng, Knoblich & Lu 2018) and Welch df.
    The campaign report calls the same code on the same sufficient statistics.
    """
    arms = {}
    for arm, num, den in (
        ("control", num_control, den_control),
        ("treatment", num_treatment, den_treatment),
    ):
        n = _per_unit(f"num_{arm}", num)
        d = _per_unit(f"den_{arm}", den)
        if n.shape != d.shape:
            raise ValueError(f"num_{arm} and den_{arm} differ in length: {n.size} vs {d.size}")
        arms[arm] = estimate(
            arm, Moments.from_columns({"num": n, "den": d}), Functional("num", "den")
        )
    return compare(arms["control"], arms["treatment"], alpha, rel_method)


def mean_comparison(
    x_control: np.ndarray,
    x_treatment: np.ndarray,
    alpha: float = 0.05,
    rel_method: RelMethod = "delta",
) -> Comparison:
    """Compare per-unit means between two arms (Welch t-test; relative lift by delta or log)."""
    arms = {
        arm: estimate(arm, Moments.from_columns({"x": _per_unit(f"x_{arm}", x)}), Functional("x"))
        for arm, x in (("control", x_control), ("treatment", x_treatment))
    }
    return compare(arms["control"], arms["treatment"], alpha, rel_method)


def compare_mean_sums(
    control: tuple[float, float, int],
    treatment: tuple[float, float, int],
    alpha: float = 0.05,
    rel_method: RelMethod = "delta",
) -> Comparison:
    """Compare means given (Σx, Σx², n) per arm, as gbstats' sample statistics are given."""
    arms = {}
    for arm, (total, squares, n) in (("control", control), ("treatment", treatment)):
        m = Moments.from_sums(("x",), int(n), np.array([float(total)]), np.array([[float(squares)]]))
        arms[arm] = estimate(arm, m, Functional("x"))
    return compare(arms["control"], arms["treatment"], alpha, rel_method)
