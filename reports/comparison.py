"""Treatment-vs-control lifts with Welch degrees of freedom.

Absolute lift Δ = v_t - v_c with Var(Δ) = V_t + V_c (independent units) and the
Welch-Satterthwaite df = (V_t + V_c)² / (V_t²/(n_t-1) + V_c²/(n_c-1))
(Welch 1947, Biometrika 34); ``abs_p_value`` is that Welch test and agrees with ``abs_ci``.

Relative lift v_t/v_c - 1, two methods (``rel_method``):

- ``"delta-log"`` (default): the delta method on the log of the ratio,
  se_log = √(V_t/v_t² + V_c/v_c²), df = Welch-Satterthwaite over those two terms, and
  CI = exp(log(v_t/v_c) ± t·se_log) - 1 (tea-tasting's relative interval, metrics/mean.py).
  It is asymmetric like the ratio itself and never reaches -100 %.
- ``"delta-linear"``: Var = V_t/v_c² + v_t²·V_c/v_c⁴ (first-order delta method of the ratio,
  Deng, Knoblich & Lu 2018; what gbstats reports) with the absolute Welch df; the interval
  is truncated at -100 % (a ratio of non-negative means cannot fall below it), and says so.

``p_value`` is the two-sided test of the same statistic as ``rel_ci`` (log ratio = 0 or
rel lift = 0), with the same df, so ``p_value < alpha`` exactly when ``rel_ci`` excludes 0:
the report's significance lists, colours, ``simab check`` and the pytest plugin all read it.
Where the relative interval is undefined (zero or negative values) ``p_value`` falls back
to the absolute test and ``flags`` says so.  Where a number cannot be defined it is NaN
*and* ``flags`` says why; never silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from simab.reports import messages, permutation
from simab.reports.estimates import ArmEstimate, Functional, SmallSample, estimate, unit_estimate
from simab.reports.moments import Moments
from simab.reports.permutation import Reference

RelMethod = Literal["delta-log", "delta-linear"]
REL_METHODS: tuple[str, ...] = ("delta-log", "delta-linear")
DEFAULT_REL_METHOD: RelMethod = "delta-log"
#: earlier names, still accepted from Python callers
REL_METHOD_ALIASES = {"log": "delta-log", "delta": "delta-linear"}
NAN = float("nan")


def rel_method_name(rel_method: str) -> RelMethod:
    """The canonical name of ``rel_method`` (``"log"``/``"delta"`` are the earlier names)."""
    name = REL_METHOD_ALIASES.get(rel_method, rel_method)
    if name not in REL_METHODS:
        raise ValueError(f"rel_method must be one of {', '.join(REL_METHODS)}, got {rel_method!r}")
    return name  # type: ignore[return-value]


@dataclass(frozen=True)
class Comparison:
    """One treatment-vs-control comparison of one metric.

    ``p_value`` agrees with ``rel_ci`` (same statistic, same df); ``abs_p_value`` with
    ``abs_ci``."""

    control_value: float
    treatment_value: float
    abs_lift: float
    abs_se: float
    abs_ci: tuple[float, float]
    rel_lift: float
    rel_se: float
    rel_ci: tuple[float, float]
    p_value: float
    abs_p_value: float
    df: float
    alpha: float
    rel_method: str
    n_control: int
    n_treatment: int
    flags: tuple[str, ...] = ()
    rel_df: float = NAN

    @property
    def rel_p_value(self) -> float:
        """The test that matches ``rel_ci`` (the same number as ``p_value``)."""
        return self.p_value

    @property
    def significant(self) -> bool:
        """``p_value < alpha``: the relative interval excludes 0."""
        return self.p_value == self.p_value and self.p_value < self.alpha


RatioComparison = Comparison
"""The result type of :func:`ratio_comparison` and :func:`mean_comparison`."""


def _satterthwaite(v1: float, df1: float, v2: float, df2: float) -> float:
    """(v1 + v2)² / (v1²/df1 + v2²/df2) (Satterthwaite 1946); inf when both are exact."""
    if not (df1 >= 1 and df2 >= 1) or v1 != v1 or v2 != v2:
        return NAN
    denom = (v1**2 / df1 if v1 else 0.0) + (v2**2 / df2 if v2 else 0.0)
    return (v1 + v2) ** 2 / denom if denom > 0 else math.inf


def _arm_df(e: ArmEstimate) -> float:
    """An arm's variance df: its own (small-sample estimate) or n - 1."""
    return e.df if e.df == e.df else e.n - 1.0


def welch_df(control: ArmEstimate, treatment: ArmEstimate) -> float:
    """Welch-Satterthwaite degrees of freedom of Var(Δ) = V_t + V_c (Welch 1947), each
    arm's variance with its own df (n - 1 unless the estimate says otherwise)."""
    return _satterthwaite(treatment.var, _arm_df(treatment), control.var, _arm_df(control))


def t_interval(
    point: float, se: float, df: float, alpha: float
) -> tuple[tuple[float, float], float]:
    """(CI, two-sided p) of a t statistic with ``df`` degrees of freedom (``inf``: the
    normal); a zero SE gives a point interval and p ∈ {0, 1}.

    Both come from the same quantile function, so p < alpha exactly when the interval
    excludes 0 (up to the last bit of the quantile)."""
    if not (point == point and se == se):
        return (NAN, NAN), NAN
    if se == 0:
        return (point, point), (1.0 if point == 0 else 0.0)
    q = stats.t.ppf(1 - alpha / 2, df)
    p = float(2 * stats.t.sf(abs(point) / se, df))
    return _holding_zero((float(point - q * se), float(point + q * se)), abs(point) / se <= q), p


def _reference_interval(point: float, se: float, alpha: float, ref: Reference) -> tuple[tuple[float, float], float]:
    """(CI, p) of a studentized statistic against its permutation reference (reports/permutation.py);
    a zero SE gives a point interval and p in {0, 1}, as :func:`t_interval` does."""
    if not (point == point and se == se) or se < 0:
        return (NAN, NAN), NAN
    if se == 0:
        return (point, point), (1.0 if point == 0 else 0.0)
    q = ref.quantile(alpha)
    return _holding_zero((point - q * se, point + q * se), abs(point / se) <= q), ref.p_value(point / se)


def _holding_zero(ci: tuple[float, float], inside: bool) -> tuple[float, float]:
    """The interval {θ: |point - θ|/se <= q} holds 0 exactly when |t| <= q; rounding in
    point ± q·se must not say otherwise (a tie |t| = q happens with permutation references)."""
    lo, hi = ci
    return (min(lo, 0.0), max(hi, 0.0)) if inside else (lo, hi)


def _expm1(x: float) -> float:
    """exp(x) - 1, infinite beyond the float range (an interval with an infinite quantile);
    NaN stays NaN."""
    if x != x:
        return NAN
    return math.expm1(x) if x < 709.0 else math.inf


def relative_lift(
    control: ArmEstimate, treatment: ArmEstimate, alpha: float, rel_method: RelMethod, abs_df: float,
    reference: Reference | None = None,
) -> tuple[float, float, tuple[float, float], float, float, list[str]]:
    """(rel_lift, rel_se, rel_ci, p, df, flags) of v_t/v_c - 1 by ``rel_method`` (module doc);
    with a permutation ``reference`` its quantiles replace Student's t (df NaN)."""
    vc, vt, Vc, Vt = control.value, treatment.value, control.var, treatment.var
    if vc == 0:
        return NAN, NAN, (NAN, NAN), NAN, NAN, [messages.ZERO_CONTROL]
    if not (vc == vc and vt == vt):
        return NAN, NAN, (NAN, NAN), NAN, NAN, []
    rel_lift = vt / vc - 1
    defined = Vc == Vc and Vt == Vt
    if rel_method == "delta-linear":
        rel_se = math.sqrt(Vt / vc**2 + vt**2 * Vc / vc**4) if defined else NAN
        if reference is not None:
            (lo, hi), p = _reference_interval(rel_lift, rel_se, alpha, reference)
            abs_df = NAN
        else:
            (lo, hi), p = t_interval(rel_lift, rel_se, abs_df, alpha)
        flags = []
        if lo < -1:  # a ratio of non-negative means is never below -100 %
            lo = -1.0
            flags.append(messages.LINEAR_CI_TRUNCATED)
        return rel_lift, rel_se, (lo, hi), p, abs_df, flags
    if vc < 0 or vt <= 0:
        return rel_lift, NAN, (NAN, NAN), NAN, NAN, [messages.NONPOSITIVE_FOR_LOG]
    log_se = math.sqrt(Vt / vt**2 + Vc / vc**2) if defined else NAN
    log_df = _satterthwaite(Vt / vt**2, _arm_df(treatment), Vc / vc**2, _arm_df(control))
    if reference is not None:
        (lo, hi), p = _reference_interval(math.log(vt / vc), log_se, alpha, reference)
        log_df = NAN
    else:
        (lo, hi), p = t_interval(math.log(vt / vc), log_se, log_df, alpha)
    rel_se = log_se * (1 + rel_lift)  # delta method back from the log scale
    return rel_lift, rel_se, (_expm1(lo), _expm1(hi)), p, log_df, []


def compare(
    control: ArmEstimate,
    treatment: ArmEstimate,
    alpha: float = 0.05,
    rel_method: str = DEFAULT_REL_METHOD,
    reference: Reference | None = None,
) -> Comparison:
    """Absolute and relative lift of ``treatment`` over ``control`` (formulas: module doc);
    ``reference``: the permutation law of the relative statistic (small experiments)."""
    rel_method = rel_method_name(rel_method)
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
    abs_ci, abs_p = t_interval(abs_lift, abs_se, df, alpha)
    rel_lift, rel_se, rel_ci, rel_p, rel_df, rel_flags = relative_lift(
        control, treatment, alpha, rel_method, df, reference
    )
    flags += rel_flags
    if reference is not None and rel_p == rel_p:
        flags.append(messages.PERMUTATION_REFERENCE.format(b=reference.size))
    p_value = rel_p
    if rel_p != rel_p and abs_p == abs_p:
        p_value = abs_p
        flags.append(messages.P_FROM_ABSOLUTE)
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
        abs_p_value=abs_p,
        df=df,
        alpha=alpha,
        rel_method=rel_method,
        n_control=control.n,
        n_treatment=treatment.n,
        flags=tuple(dict.fromkeys(flags)),
        rel_df=rel_df,
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
    rel_method: str = DEFAULT_REL_METHOD,
    small_sample: SmallSample = "none",
    permute: bool = False,
) -> Comparison:
    """Compare the ratio Σnum/Σden between two arms from per-unit arrays.

    Example: per-user clicks and exposures give the CTR lift, analysed at the
    randomisation unit with the delta method (Deng, Knoblich & Lu 2018) and Welch df: by
    default the textbook formulas (tea-tasting's log-scale interval; ``rel_method=
    "delta-linear"``: gbstats').  The campaign report adds the small-sample corrections:
    ``small_sample="hc2"`` (HC2 variance with Bell-McCaffrey df) and ``permute=True`` (below
    ``permutation.PERMUTATION_MAX_UNITS`` users the relative p and CI use the permutation
    reference); with both it gives the report's numbers on the same users.
    """
    arms, units = {}, {}
    for arm, num, den in (
        ("control", num_control, den_control),
        ("treatment", num_treatment, den_treatment),
    ):
        n = _per_unit(f"num_{arm}", num)
        d = _per_unit(f"den_{arm}", den)
        if n.shape != d.shape:
            raise ValueError(f"num_{arm} and den_{arm} differ in length: {n.size} vs {d.size}")
        arms[arm] = unit_estimate(arm, n, d, small_sample)
        units[arm] = (n, d)
    ref = permutation.reference(*units["control"], *units["treatment"], rel_method_name(rel_method),
                                small_sample) if permute else None
    return compare(arms["control"], arms["treatment"], alpha, rel_method, ref)


def mean_comparison(
    x_control: np.ndarray,
    x_treatment: np.ndarray,
    alpha: float = 0.05,
    rel_method: str = DEFAULT_REL_METHOD,
    small_sample: SmallSample = "none",
    permute: bool = False,
) -> Comparison:
    """Compare per-unit means between two arms (Welch t-test; relative lift on the log scale
    or linear; ``small_sample="hc2"`` and ``permute=True`` as the report, see
    :func:`ratio_comparison`)."""
    xs = {arm: _per_unit(f"x_{arm}", x) for arm, x in (("control", x_control), ("treatment", x_treatment))}
    arms = {arm: unit_estimate(arm, x, None, small_sample) for arm, x in xs.items()}
    ref = permutation.reference(xs["control"], None, xs["treatment"], None, rel_method_name(rel_method),
                                small_sample) if permute else None
    return compare(arms["control"], arms["treatment"], alpha, rel_method, ref)


def compare_mean_sums(
    control: tuple[float, float, int],
    treatment: tuple[float, float, int],
    alpha: float = 0.05,
    rel_method: str = DEFAULT_REL_METHOD,
) -> Comparison:
    """Compare means given (Σx, Σx², n) per arm, as gbstats' sample statistics are given."""
    arms = {}
    for arm, (total, squares, n) in (("control", control), ("treatment", treatment)):
        m = Moments.from_sums(("x",), int(n), np.array([float(total)]), np.array([[float(squares)]]))
        arms[arm] = estimate(arm, m, Functional("x"))
    return compare(arms["control"], arms["treatment"], alpha, rel_method)
