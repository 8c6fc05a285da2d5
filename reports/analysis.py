"""From a run folder to a :class:`~simab.reports.report.Report`.

Data flow: event log -> cells (arm, user, day, scenario) -> per-user totals -> Moments per
arm (and per scenario, per day, per cumulative look) -> estimates -> comparisons -> one
multiple-testing family over every confirmatory metric and treatment arm (guardrails form
their own) -> truth beside each lift.  Metric definitions: ``metric_registry``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simab.errors import SimabError
from simab.reports import messages
from simab.reports.aggregation import cumulative_cells, moments_by, user_totals
from simab.reports.comparison import Comparison, compare
from simab.reports.cross_check import cross_check
from simab.reports.estimates import Functional, cuped_fit, estimate
from simab.reports.latency import percentile_estimate
from simab.reports.metric_registry import METRIC_NAMES, REGISTRY, MetricDef
from simab.reports.moments import Moments
from simab.reports.multiplicity import Correction, adjust_p_values
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
from simab.reports.sequential import msprt
from simab.reports.srm import srm_test
from simab.reports.truth import covers, true_rel_lift, true_values

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


def comparison_key(treatment: str, control: str) -> str:
    return f"{treatment}_vs_{control}"


def _arm_moments(totals: pa.Table, arms: list[str], columns: tuple[str, ...]) -> dict[str, Moments]:
    found = moments_by(totals, ["arm"], columns)
    return {a: found.get((a,), Moments.empty(columns)) for a in arms}


def _segment_moments(
    totals: pa.Table, segment: str, arms: list[str]
) -> dict[object, dict[str, Moments]]:
    found = moments_by(totals, ["arm", segment], COUNT_COLUMNS)
    out: dict[object, dict[str, Moments]] = {}
    for _arm, value in found:
        out.setdefault(value, {})
    for value in out:
        out[value] = {a: found.get((a, value), Moments.empty(COUNT_COLUMNS)) for a in arms}
    return dict(sorted(out.items()))


def _arrays(totals: pa.Table, arm: str, metric: Functional) -> tuple[np.ndarray, np.ndarray | None]:
    rows = totals.filter(pc.equal(totals["arm"], arm))
    num = rows[metric.num].to_numpy(zero_copy_only=False)
    den = rows[metric.den].to_numpy(zero_copy_only=False) if metric.den else None
    return num, den


def _segments(
    moments: dict[object, dict[str, Moments]],
    metric: Functional,
    control: str,
    treatments: list[str],
    alpha: float,
) -> dict[str, dict[str, SegmentComparison]]:
    out: dict[str, dict[str, SegmentComparison]] = {}
    for value, by_arm in moments.items():
        est = {a: estimate(a, m, metric) for a, m in by_arm.items()}
        out[str(value)] = {
            comparison_key(t, control): SegmentComparison(
                values={a: e.value for a, e in est.items()},
                comparison=compare(est[control], est[t], alpha),
            )
            for t in treatments
        }
    return out


def look_moments(
    run: RunData, arms: list[str], days: list[int]
) -> list[tuple[int, dict[str, Moments]]]:
    """Per-arm moments of the count columns over the users active through each day (the
    cumulative daily looks of the sequential test)."""
    return [
        (day, _arm_moments(user_totals(cumulative_cells(run.cells, day)), arms, COUNT_COLUMNS))
        for day in days
    ]


def _sequential(looks, metric, control, treatments, alpha):
    """Cumulative looks -> mSPRT per treatment arm."""
    by_look: dict[str, list[Comparison]] = {t: [] for t in treatments}
    for _day, by_arm in looks:
        est = {a: estimate(a, m, metric) for a, m in by_arm.items()}
        for t in treatments:
            by_look[t].append(compare(est[control], est[t], alpha))
    days = [day for day, _ in looks]
    return {
        t: msprt(days, [c.rel_lift for c in cs], [c.rel_se for c in cs], alpha)
        for t, cs in by_look.items()
    }


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
            comparison=compare(est[control], est[t], alpha, rel_method="log"),
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
    truth: dict | None = None,
    no_truth: str = messages.NO_TRUTH,
    per_scenario: dict | None = None,
    per_day: dict | None = None,
) -> MetricReport:
    """One per-unit metric, every treatment against ``control``: the campaign's analysis
    and ``simab analyze`` (real experiments) both build their metrics here.

    ``by_arm``: per-arm moments of the columns ``mdef`` names (``num``, ``den`` and the
    CUPED covariate ``pre_num``/``pre_den``); ``looks``: (look, per-arm moments) of the
    cumulative data at each look, for the sequential test; ``no_covariates``: why CUPED
    cannot run although ``mdef`` has a covariate (None: it can); ``totals``: one row per
    unit with an ``arm`` column, for the OLS cross-check (None: no cross-check); ``truth``:
    (arm, metric) -> true value, and ``no_truth`` the note shown when there is none.
    """
    name = mdef.name
    truth = truth or {}
    metric = Functional(mdef.num, mdef.den)
    est = {a: estimate(a, m, metric) for a, m in by_arm.items()}
    fit = None
    if mdef.pre_num is None:
        no_cuped = messages.CUPED_NO_COVARIATE
    elif no_covariates is not None:
        no_cuped = no_covariates
    else:
        fit = cuped_fit(by_arm, metric, Functional(mdef.pre_num, mdef.pre_den))
    sequential = _sequential(looks, metric, control, treatments, alpha)
    comparisons = {}
    for t in treatments:
        plain = compare(est[control], est[t], alpha)
        cuped_result = None
        reason = no_cuped if fit is None else _cuped_reason(fit, control, t)
        if reason is None:
            adjusted = compare(fit.estimates[control], fit.estimates[t], alpha)
            reduction = (
                1 - adjusted.abs_se**2 / plain.abs_se**2
                if plain.abs_se and plain.abs_se == plain.abs_se
                else math.nan
            )
            cuped_result = CupedResult(adjusted, fit.theta, reduction)
        ols = None
        if totals is not None:
            nc, dc = _arrays(totals, control, metric)
            nt, dt = _arrays(totals, t, metric)
            ols = cross_check(nc, dc, nt, dt, plain.abs_se)
        true_c, true_t = truth.get((control, name)), truth.get((t, name))
        true_lift = true_rel_lift(true_c, true_t)
        comparisons[comparison_key(t, control)] = ComparisonReport(
            control=control,
            treatment=t,
            comparison=plain,
            true_rel_lift=true_lift,
            ci_covers_truth=covers(plain.rel_ci, true_lift),
            sequential=sequential[t],
            cuped=cuped_result,
            cuped_reason=reason,
            cross_check=ols,
            mde=mde(
                math.sqrt(est[control].unit_var)
                if est[control].unit_var == est[control].unit_var
                else math.nan,
                est[control].n,
                est[t].n,
                baseline=est[control].value if est[control].value == est[control].value else None,
                alpha=alpha,
            ),
            notes=(*_role_notes(mdef), *(() if truth else (no_truth,))),
        )
    return MetricReport(
        name=name,
        arms={a: ArmValue(e.value, truth.get((a, name)), e.n, e.flags) for a, e in est.items()},
        comparisons=comparisons,
        per_scenario=_segments(per_scenario or {}, metric, control, treatments, alpha),
        per_day=_segments(per_day or {}, metric, control, treatments, alpha),
        role=mdef.role,
        higher_is_better=mdef.higher_is_better,
    )


def _unit_metric(
    name: str,
    run: RunData,
    totals: pa.Table,
    arms: list[str],
    control: str,
    treatments: list[str],
    alpha: float,
    truth: dict,
    looks: list[tuple[int, dict[str, Moments]]],
    per_scenario: dict,
    per_day: dict,
) -> MetricReport:
    columns = tuple(c for c in (*COUNT_COLUMNS, *COVARIATE_COLUMNS) if c in totals.column_names)
    return metric_report(
        REGISTRY[name],
        _arm_moments(totals, arms, columns),
        control,
        treatments,
        alpha,
        looks=looks,
        no_covariates=messages.NO_COVARIATES if run.covariates is None else None,
        totals=totals,
        truth=truth,
        per_scenario=per_scenario,
        per_day=per_day,
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


def adjust_families(metrics: dict[str, MetricReport], correction: Correction) -> dict[str, MetricReport]:
    """``metrics`` with every comparison's ``p_value_adjusted``: confirmatory metrics form the
    multiple-testing family; guardrails (measured latency) are adjusted among themselves so
    that they never move a confirmatory adjusted p."""
    metrics = dict(metrics)
    for role in ("confirmatory", "guardrail"):
        family = [(m, k) for m, mr in metrics.items() if mr.role == role for k in mr.comparisons]
        adjusted = adjust_p_values(
            [metrics[m].comparisons[k].comparison.p_value for m, k in family], correction
        )
        for (m, k), p in zip(family, adjusted, strict=True):
            metrics[m] = metrics[m].with_adjusted(k, p)
    return metrics


def analyze(
    run_dir: str | Path, *, alpha: float | None = None, correction: Correction = "holm"
) -> Report:
    """Analyse a run folder: every metric, every treatment arm against the control."""
    run = read_run(run_dir)
    info = run.info
    source = str(Path(run_dir) / "run.json")
    alpha = float(info["alpha"] if alpha is None else alpha)
    if not 0 < alpha < 1:
        raise SimabError(f"alpha must be in (0, 1), got {alpha}", source=source, key="alpha")
    if correction not in ("holm", "bh", "bonferroni", "none"):
        raise SimabError(
            f"unknown correction {correction!r}; allowed: holm, bh, bonferroni, none",
            source="<cli>",
        )
    arms = list(info["arms"])
    control = info["control"]
    treatments = [a for a in arms if a != control]
    truth = true_values(run.truth)
    days = sorted(int(d) for d in pc.unique(run.cells["day"]).to_pylist())

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
    srm = srm_test(
        {a: t.users for a, t in traffic.items()},
        {a: info["arms"][a].get("share", 0.0) for a in arms},
    )
    per_scenario = _segment_moments(user_totals(run.cells, by=["scenario"]), "scenario", arms)
    per_day = _segment_moments(user_totals(run.cells, by=["day"]), "day", arms)

    looks = look_moments(run, arms, days)
    metrics = {}
    for name in _metric_names(info, source):
        if REGISTRY[name].unit == "request":
            metrics[name] = _percentile_metric(
                REGISTRY[name], run, arms, control, treatments, alpha
            )
        else:
            metrics[name] = _unit_metric(
                name,
                run,
                totals,
                arms,
                control,
                treatments,
                alpha,
                truth,
                looks,
                per_scenario,
                per_day,
            )
    interference, srm = _interference(run, alpha, control, treatments, truth, metrics, srm)
    metrics = adjust_families(metrics, correction)

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
        interference=interference,
    )


def _interference(run: RunData, alpha, control, treatments, truth, metrics: dict, srm):
    """Under interference (run.json's ``interference``): the design's analysis beside the global
    truth; where the design's units are not users its comparisons replace the per-user ones
    (and its units' SRM the users')."""
    if not run.info.get("interference"):
        return None, srm
    from simab.reports.design_run import CLUSTER_DESIGNS, analyze_design, design_metric_reports

    design = analyze_design(run, alpha)
    if design.kind in CLUSTER_DESIGNS:
        metrics.clear()
        metrics.update(design_metric_reports(design, control, treatments[0], truth))
        if design.srm is not None:
            srm = design.srm
    return design, srm


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
