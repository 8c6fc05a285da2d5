"""report.md: the report as Markdown tables, readable in a terminal, a PR or a wiki."""

from __future__ import annotations

from simab.reports.formatting import fmt_ci, fmt_p, fmt_pct, fmt_value
from simab.reports.metric_registry import REGISTRY
from simab.reports.report import Report
from simab.reports.summary import HEADER, change_word, summary_rows

METHOD_NOTES = (
    "Unit of analysis: the user (the randomisation unit); every assigned user counts, zero where "
    "inactive. Ratio metrics (ctr, ctcvr, cvr) use the delta method on per-user sums (Deng, "
    "Knoblich & Lu 2018) with the HC2 small-sample correction and Bell-McCaffrey degrees of freedom "
    "(Imbens & Kolesar 2016): one heavy user cannot make the interval too narrow.",
    "Relative intervals: delta method on the log of the ratio (tea-tasting's form), so they never "
    "reach -100%; p is the test of the same statistic, so p < alpha exactly when the CI excludes 0 "
    "(abs_p_value in report.json tests the absolute difference). adj p is corrected over every "
    "confirmatory metric and arm; guardrail metrics are outside that family (adjusted among "
    "themselves), so they never change a confirmatory adj p.",
    "latency_p99_ms (guardrail, higher is worse): 99th percentile of request latency from the "
    "serving latency model (deterministic per request; docs/architecture.md); interval by Woodruff's method on "
    "the user-clustered CDF (Deng et al. 2018, section 4.2); relative CI on the log scale, so it "
    "stays above -100%.",
    "Sequential: each daily look uses only what was known at its end (conversions landed by "
    "then). mSPRT (Johari et al. 2017) with its mixing variance fixed by the spec's sequential_mde: "
    "always-valid p and confidence sequence; beside it an O'Brien-Fleming group-sequential test "
    "(Lan-DeMets spending over the planned daily looks).",
    "Segments (per scenario, per day) are intent-to-treat: every assigned user counts in every "
    "segment, with zeros where inactive (no conditioning on post-treatment activity); they are "
    "descriptive and not corrected.",
    "CUPED (Deng et al. 2013) with pre-period covariates; cross-check: statsmodels "
    "cluster-robust OLS (CR0, clustered by user).",
)
SCENARIO_METRICS = tuple(n for n, m in REGISTRY.items() if m.by_scenario)
METHODS = "".join(f"- {note}\n" for note in METHOD_NOTES)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


markdown_table = _table  # public name, for the real-experiment report (render_experiment)

#: The summary header with the direction after the comparison, and a "change" word in place of
#: the truth columns (a guardrail has no true lift).
GUARDRAIL_HEADER = (*HEADER[:2], "direction", *HEADER[2:8], "change")


def guardrail_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per guardrail comparison: the summary row's metric, comparison, values, lift,
    CI and p-values, with the metric's direction after the comparison and, instead of truth
    and coverage, a 'change' word read by that direction."""
    rows = []
    for row in summary_rows(report, role="guardrail"):
        m = report.metrics[row[0]]
        r = m.comparisons[row[1]]
        change = change_word(m.higher_is_better, r.comparison.rel_lift, r.p_value_adjusted, report.alpha)
        direction = "higher is better" if m.higher_is_better else "higher is worse"
        rows.append((row[0], row[1], direction, *row[2:8], change))
    return rows


def cuped_not_applied(report: Report) -> list[str]:
    """'metric comparison: reason' for every comparison where CUPED was not applied."""
    return [
        f"{name} {key.replace('_vs_', ' vs ')}: {r.cuped_reason}"
        for name, m in report.metrics.items()
        for key, r in m.comparisons.items()
        if r.cuped is None and r.cuped_reason
    ]


def verdicts(report: Report) -> list[str]:
    """One plain sentence per confirmatory comparison that is significant after correction."""
    out = []
    for name, m in report.metrics.items():
        if not m.confirmatory:
            continue
        for key, r in m.comparisons.items():
            c = r.comparison
            if r.p_value_adjusted == r.p_value_adjusted and r.p_value_adjusted < report.alpha:
                out.append(
                    f"**{name}** {key.replace('_vs_', ' vs ')}: {fmt_pct(c.rel_lift)} "
                    f"{fmt_ci(c.rel_ci)}, adj p {fmt_p(r.p_value_adjusted)}"
                )
    return out


def truth_sentence(report: Report) -> str:
    """What "true lift" means in this report, in one sentence."""
    kind = report.truth.kind
    if kind == "counterfactual":
        return ("*True lift* is the lift over all of the campaign's users had every one of them been in "
                "each arm (paired counterfactual worlds): a fixed population quantity, the estimand; "
                "*covered* says whether the CI contains it.")
    if kind == "realised-group":
        return ("This run has no counterfactual truth (truth = \"oracle\"): each arm's values on its own "
                "users are shown in report.json as realised-group values, but no true lift is printed "
                "and no CI is judged against them.")
    return "This report has no truth table: true values are unknown."


def family_sentence(report: Report) -> str:
    f = report.family or {}
    return (f"Multiple testing: {f.get('method', report.correction)} over the family of "
            f"{f.get('comparisons', '?')} confirmatory comparisons ({f.get('members', 'metrics x arms')}).")


def render_markdown(report: Report) -> str:
    lines = [f"# Campaign `{report.campaign}` (seed {report.seed})", ""]
    if report.integrity:
        lines += ["> **INCOMPLETE OR ALTERED RUN** (reported with `--allow-incomplete`): the numbers "
                  "below do not describe the campaign as run.", ""]
        lines += [f"> - {p}" for p in report.integrity] + [""]
    found = verdicts(report)
    lines += ["## Significant after correction", ""]
    lines += [f"- {v}" for v in found] or [f"- nothing significant at alpha = {report.alpha}"]
    srm = "ok" if report.srm.ok else "**SAMPLE RATIO MISMATCH**"
    lines += ["", "## Traffic", ""]
    lines += _table(
        ("arm", "users", "expected users", "exposures", "clicks", "conversions", "requests"),
        [
            (
                a + (" (control)" if a == report.control else ""),
                f"{t.users:,}",
                f"{report.srm.expected.get(a, 0):,.0f}",
                f"{t.exposures:,}",
                f"{t.clicks:,}",
                f"{t.conversions:,}",
                f"{t.requests:,}",
            )
            for a, t in report.arms.items()
        ],
    )
    srm_how = ("expected users within entry cohorts of the ramp schedule" if report.srm.method == "entry cohorts"
               else "expected users from the allocation shares")
    lines += ["", f"SRM chi-square p = {report.srm.p_value:.4g} ({srm_how}, df {report.srm.df}): {srm}", ""]
    if report.interference is not None:  # the design beside the global effect (docs/interference.md)
        from simab.reports.designs import markdown as design_markdown

        treatment = next((a for a in report.arms if a != report.control), report.control)
        lines += design_markdown(report.interference, report.control, treatment)
    lines += ["## Lifts", "", truth_sentence(report), ""]
    lines += _table(HEADER, summary_rows(report))
    lines += [
        "",
        f"alpha {report.alpha}. {family_sentence(report)}",
        "",
    ]
    guard = guardrail_rows(report)
    if guard:
        lines += ["## Guardrails", ""]
        lines += [
            "Outside the confirmatory family: adj p is corrected over the guardrail "
            "comparisons only; *change* reads a significant lift by the metric's direction.",
            "",
        ]
        lines += _table(GUARDRAIL_HEADER, guard)
        lines.append("")

    seq_rows, extra_rows = [], []
    for name, m in report.metrics.items():
        for key, r in m.comparisons.items():
            if r.sequential is not None:
                seq_rows.append((name, key, fmt_ci(r.sequential.ci), fmt_p(r.sequential.p_value)))
            cuped = r.cuped
            extra_rows.append(
                (
                    name,
                    key,
                    fmt_ci(cuped.comparison.rel_ci) if cuped else "-",
                    f"{cuped.variance_reduction:.1%}"
                    if cuped and cuped.variance_reduction == cuped.variance_reduction
                    else "-",
                    f"{r.cross_check.rel_se_difference:.1e}"
                    if r.cross_check
                    and r.cross_check.rel_se_difference == r.cross_check.rel_se_difference
                    else "-",
                    fmt_pct(r.mde.rel_mde) if r.mde and r.mde.rel_mde is not None else "-",
                )
            )
    if seq_rows:
        gs_cells = {}
        for name, m in report.metrics.items():
            for key, r in m.comparisons.items():
                g = r.group_sequential
                if g is not None:
                    gs_cells[(name, key)] = (f"day {g.rejected_day}" if g.rejected else "not crossed",
                                             f"{g.looks[-1].z:+.2f} / {g.looks[-1].boundary:.2f}")
        seq_rows = [(*row, *gs_cells.get((row[0], row[1]), ("-", "-"))) for row in seq_rows]
        lines += ["## Sequential monitoring (daily looks, each from the data known by then)", ""]
        lines += _table(("metric", "comparison", "confidence sequence", "always-valid p",
                         "O'Brien-Fleming: rejected", "last look z / boundary"), seq_rows)
        lines.append("")
    lines += ["## Variance reduction, cross-check and sensitivity", ""]
    lines += _table(
        (
            "metric",
            "comparison",
            "CUPED rel CI",
            "CUPED variance reduction",
            "OLS SE rel. diff.",
            "MDE (80% power)",
        ),
        extra_rows,
    )
    lines.append("")
    skipped = cuped_not_applied(report)
    if skipped:
        lines += ["CUPED not applied:", "", *(f"- {s}" for s in skipped), ""]
    for name in SCENARIO_METRICS:
        m = report.metrics.get(name)
        if m is None or not m.per_scenario:
            continue
        lines += [f"## {name} per scenario", ""]
        rows = []
        for seg, by_key in m.per_scenario.items():
            for key, s in by_key.items():
                c = s.comparison
                rows.append(
                    (
                        seg,
                        key,
                        fmt_value(c.control_value),
                        fmt_value(c.treatment_value),
                        fmt_pct(c.rel_lift),
                        fmt_ci(c.rel_ci),
                        fmt_p(c.p_value),
                    )
                )
        lines += _table(
            ("scenario", "comparison", "control", "treatment", "rel lift", "CI", "p"), rows
        )
        lines.append("")
    flags = sorted(
        {f for m in report.metrics.values() for r in m.comparisons.values() for f in r.flags}
        | set(report.srm.flags)
    )
    if flags:
        lines += ["## Flags", "", *(f"- {f}" for f in flags), ""]
    lines += ["## Methods", "", METHODS]
    return "\n".join(lines)
