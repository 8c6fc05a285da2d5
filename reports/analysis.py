"""From a run folder (or its tables) to a :class:`~simab.reports.report.Report`.

Data flow: event log -> cells (arm, user, day, scenario) -> per-user totals of every assigned
user -> per-arm estimates (delta method on per-user values with the HC2 small-sample
correction and Bell-McCaffrey df, ``estimates.unit_estimate``) -> comparisons (relative
interval on the log scale by default) -> one multiple-testing family over every
confirmatory metric and treatment arm (guardrails form their own) -> truth beside each lift.
Daily looks use only what was known at the end of each day; segments count every assigned
user (intent to treat); a ramped allocation is compared within entry cohorts.
Metric definitions: ``metric_registry``.  :func:`analyze_run` works on tables alone, with or
without a truth table (real data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simab.errors import SimabError
from simab.reports import messages, permutation
from simab.reports.aggregation import look_totals, moments_by, segment_unit_tables, user_totals
from simab.reports.comparison import DEFAULT_REL_METHOD, Comparison, compare, rel_method_name
from simab.reports.cross_check import cross_check
from simab.reports.estimates import ArmEstimate, Functional, cuped_fit, estimate, unit_estimate
from simab.reports.latency import percentile_estimate
from simab.reports.metric_registry import METRIC_NAMES, REGISTRY, MetricDef
from simab.reports.moments import Moments
from simab.reports.multiplicity import CORRECTIONS, DESCRIPTIONS, Correction, adjust_p_values
from simab.reports.power import mde
from simab.reports.report import (
    ArmTraffic,
    ArmValue,
    ComparisonReport,
    CupedResult,
    MetricReport,
    Report,
    SegmentComparison,
)
from simab.reports.run_data import COUNT_COLUMNS, COVARIATE_COLUMNS, RunData, read_run
from simab.reports.sequential import group_sequential, msprt
from simab.reports.srm import cohort_counts, cohorts_of, srm_test, srm_test_cohorts
from simab.reports.truth import covers, realised_values, true_rel_lift, true_values, truth_info

METRICS = METRIC_NAMES
# per-user metrics as delta-method functionals, and their CUPED covariates (from the registry)
UNIT_METRICS: dict[str, Functional] = {
    n: Functional(m.num, m.den) for n, m in REGISTRY.items() if m.unit == "user"
}
PRE_PERIOD: dict[str, Functional] = {
    n: Functional(m.pre_num, m.pre_den)
    for n, m in REGISTRY.items()
    if m.unit == "user" and m.pre_num is not None
}
DEFAULT_SEQUENTIAL_MDE = 0.05


def comparison_key(treatment: str, control: str) -> str:
    return f"{treatment}_vs_{control}"


def _arm_moments(totals: pa.Table, arms: list[str], columns: tuple[str, ...]) -> dict[str, Moments]:
    found = moments_by(totals, ["arm"], columns)
    return {a: found.get((a,), Moments.empty(columns)) for a in arms}


def _arrays(totals: pa.Table, arm: str, metric: Functional, mask: np.ndarray | None = None):
    rows = totals.filter(pc.equal(totals["arm"], arm))
    num = rows[metric.num].to_numpy(zero_copy_only=False).astype(np.float64)
    den = rows[metric.den].to_numpy(zero_copy_only=False).astype(np.float64) if metric.den else None
    if mask is not None:
        keep = mask(rows)
        num = num[keep]
        den = den[keep] if den is not None else None
    return num, den


class Design:
    """Which users each comparison uses: all of them, or with a ramped allocation only the
    entry cohorts in which both arms enrolled (each unit's cohort from its bucket)."""

    def __init__(self, info: dict, assignments: pa.Table, arms: list[str]):
        blocks = (info.get("allocation") or {}).get("blocks") or []
        self.ramped = bool(info.get("ramps")) and bool(blocks) and "bucket" in assignments.column_names \
            and info.get("unit", "user") == "user"
        self.blocks = blocks
        self.cohort: dict[tuple[str, int], float] = {}
        if self.ramped:
            day = cohorts_of(assignments["bucket"].to_numpy(zero_copy_only=False), arms, blocks)
            self.cohort = dict(zip(zip(assignments["arm"].to_pylist(), assignments["user"].to_pylist(),
                                       strict=True), day.tolist(), strict=True))

    def cohorts(self, control: str, treatment: str) -> list[float]:
        """Opening days of the cohorts in which both arms enrolled (one pseudo-cohort 0 when
        the allocation is not ramped)."""
        if not self.ramped:
            return [0.0]
        opens = {}
        for b in self.blocks:
            opens.setdefault(float(b["opens_day"]), set()).add(b["arm"])
        return sorted(d for d, arms in opens.items() if {control, treatment} <= arms)

    def mask(self, day: float):
        if not self.ramped:
            return None

        def keep(rows: pa.Table) -> np.ndarray:
            arms, users = rows["arm"].to_pylist(), rows["user"].to_pylist()
            return np.array([self.cohort.get((a, u)) == day for a, u in zip(arms, users, strict=True)], dtype=bool)

        return keep


def _combine(parts: list[ArmEstimate], weights: list[float], arm: str) -> ArmEstimate:
    """Σ w_k·v_k over disjoint cohorts with Var = Σ w_k²·V_k (direct standardisation)."""
    if len(parts) == 1:
        return parts[0]
    flags = tuple(f for p in parts for f in p.flags)
    value = sum(w * p.value for w, p in zip(weights, parts, strict=True))
    var = sum(w * w * p.var for w, p in zip(weights, parts, strict=True))
    n = sum(p.n for p in parts)
    terms = [(w * w * p.var, p.df if p.df == p.df else p.n - 1.0) for w, p in zip(weights, parts, strict=True)]
    denom = sum(v * v / d for v, d in terms if d >= 1)
    df = var * var / denom if denom > 0 else float("nan")
    return ArmEstimate(arm, value, var * n, n, flags, df)


def _estimates(totals: pa.Table, design: Design, metric: Functional, control: str, treatment: str,
               small_sample: str) -> tuple[ArmEstimate, ArmEstimate]:
    """(control, treatment) estimates of one comparison (cohort-weighted under a ramp)."""
    parts: dict[str, list[ArmEstimate]] = {control: [], treatment: []}
    for day in design.cohorts(control, treatment):
        for arm in (control, treatment):
            num, den = _arrays(totals, arm, metric, design.mask(day))
            parts[arm].append(unit_estimate(arm, num, den, small_sample))
    sizes = [c.n + t.n for c, t in zip(parts[control], parts[treatment], strict=True)]
    total = sum(sizes) or 1
    weights = [s / total for s in sizes]
    return _combine(parts[control], weights, control), _combine(parts[treatment], weights, treatment)


def _influence(totals: pa.Table, arm: str, metric: Functional) -> tuple[np.ndarray, np.ndarray]:
    """(users, each user's influence on log(value)): e_i / Σx_i / value, for the cross-covariances."""
    rows = totals.filter(pc.equal(totals["arm"], arm))
    y = rows[metric.num].to_numpy(zero_copy_only=False).astype(np.float64)
    x = rows[metric.den].to_numpy(zero_copy_only=False).astype(np.float64) if metric.den else np.ones_like(y)
    users = rows["user"].to_numpy(zero_copy_only=False)
    sx, sy = x.sum(), y.sum()
    if sx == 0 or sy == 0:
        return users, np.full(len(y), np.nan)
    r = sy / sx
    return users, (y - r * x) / sx / r


def _look_statistic(c: Comparison) -> tuple[float, float]:
    """(estimate, se) of a look on the scale of its relative interval."""
    if c.rel_method == "delta-log":
        if c.rel_lift == c.rel_lift and c.rel_lift > -1 and c.rel_se == c.rel_se:
            return math.log1p(c.rel_lift), c.rel_se / (1 + c.rel_lift)
        return math.nan, math.nan
    return c.rel_lift, c.rel_se


def sequential_tests(days: list[int], looks: list[Comparison], alpha: float, rel_method: str,
                     mde_rel: float, planned_looks: int):
    """(mSPRT, O'Brien-Fleming) over one comparison's looks, each look's comparison computed
    from the data known at its end; τ fixed before data from ``mde_rel`` (the spec's
    ``sequential_mde``), the number of planned looks from the design."""
    tau = math.log1p(mde_rel) if rel_method == "delta-log" else mde_rel
    stats_ = [_look_statistic(c) for c in looks]
    seq = msprt(days, [s[0] for s in stats_], [s[1] for s in stats_], alpha, tau2=tau * tau)
    gs = group_sequential(days, [c.p_value for c in looks], [s[0] for s in stats_], planned_looks, alpha)
    return _to_relative(seq, rel_method), gs


def _sequential(run: RunData, design: Design, metric: Functional, control: str, treatments: list[str],
                alpha: float, days: list[int], rel_method: str, small_sample: str, mde_rel: float,
                planned_looks: int):
    """Daily looks, each from the data known at its end -> mSPRT and O'Brien-Fleming per arm."""
    looks: dict[str, list[Comparison]] = {t: [] for t in treatments}
    for day in days:
        totals = look_totals(run.cells, run.late_conversions, day)
        for t in treatments:
            c, tr = _estimates(totals, design, metric, control, t, small_sample)
            looks[t].append(compare(c, tr, alpha, rel_method))
    return {t: sequential_tests(days, cs, alpha, rel_method, mde_rel, planned_looks) for t, cs in looks.items()}


def _to_relative(seq, rel_method: str):
    """The mSPRT on the log scale reported as relative lifts (exp(·) - 1)."""
    if seq is None or rel_method != "delta-log":
        return seq
    from dataclasses import replace

    looks = tuple(replace(lk, estimate=math.expm1(lk.estimate), se=lk.se * math.exp(lk.estimate),
                          ci=(math.expm1(lk.ci[0]), math.expm1(lk.ci[1]))) for lk in seq.looks)
    return replace(seq, ci=(math.expm1(seq.ci[0]), math.expm1(seq.ci[1])), looks=looks)


def _role_notes(mdef: MetricDef) -> tuple[str, ...]:
    if mdef.confirmatory:
        return ()
    direction = "higher is better" if mdef.higher_is_better else "higher is worse"
    return (messages.GUARDRAIL.format(direction=direction),)


def _percentile_metric(
    mdef: MetricDef, run: RunData, arms, control, treatments, alpha
) -> MetricReport:
    """A per-request percentile (latency): positive values, so the relative CI is taken on
    the log scale (it cannot reach -100 %); no per-user covariate, no daily looks."""
    est = {}
    for arm in arms:
        rows = run.requests.filter(pc.equal(run.requests["arm"], arm))
        est[arm] = percentile_estimate(
            arm,
            rows[mdef.num].to_numpy(zero_copy_only=False),
            rows["user"].to_numpy(zero_copy_only=False),
            q=mdef.quantile,
            alpha=alpha,
        )
    comparisons = {
        comparison_key(t, control): ComparisonReport(
            control=control,
            treatment=t,
            comparison=compare(est[control], est[t], alpha, rel_method="delta-log"),
            notes=(*_role_notes(mdef), messages.LATENCY_CI, messages.NO_SEQUENTIAL),
            cuped_reason=messages.CUPED_NO_COVARIATE,
        )
        for t in treatments
    }
    return MetricReport(
        name=mdef.name,
        arms={a: ArmValue(e.value, None, e.n, e.flags) for a, e in est.items()},
        comparisons=comparisons,
        role=mdef.role,
        higher_is_better=mdef.higher_is_better,
    )


def _cuped_reason(fit, control: str, treatment: str) -> str | None:
    if fit.reason is not None:
        return fit.reason
    for arm in (control, treatment):
        if arm not in fit.adjusted:
            return messages.CUPED_ARM_TOO_FEW.format(arm=arm)
    return None


def _segments(tables: dict, design: Design, metric: Functional, control: str, treatments: list[str],
              alpha: float, rel_method: str, small_sample: str) -> dict[str, dict[str, SegmentComparison]]:
    out: dict[str, dict[str, SegmentComparison]] = {}
    for value, table in tables.items():
        out[str(value)] = {}
        for t in treatments:
            c, tr = _estimates(table, design, metric, control, t, small_sample)
            out[str(value)][comparison_key(t, control)] = SegmentComparison(
                values={control: c.value, t: tr.value}, comparison=compare(c, tr, alpha, rel_method))
    return out


def _arm_mde(control, n_treatment: int, alpha: float):
    """The relative MDE of a comparison from its control arm's estimate (its per-unit sd and
    value; NaN parts undefined) and the treatment's units."""
    sd = math.sqrt(control.unit_var) if control.unit_var == control.unit_var else math.nan
    baseline = control.value if control.value == control.value else None
    return mde(sd, control.n, n_treatment, baseline=baseline, alpha=alpha)


def _unit_metric(name: str, run: RunData, totals: pa.Table, design: Design, ctx: dict) -> MetricReport:
    mdef = REGISTRY[name]
    metric = UNIT_METRICS[name]
    arms, control, treatments, alpha = ctx["arms"], ctx["control"], ctx["treatments"], ctx["alpha"]
    rel_method, small_sample, truth, realised = ctx["rel_method"], ctx["small_sample"], ctx["truth"], ctx["realised"]
    columns = tuple(c for c in (*COUNT_COLUMNS, *COVARIATE_COLUMNS) if c in totals.column_names)
    by_arm = _arm_moments(totals, arms, columns)
    arm_est = {a: unit_estimate(a, *_arrays(totals, a, metric), small_sample) for a in arms}
    fit = None
    if name not in PRE_PERIOD:
        no_cuped = messages.CUPED_NO_COVARIATE
    elif run.covariates is None:
        no_cuped = messages.NO_COVARIATES
    else:
        fit = cuped_fit(by_arm, metric, PRE_PERIOD[name])
    sequential = _sequential(run, design, metric, control, treatments, alpha, ctx["days"], rel_method,
                             small_sample, ctx["sequential_mde"], ctx["planned_looks"])
    comparisons = {}
    for t in treatments:
        est_c, est_t = _estimates(totals, design, metric, control, t, small_sample)
        nc, dc = _arrays(totals, control, metric)
        nt, dt = _arrays(totals, t, metric)
        ref = None if design.ramped else permutation.reference(nc, dc, nt, dt, rel_method, small_sample)
        plain = compare(est_c, est_t, alpha, rel_method, ref)
        cuped_result = None
        reason = no_cuped if fit is None else _cuped_reason(fit, control, t)
        if reason is None:
            adjusted = compare(fit.estimates[control], fit.estimates[t], alpha, rel_method)
            plain_moments = compare(estimate(control, by_arm[control], metric), estimate(t, by_arm[t], metric), alpha,
                                    rel_method)
            reduction = (
                1 - adjusted.abs_se**2 / plain_moments.abs_se**2
                if plain_moments.abs_se and plain_moments.abs_se == plain_moments.abs_se
                else math.nan
            )
            cuped_result = CupedResult(adjusted, fit.theta, reduction)
        ols = cross_check(nc, dc, nt, dt, compare(estimate(control, by_arm[control], metric),
                                                  estimate(t, by_arm[t], metric), alpha).abs_se)
        true_lift = true_rel_lift(truth.get((control, name)), truth.get((t, name)))
        notes = [*_role_notes(mdef)]
        if not truth:
            notes.append(messages.NO_TRUTH if not realised else messages.REALISED_ONLY)
        if design.ramped:
            days_ = design.cohorts(control, t)
            left = est_c.n + est_t.n
            notes.append(messages.RAMP_COHORTS.format(
                cohorts=", ".join(f"day {d:g}" for d in days_) or "none",
                left_out=ctx["assigned"][control] + ctx["assigned"][t] - left))
        seq, gs = sequential[t]
        comparisons[comparison_key(t, control)] = ComparisonReport(
            control=control,
            treatment=t,
            comparison=plain,
            true_rel_lift=true_lift,
            ci_covers_truth=covers(plain.rel_ci, true_lift),
            sequential=seq,
            group_sequential=gs,
            cuped=cuped_result,
            cuped_reason=reason,
            cross_check=ols,
            mde=_arm_mde(est_c, est_t.n, alpha),
            notes=tuple(notes),
            realised_group_rel_lift=true_rel_lift(realised.get((control, name)), realised.get((t, name))),
        )
    return MetricReport(
        name=name,
        arms={a: ArmValue(e.value, truth.get((a, name)), e.n, e.flags, realised.get((a, name)))
              for a, e in arm_est.items()},
        comparisons=comparisons,
        per_scenario=_segments(ctx["per_scenario"], design, metric, control, treatments, alpha, rel_method,
                               small_sample),
        per_day=_segments(ctx["per_day"], design, metric, control, treatments, alpha, rel_method, small_sample),
        role=mdef.role,
        higher_is_better=mdef.higher_is_better,
    )


def metric_report(
    mdef: MetricDef,
    by_arm: dict[str, Moments],
    control: str,
    treatments: list[str],
    alpha: float,
    *,
    looks: Sequence[tuple[int, dict[str, Moments]]] = (),
    no_covariates: str | None = None,
    totals: pa.Table | None = None,
    no_truth: str = messages.NO_TRUTH,
    rel_method: str = DEFAULT_REL_METHOD,
    small_sample: str = "hc2",
    sequential_mde: float = DEFAULT_SEQUENTIAL_MDE,
) -> MetricReport:
    """One per-unit metric of a real experiment (``simab analyze``), every treatment against
    ``control``, with the campaign report's statistics and no truth.

    ``by_arm``: per-arm moments of the columns ``mdef`` names (``num``, ``den``, and the CUPED
    covariate ``pre_num``/``pre_den``).  ``totals``: one row per unit with an ``arm`` column;
    given, each arm is estimated from its units as a campaign's is (HC2 variance with
    Bell-McCaffrey df, the permutation reference below ``permutation.PERMUTATION_MAX_UNITS``
    units, the OLS cross-check); None (summary statistics: count, mean, variance per arm),
    the delta method on the moments.  ``looks``: (look, per-arm moments of the data known
    at that look), for the sequential tests (τ fixed by ``sequential_mde``; as many planned
    looks as given); ``no_covariates``: why CUPED cannot run although ``mdef`` has a covariate.
    """
    metric = Functional(mdef.num, mdef.den)
    arms = list(by_arm)
    if totals is not None:
        arm_est = {a: unit_estimate(a, *_arrays(totals, a, metric), small_sample) for a in arms}
    else:
        arm_est = {a: estimate(a, m, metric) for a, m in by_arm.items()}
    fit = None
    if mdef.pre_num is None:
        no_cuped = messages.CUPED_NO_COVARIATE
    elif no_covariates is not None:
        no_cuped = no_covariates
    else:
        fit = cuped_fit(by_arm, metric, Functional(mdef.pre_num, mdef.pre_den))
    days = [day for day, _ in looks]
    per_look: dict[str, list[Comparison]] = {t: [] for t in treatments}
    for _, moments in looks:
        est = {a: estimate(a, m, metric) for a, m in moments.items()}
        for t in treatments:
            per_look[t].append(compare(est[control], est[t], alpha, rel_method))
    comparisons = {}
    for t in treatments:
        ref, ols = None, None
        if totals is not None:
            nc, dc = _arrays(totals, control, metric)
            nt, dt = _arrays(totals, t, metric)
            if small_sample != "none":  # "none": the textbook test, Student's t with Welch df
                ref = permutation.reference(nc, dc, nt, dt, rel_method, small_sample)
            ols = cross_check(nc, dc, nt, dt, compare(estimate(control, by_arm[control], metric),
                                                      estimate(t, by_arm[t], metric), alpha).abs_se)
        plain = compare(arm_est[control], arm_est[t], alpha, rel_method, ref)
        cuped_result = None
        reason = no_cuped if fit is None else _cuped_reason(fit, control, t)
        if reason is None:
            adjusted = compare(fit.estimates[control], fit.estimates[t], alpha, rel_method)
            base = compare(estimate(control, by_arm[control], metric), estimate(t, by_arm[t], metric),
                           alpha, rel_method)
            reduction = (1 - adjusted.abs_se**2 / base.abs_se**2
                         if base.abs_se and base.abs_se == base.abs_se else math.nan)
            cuped_result = CupedResult(adjusted, fit.theta, reduction)
        seq, gs = (sequential_tests(days, per_look[t], alpha, rel_method, sequential_mde, len(days))
                   if days else (None, None))
        est_c = arm_est[control]
        comparisons[comparison_key(t, control)] = ComparisonReport(
            control=control,
            treatment=t,
            comparison=plain,
            sequential=seq,
            group_sequential=gs,
            cuped=cuped_result,
            cuped_reason=reason,
            cross_check=ols,
            mde=_arm_mde(est_c, arm_est[t].n, alpha),
            notes=(*_role_notes(mdef), no_truth),
        )
    return MetricReport(
        name=mdef.name,
        arms={a: ArmValue(e.value, None, e.n, e.flags) for a, e in arm_est.items()},
        comparisons=comparisons,
        role=mdef.role,
        higher_is_better=mdef.higher_is_better,
    )


def _metric_names(info: dict, source: str) -> list[str]:
    names = info.get("metrics") or list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise SimabError(
            f"unknown metric {unknown[0]!r}; allowed: {', '.join(METRICS)}",
            source=source,
            key="metrics",
        )
    return list(names)


def _family_correlation(metrics: dict, family: list[tuple[str, str]], totals: pa.Table, control: str) -> np.ndarray:
    """Correlation of the family's test statistics from the per-user cross-covariances of
    the metrics' log-scale influence values (same users, shared control)."""
    infl: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    m = len(family)
    cov = np.eye(m)
    members = []
    for name, key in family:
        r = metrics[name].comparisons[key]
        members.append((name, r.control, r.treatment))
        for arm in (r.control, r.treatment):
            if (name, arm) not in infl and name in UNIT_METRICS:
                infl[(name, arm)] = _influence(totals, arm, UNIT_METRICS[name])

    def arm_cov(a: str, m1: str, m2: str) -> float:
        if (m1, a) not in infl or (m2, a) not in infl:
            return 0.0
        u1, v1 = infl[(m1, a)]
        u2, v2 = infl[(m2, a)]
        if len(u1) != len(u2) or not np.array_equal(u1, u2):
            return 0.0
        return float(np.nansum(v1 * v2))

    var = [arm_cov(c, n, n) + arm_cov(t, n, n) for n, c, t in members]
    for i, (n1, c1, t1) in enumerate(members):
        for j in range(i + 1, m):
            n2, c2, t2 = members[j]
            shared = arm_cov(c1, n1, n2) if c1 == c2 else 0.0
            if t1 == t2:
                shared += arm_cov(t1, n1, n2)
            denom = math.sqrt(var[i] * var[j])
            cov[i, j] = cov[j, i] = shared / denom if denom > 0 else 0.0
    return cov


def adjust_families(
    metrics: dict[str, MetricReport],
    correction: Correction,
    correlation: Callable[[list[tuple[str, str]]], np.ndarray] | None = None,
) -> dict[str, MetricReport]:
    """``metrics`` with every comparison's ``p_value_adjusted``: confirmatory metrics form the
    multiple-testing family; guardrails (measured latency) are adjusted among themselves so
    that they never move a confirmatory adjusted p.  ``correlation(family)``: the tests'
    correlation for ``maxt`` (None: independent tests)."""
    metrics = dict(metrics)
    for role in ("confirmatory", "guardrail"):
        family = [(m, k) for m, mr in metrics.items() if mr.role == role for k in mr.comparisons]
        corr = correlation(family) if correction == "maxt" and correlation is not None else None
        adjusted = adjust_p_values(
            [metrics[m].comparisons[k].comparison.p_value for m, k in family], correction, corr
        )
        for (m, k), p in zip(family, adjusted, strict=True):
            metrics[m] = metrics[m].with_adjusted(k, p)
    return metrics


def family_size(metrics: dict[str, MetricReport]) -> int:
    """Comparisons in the confirmatory family."""
    return sum(len(mr.comparisons) for mr in metrics.values() if mr.role == "confirmatory")


def analyze(
    run_dir: str | Path, *, alpha: float | None = None, correction: Correction | None = None,
    rel_method: str | None = None, small_sample: str = "hc2",
) -> Report:
    """Analyse a run folder: every metric, every treatment arm against the control."""
    return analyze_run(read_run(run_dir), alpha=alpha, correction=correction, rel_method=rel_method,
                       small_sample=small_sample)


def analyze_run(
    run: RunData, *, alpha: float | None = None, correction: Correction | None = None,
    rel_method: str | None = None, small_sample: str = "hc2",
) -> Report:
    """Analyse a run's tables (``RunData``; the truth table may be absent)."""
    info = run.info
    source = str(Path(run.run_dir) / "run.json")
    alpha = float(info["alpha"] if alpha is None else alpha)
    if not 0 < alpha < 1:
        raise SimabError(f"alpha must be in (0, 1), got {alpha}", source=source, key="alpha")
    correction = correction or info.get("correction") or "holm"
    if correction not in CORRECTIONS:
        raise SimabError(f"unknown correction {correction!r}; allowed: {', '.join(CORRECTIONS)}", source="<cli>")
    try:
        rel_method = rel_method_name(rel_method or info.get("rel_method") or DEFAULT_REL_METHOD)
    except ValueError as exc:
        raise SimabError(str(exc), source="<cli>", key="rel_method") from None
    arms = list(info["arms"])
    control = info["control"]
    treatments = [a for a in arms if a != control]
    days = sorted(int(d) for d in pc.unique(run.cells["day"]).to_pylist())
    duration = float(info.get("duration_days") or (max(days) + 1 if days else 1))

    totals = user_totals(run.cells, assignments=run.assignments, covariates=run.covariates)
    traffic_moments = _arm_moments(totals, arms, COUNT_COLUMNS)
    request_counts = dict(
        zip(
            *run.requests.group_by("arm").aggregate([("arm", "count")]).to_pydict().values(),
            strict=True,
        )
    )
    traffic = {
        a: ArmTraffic(
            users=m.n,
            # integer counts: n·mean is within rounding of the integer total
            exposures=round(m.total("exposures")),
            clicks=round(m.total("clicks")),
            conversions=round(m.total("conversions")),
            requests=int(request_counts.get(a, 0)),
        )
        for a, m in traffic_moments.items()
    }
    design = Design(info, run.assignments, arms)
    if design.ramped:
        day = cohorts_of(run.assignments["bucket"].to_numpy(zero_copy_only=False), arms, design.blocks)
        srm = srm_test_cohorts(cohort_counts(run.assignments["arm"].to_pylist(), day, design.blocks), arms)
    else:
        srm = srm_test(
            {a: t.users for a, t in traffic.items()},
            {a: info["arms"][a].get("share", 0.0) for a in arms},
        )
    ctx = {
        "arms": arms, "control": control, "treatments": treatments, "alpha": alpha,
        "rel_method": rel_method, "small_sample": small_sample,
        "truth": true_values(run.truth), "realised": realised_values(run.truth), "days": days,
        "sequential_mde": float(info.get("sequential_mde") or DEFAULT_SEQUENTIAL_MDE),
        "planned_looks": max(1, math.ceil(duration - 1e-9)),
        "assigned": {a: t.users for a, t in traffic.items()},
        "per_scenario": segment_unit_tables(run.cells, "scenario", run.assignments),
        "per_day": segment_unit_tables(run.cells, "day", run.assignments),
    }
    metrics = {}
    for name in _metric_names(info, source):
        if REGISTRY[name].unit == "request":
            metrics[name] = _percentile_metric(REGISTRY[name], run, arms, control, treatments, alpha)
        else:
            metrics[name] = _unit_metric(name, run, totals, design, ctx)
    interference, srm, replaced = _interference(run, alpha, control, treatments, ctx["truth"], metrics, srm,
                                                rel_method)
    # max-T's correlation is that of the per-user comparisons (none where the design's replaced them)
    correlation = None if replaced else (lambda family: _family_correlation(metrics, family, totals, control))
    metrics = adjust_families(metrics, correction, correlation)

    runtime = info.get("runtime") or {}
    return Report(
        campaign=str(info["campaign"]),
        seed=int(info["seed"]),
        alpha=alpha,
        control=control,
        correction=correction,
        arms=traffic,
        srm=srm,
        metrics=metrics,
        days=tuple(days),
        runtime={
            "wall_s": float(runtime.get("wall_s", 0.0)),
            "exposures_per_s": float(runtime.get("exposures_per_s", 0.0)),
        },
        run_info=info,
        truth=truth_info(run.truth),
        family={
            "correction": correction,
            "method": DESCRIPTIONS[correction],
            "members": "confirmatory metrics x treatment arms",
            "comparisons": family_size(metrics),
        },
        rel_method=rel_method,
        interference=interference,
    )


def _interference(run: RunData, alpha, control, treatments, truth, metrics: dict, srm, rel_method=DEFAULT_REL_METHOD):
    """Under interference (run.json's ``interference``): the design's analysis beside the global
    truth; where the design's units are not users its comparisons replace the per-user ones
    (and its units' SRM the users').  Returns (the design's analysis or None, the SRM, whether
    the per-user comparisons were replaced)."""
    if not run.info.get("interference"):
        return None, srm, False
    from simab.reports.design_run import CLUSTER_DESIGNS, analyze_design, design_metric_reports

    design = analyze_design(run, alpha, rel_method)
    replaced = design.kind in CLUSTER_DESIGNS
    if replaced:
        metrics.clear()
        metrics.update(design_metric_reports(design, control, treatments[0], truth))
        if design.srm is not None:
            srm = design.srm
    return design, srm, replaced


def control_baseline(run_dir: str | Path, metric: str) -> tuple[float, float]:
    """(control value, per-user sd of the linearised metric) of a finished run, for power."""
    run = read_run(run_dir)
    if metric not in UNIT_METRICS:
        raise SimabError(
            f"power needs a per-user metric; allowed: {', '.join(UNIT_METRICS)}", key="metric"
        )
    totals = user_totals(run.cells, assignments=run.assignments)
    m = _arm_moments(totals, [run.info["control"]], COUNT_COLUMNS)[run.info["control"]]
    e = estimate(run.info["control"], m, UNIT_METRICS[metric])
    if e.unit_var != e.unit_var:
        raise SimabError(
            "control arm has too few users to estimate a variance", source=str(run_dir)
        )
    return e.value, math.sqrt(e.unit_var)
