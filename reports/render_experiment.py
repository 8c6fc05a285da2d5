"""report.md and report.html of a real experiment (``simab analyze``): the data checks
first, then the campaign report's lift table, sequential monitoring, CUPED and cross-check,
without the columns that only a simulation can fill (true lift, covered)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from simab.atomic import write_atomic
from simab.errors import SimabError
from simab.reports import figures
from simab.reports.experiment import ExperimentReport
from simab.reports.render_html import CSS, details_rows, html_table, image_tag
from simab.reports.render_markdown import cuped_not_applied, markdown_table, verdicts
from simab.reports.summary import HEADER, summary_rows

#: the lift table without the truth columns
LIFT_HEADER = HEADER[:8]
CHECK_HEADER = ("check", "ok", "detail")
METHOD_NOTES = (
    "Unit of analysis: the unit (the randomisation unit: --unit, or each row). A metric "
    "NUM/DEN is the ratio of per-unit sums, analysed with the delta method (Deng, Knoblich & "
    "Lu 2018); a metric NUM is the mean per unit (Welch t). Intervals use Welch df.",
    "p tests the absolute difference; adj p is corrected over every metric and arm "
    "(the correction named above).",
    "Sequential (with a time column or looks): mixture SPRT (Johari et al. 2017) over the "
    "cumulative looks; always-valid p and confidence sequence on the relative lift.",
    "CUPED (Deng et al. 2013) with the per-unit covariate given for a metric; cross-check: "
    "statsmodels OLS with cluster-robust errors by unit.",
    "A real experiment has no known truth: the report has no true lift and no coverage.",
)


def _ok(ok: bool | None) -> str:
    return "not checked" if ok is None else ("ok" if ok else "FAILED")


def _check_rows(report: ExperimentReport) -> list[tuple[str, str, str]]:
    return [(c.check, _ok(c.ok), c.detail) for c in report.data_checks]


def _left_out(report: ExperimentReport) -> str | None:
    left = report.data.get("left_out") or {}
    if not left.get("rows"):
        return None
    how = "--drop-invalid dropped every row of each unit that failed a check" if report.data.get(
        "drop_invalid") else "rows that cannot be analysed were left out"
    return f"Left out: {left['rows']:,} rows ({left['units']:,} units): {how}."


def _lift_rows(report: ExperimentReport) -> list[tuple[str, ...]]:
    return [row[: len(LIFT_HEADER)] for row in summary_rows(report, role=None)]


def _unit_rows(report: ExperimentReport) -> list[tuple[str, ...]]:
    rows = report.data.get("rows_per_arm", {})
    shares = report.data.get("shares", {})
    total = sum(shares.values()) or 1.0
    return [
        (
            a + (" (control)" if a == report.control else ""),
            f"{t.users:,}",
            f"{rows.get(a, 0):,}",
            f"{shares.get(a, 0) / total:.1%}",
            f"{report.srm.expected.get(a, 0):,.0f}",
        )
        for a, t in report.arms.items()
    ]


UNIT_HEADER = ("arm", "units", "rows", "share", "expected units")


DETAIL_HEADER = ("metric", "comparison", "confidence sequence", "always-valid p", "CUPED rel CI",
                 "CUPED variance reduction", "OLS SE rel. diff.", "MDE (80% power)")


def _subtitle(report: ExperimentReport) -> str:
    d = report.data
    metrics = ", ".join(f"{k} = {v}" for k, v in (d.get("metrics") or {}).items())
    unit = f"unit `{d['unit']}`" if d.get("unit") else "one unit per row"
    if d.get("mode") == "summary statistics":
        unit = "per-arm summary statistics"
    return (f"Data `{d.get('source')}`: {d.get('rows', 0):,} rows, arm column `{d.get('arm')}`, "
            f"control `{report.control}`, {unit}" + (f"; metrics {metrics}" if metrics else "")
            + f"; alpha {report.alpha}, {report.correction} correction.")


def _flags(report: ExperimentReport) -> list[str]:
    return sorted(
        {f for m in report.metrics.values() for r in m.comparisons.values() for f in r.flags}
        | set(report.srm.flags)
    )


def experiment_summary(report: ExperimentReport) -> str:
    """Terminal text: one line per data check, then the aligned lift table and the SRM line."""
    lines = [f"data check  {c.check}: " + (c.detail if c.ok is None else f"{_ok(c.ok)} ({c.detail})")
             for c in report.data_checks]
    left = _left_out(report)
    lines += [left] if left else []
    rows = [LIFT_HEADER, *_lift_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(LIFT_HEADER))]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    table.insert(1, "  ".join("-" * w for w in widths))
    srm = "ok" if report.srm.ok else "MISMATCH"
    return "\n".join([*lines, "", *table,
                      f"SRM p = {report.srm.p_value:.4g} ({srm}); alpha {report.alpha}; adj p: "
                      f"{report.correction} over {len(rows) - 1} comparisons; no true lift is "
                      "known for a real experiment"])


def render_experiment_markdown(report: ExperimentReport) -> str:
    lines = [f"# Experiment `{report.campaign}` (real data)", "", _subtitle(report), ""]
    lines += ["## Data checks", ""]
    lines += markdown_table(CHECK_HEADER, _check_rows(report))
    left = _left_out(report)
    lines += ["", *([left, ""] if left else [])]
    lines += ["> A real experiment: no true lift is known, so the report has no truth columns.", ""]
    lines += ["## Significant after correction", ""]
    lines += [f"- {v}" for v in verdicts(report)] or [
        f"- nothing significant at alpha = {report.alpha}"]
    lines += ["", "## Units per arm", ""]
    lines += markdown_table(UNIT_HEADER, _unit_rows(report))
    srm = "ok" if report.srm.ok else "**SAMPLE RATIO MISMATCH**"
    lines += ["", f"SRM chi-square p = {report.srm.p_value:.4g}: {srm}", ""]
    lines += ["## Lifts", ""]
    lines += markdown_table(LIFT_HEADER, _lift_rows(report))
    lines += [""]
    lines += ["## Sequential, CUPED, cross-check and sensitivity", ""]
    lines += markdown_table(DETAIL_HEADER, details_rows(report))
    lines.append("")
    skipped = cuped_not_applied(report)
    if skipped:
        lines += ["CUPED not applied:", "", *(f"- {s}" for s in skipped), ""]
    flags = _flags(report)
    if flags:
        lines += ["## Flags", "", *(f"- {f}" for f in flags), ""]
    lines += ["## Methods", "", *(f"- {n}" for n in METHOD_NOTES), ""]
    return "\n".join(lines)


def render_experiment_html(report: ExperimentReport) -> str:
    """One self-contained page: data checks first, then lifts, figures and details."""
    failed = {i for i, c in enumerate(report.data_checks) if c.ok is False}
    significant = {
        i for i, r in enumerate(r for m in report.metrics.values() for r in m.comparisons.values())
        if r.p_value_adjusted == r.p_value_adjusted and r.p_value_adjusted < report.alpha
    }
    found = verdicts(report)
    verdict = (
        "<ul class=verdict>" + "".join(f"<li>{html.escape(v).replace('**', '')}</li>" for v in found)
        + "</ul>" if found else
        f"<p>Nothing is significant at α = {report.alpha} after {report.correction} correction.</p>"
    )
    left = _left_out(report)
    seq = figures.sequential_plot(report, tuple(report.metrics)) if report.days else None
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>simab analyze — {html.escape(report.campaign)}</title><style>{CSS}</style></head><body>",
        f"<h1>Experiment <code>{html.escape(report.campaign)}</code> (real data)</h1>",
        f"<p class=sub>{html.escape(_subtitle(report)).replace('`', '')}</p>",
        "<h2>Data checks</h2>",
        "<p>Rows shaded red failed.</p>",
        html_table(CHECK_HEADER, _check_rows(report), failed),
        *([f"<p>{html.escape(left)}</p>"] if left else []),
        "<p><i>A real experiment: no true lift is known, so the report has no truth columns.</i></p>",
        "<h2>Significant after correction</h2>",
        verdict,
        "<h2>Units per arm</h2>",
        html_table(UNIT_HEADER, _unit_rows(report)),
        image_tag(figures.traffic_plot(report), "units per arm and SRM"),
        "<h2>Lifts</h2>",
        "<p>Rows shaded red are significant after correction.</p>",
        html_table(LIFT_HEADER, _lift_rows(report), significant),
        image_tag(figures.forest_plot(report), "forest plot of relative lifts"),
    ]
    if seq is not None:
        parts += ["<h2>Sequential monitoring</h2>",
                  "<p>Cumulative lift at each look; the wide band is the always-valid confidence "
                  "sequence, the narrow one the fixed-horizon interval.</p>",
                  image_tag(seq, "cumulative lift over looks")]
    parts += ["<h2>Sequential, CUPED, cross-check and sensitivity</h2>",
              html_table(DETAIL_HEADER, details_rows(report))]
    skipped = cuped_not_applied(report)
    if skipped:
        parts += ["<p>CUPED not applied:</p><ul class=flags>",
                  *(f"<li>{html.escape(s)}</li>" for s in skipped), "</ul>"]
    flags = _flags(report)
    if flags:
        parts += ["<h2>Flags</h2><ul class=flags>", *(f"<li>{html.escape(f)}</li>" for f in flags),
                  "</ul>"]
    parts += ["<h2>Methods</h2><ul class=methods>",
              *(f"<li>{html.escape(n)}</li>" for n in METHOD_NOTES), "</ul>", "</body></html>"]
    return "\n".join(parts)


def write_experiment_report(report: ExperimentReport, out: str | Path) -> list[Path]:
    """Write report.md, report.html and, last, report.json into folder ``out`` (created);
    returns their paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SimabError("exists and is not a folder", source=str(out))
    out.mkdir(parents=True, exist_ok=True)
    # render everything first: a failure leaves no file behind that looks like a report
    payload = json.dumps(report.to_json_dict(), indent=2, allow_nan=False) + "\n"
    texts = {"report.md": render_experiment_markdown(report), "report.html": render_experiment_html(report),
             "report.json": payload}
    return [write_atomic(out / name, text) for name, text in texts.items()]
