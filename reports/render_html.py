"""report.html: one self-contained page (inline CSS, figures as data: URIs)."""

from __future__ import annotations

import base64
import html

from simab.reports import figures
from simab.reports.formatting import fmt_ci, fmt_p, fmt_pct
from simab.reports.render_markdown import (
    GUARDRAIL_HEADER,
    METHOD_NOTES,
    cuped_not_applied,
    guardrail_rows,
    verdicts,
)
from simab.reports.report import Report
from simab.reports.summary import HEADER, summary_rows

CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#2E3440;
     max-width:1100px;margin:24px auto;padding:0 20px;background:#fff}
h1{font-size:24px;margin-bottom:2px} h2{font-size:18px;margin-top:30px;border-bottom:1px solid #E5E9F0;padding-bottom:4px}
.sub{color:#4C566A;margin-top:0}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #E5E9F0;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}
.ok{color:#3B7A3B} .bad{color:#BF616A;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{padding:5px 8px;border-bottom:1px solid #E5E9F0;text-align:right;white-space:nowrap}
th{background:#F4F6F9;text-align:right} td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}
tr.sig td{background:#FBEFEF}
img{max-width:100%;display:block;margin:10px 0}
.verdict li{margin:3px 0} .flags li{color:#8A5A00}
.methods{color:#4C566A;font-size:13px}
"""


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return f"<p><em>{html.escape(alt)}: no data.</em></p>"
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header, rows, significant=()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=sig' if i in significant else ''}>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in r)
        + "</tr>"
        for i, r in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(report: Report) -> str:
    total_users = sum(a.users for a in report.arms.values())
    total_exp = sum(a.exposures for a in report.arms.values())
    srm_cls = "ok" if report.srm.ok else "bad"
    srm_txt = "OK" if report.srm.ok else "MISMATCH"
    cards = [
        ("users", f"{total_users:,}"),
        ("exposures", f"{total_exp:,}"),
        ("arms", " / ".join(report.arms)),
        ("days", str(len(report.days))),
        ("SRM", f'<span class="{srm_cls}">{srm_txt}</span> p={report.srm.p_value:.3g}'),
    ]
    return (
        '<div class="cards">'
        + "".join(f'<div class="card">{name}<b>{value}</b></div>' for name, value in cards)
        + "</div>"
    )


def _details_rows(report: Report) -> list[tuple[str, ...]]:
    rows = []
    for name, m in report.metrics.items():
        for key, r in m.comparisons.items():
            seq, cuped, ols, mde = r.sequential, r.cuped, r.cross_check, r.mde
            rows.append(
                (
                    name,
                    key,
                    fmt_ci(seq.ci) if seq else "-",
                    fmt_p(seq.p_value) if seq else "-",
                    fmt_ci(cuped.comparison.rel_ci) if cuped else "-",
                    f"{cuped.variance_reduction:.1%}"
                    if cuped and cuped.variance_reduction == cuped.variance_reduction
                    else "-",
                    f"{ols.rel_se_difference:+.1e}"
                    if ols and ols.rel_se_difference == ols.rel_se_difference
                    else "-",
                    fmt_pct(mde.rel_mde) if mde and mde.rel_mde is not None else "-",
                )
            )
    return rows


# public names, for the real-experiment report (render_experiment)
image_tag, html_table, details_rows = _img, _table, _details_rows


def render_html(report: Report) -> str:
    """The full report page, with every figure of ``simab.reports.figures`` embedded (forest,
    sequential, per-scenario, daily and traffic plots)."""
    rows = summary_rows(report, "confirmatory")
    flat = [r for m in report.metrics.values() for r in m.comparisons.values()]
    confirmatory = [
        r for m in report.metrics.values() if m.confirmatory for r in m.comparisons.values()
    ]
    significant = {
        i
        for i, r in enumerate(confirmatory)
        if r.p_value_adjusted == r.p_value_adjusted and r.p_value_adjusted < report.alpha
    }
    guard = guardrail_rows(report)
    worse = {i for i, row in enumerate(guard) if row[-1] == "worse"}
    skipped = cuped_not_applied(report)
    found = verdicts(report)
    verdict = (
        "<ul class=verdict>"
        + "".join(f"<li>{html.escape(v).replace('**', '')}</li>" for v in found)
        + "</ul>"
        if found
        else f"<p>Nothing is significant at α = {report.alpha} after {report.correction} correction.</p>"
    )
    flags = sorted(
        {f for r in flat for f in r.flags}
        | {n for r in flat for n in r.notes}
        | set(report.srm.flags)
    )
    policies = ", ".join(
        f"{a}: {report.run_info.get('arms', {}).get(a, {}).get('policy', '?')}" for a in report.arms
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>simab report — {html.escape(report.campaign)}</title><style>{CSS}</style></head><body>",
        f"<h1>Campaign <code>{html.escape(report.campaign)}</code></h1>",
        f"<p class=sub>seed {report.seed} · control <b>{html.escape(report.control)}</b> · "
        f"{html.escape(policies)} · α = {report.alpha} · {report.correction} correction over {len(confirmatory)} confirmatory comparisons</p>",
        *(
            [f'<p class="bad"><b>INCOMPLETE OR ALTERED RUN</b> (reported with --allow-incomplete): '
             f"{html.escape('; '.join(report.integrity))}</p>"]
            if report.integrity else []
        ),
        _cards(report),
        "<h2>Significant after correction</h2>",
        verdict,
        "<h2>Lifts</h2>",
        "<p>Rows shaded red are significant after correction. <i>true lift</i> is what the simulated world knew; "
        "<i>covered</i> says whether the interval contains it.</p>",
        _table(HEADER, rows, significant),
        _img(figures.forest_plot(report), "forest plot of relative lifts"),
    ]
    if guard:
        parts += [
            "<h2>Guardrails</h2>",
            "<p>Outside the confirmatory family: adj p is corrected over the guardrail comparisons "
            "only. Rows shaded red are significantly <i>worse</i> by the metric's direction.</p>",
            _table(GUARDRAIL_HEADER, guard, worse),
        ]
    parts += [        "<h2>Sequential monitoring</h2>",
        "<p>Cumulative lift at each daily look. The wide band is the always-valid confidence sequence: "
        "peeking at it every day keeps the error rate at α; the narrow band is valid only at a pre-planned end.</p>",
        _img(figures.sequential_plot(report), "cumulative lift over days"),
        "<h2>Per scenario</h2>",
        _img(figures.scenario_plot(report), "per-scenario breakdown"),
        "<h2>Daily metric per arm</h2>",
        _img(figures.daily_plot(report), "daily metric per arm"),
        "<h2>Traffic and sample ratio</h2>",
        _img(figures.traffic_plot(report), "traffic and SRM"),
        "<h2>Sequential, CUPED, cross-check and sensitivity</h2>",
        _table(
            (
                "metric",
                "comparison",
                "confidence sequence",
                "always-valid p",
                "CUPED rel CI",
                "CUPED var. reduction",
                "OLS SE rel. diff.",
                "MDE (80% power)",
            ),
            _details_rows(report),
        ),
    ]
    if skipped:
        parts += [
            "<p>CUPED not applied:</p><ul class=flags>",
            *(f"<li>{html.escape(s)}</li>" for s in skipped),
            "</ul>",
        ]
    if flags:
        parts += [
            "<h2>Flags and notes</h2><ul class=flags>",
            *(f"<li>{html.escape(f)}</li>" for f in flags),
            "</ul>",
        ]
    runtime = report.runtime
    parts += [
        "<h2>Methods</h2><ul class=methods>",
        *(f"<li>{html.escape(n)}</li>" for n in METHOD_NOTES),
        "</ul>",
        f"<p class=sub>Simulation: {runtime.get('wall_s', 0):.1f} s wall, "
        f"{runtime.get('exposures_per_s', 0):,.0f} exposures/s.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
