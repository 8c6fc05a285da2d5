"""Plain-text lift table for the terminal."""

from __future__ import annotations

from simab.reports.formatting import fmt_ci, fmt_covered, fmt_p, fmt_pct, fmt_value
from simab.reports.report import Report

TRUTH_LABELS = {
    "counterfactual": "counterfactual (the campaign's users all in each arm)",
    "realised-group": "none (only realised-group values; see report.md)",
    "none": "none (no truth table)",
}

HEADER = (
    "metric",
    "comparison",
    "control",
    "treatment",
    "rel lift",
    "CI",
    "p",
    "adj p",
    "true lift",
    "covered",
)


def change_word(higher_is_better: bool, rel_lift: float, p_adjusted: float, alpha: float) -> str:
    """'better' / 'worse' when the change is significant after correction, else '-'."""
    if not (p_adjusted == p_adjusted and p_adjusted < alpha and rel_lift == rel_lift):
        return "-"
    if rel_lift == 0:
        return "-"
    return "better" if (rel_lift > 0) == higher_is_better else "worse"


def summary_rows(report: Report, role: str | None = "confirmatory") -> list[tuple[str, ...]]:
    """One row per comparison of the metrics with ``role`` (None: every metric)."""
    rows = []
    for name, m in report.metrics.items():
        if role is not None and m.role != role:
            continue
        for key, r in m.comparisons.items():
            c = r.comparison
            rows.append(
                (
                    name,
                    key,
                    fmt_value(c.control_value),
                    fmt_value(c.treatment_value),
                    fmt_pct(c.rel_lift),
                    fmt_ci(c.rel_ci),
                    fmt_p(c.p_value),
                    fmt_p(r.p_value_adjusted),
                    fmt_pct(r.true_rel_lift),
                    fmt_covered(r.ci_covers_truth),
                )
            )
    return rows


def summary_table(report: Report) -> str:
    """Aligned text table: one row per metric and treatment-vs-control comparison."""
    confirmatory = summary_rows(report, "confirmatory")
    guardrail = summary_rows(report, "guardrail")
    rows = [HEADER, *confirmatory, *guardrail]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if guardrail:
        lines.insert(2 + len(confirmatory), "guardrails (own family; see report.md):")
    if report.interference is not None:
        lines += interference_lines(report.interference)
    srm = "ok" if report.srm.ok else "MISMATCH"
    lines.append(
        f"SRM p = {report.srm.p_value:.4g} ({srm}); alpha {report.alpha}; "
        f"adj p: {report.correction} over {len(confirmatory)} confirmatory comparisons"
    )
    lines.append(f"true lift: {TRUTH_LABELS.get(report.truth.kind, report.truth.kind)}; "
                 f"rel CI: {report.rel_method} (p tests the same statistic)")
    return "\n".join(lines)


def interference_lines(design) -> list[str]:
    """The design's estimates beside the global effect (a DesignReport) for the terminal."""
    out = [f"interference: design {design.kind}; true lift = the global effect (GTE: everyone in treatment vs "
           "everyone in control); in-experiment truth beside it:"]
    for m, d in design.metrics.items():
        out.append(f"  {m:<8} estimate {fmt_pct(d.comparison.rel_lift)} {fmt_ci(d.comparison.rel_ci)}  "
                   f"GTE {fmt_pct(d.gte_rel_lift)}  in-experiment {fmt_pct(d.in_experiment_rel_lift)}  "
                   f"covers GTE: {fmt_covered(d.covers_gte)}")
    return out
