"""The report's matplotlib figures, returned as PNG bytes (embedded by render_html)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simab.reports.metric_registry import REGISTRY  # noqa: E402
from simab.reports.report import MetricReport, Report  # noqa: E402

ARM_COLOURS = ["#4C566A", "#D08770", "#5E81AC", "#A3BE8C", "#B48EAD", "#EBCB8B"]
# significant harm (by the metric's direction) / win / neither, and the truth marker
SIGNIFICANT, WIN, NEUTRAL, TRUTH = "#BF616A", "#3B7A3B", "#5E81AC", "#2E3440"
TREND_METRICS = tuple(n for n, m in REGISTRY.items() if m.trend)
RATIO_METRICS = tuple(n for n, m in REGISTRY.items() if m.is_ratio)
SCENARIO_METRICS = tuple(n for n, m in REGISTRY.items() if m.by_scenario)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _finite(*xs: float | None) -> bool:
    return all(x is not None and x == x and abs(x) != float("inf") for x in xs)


def _pct_axis(ax, axis: str = "x") -> None:
    fmt = matplotlib.ticker.PercentFormatter(1.0, decimals=0)
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(fmt)


def _day_axis(ax, days: list[int]) -> None:
    """Integer day ticks, half a day of margin (a one-look campaign is a single point)."""
    if days:
        ax.set_xlim(min(days) - 0.5, max(days) + 0.5)
        ax.set_xticks(range(min(days), max(days) + 1))


def lift_colour(m: MetricReport, rel_lift: float, p_adjusted: float, alpha: float) -> str:
    """Green for a significant change in the metric's good direction, red for harm."""
    if not (p_adjusted == p_adjusted and p_adjusted < alpha) or rel_lift == 0:
        return NEUTRAL
    return WIN if (rel_lift > 0) == m.higher_is_better else SIGNIFICANT


def _forest_rows(report: Report, confirmatory: bool) -> list[tuple[str, MetricReport, object]]:
    return [
        (f"{name}  {key.replace('_vs_', ' vs ')}", m, r)
        for name, m in report.metrics.items()
        if m.confirmatory == confirmatory
        for key, r in m.comparisons.items()
    ]


def forest_plot(report: Report) -> bytes:
    """Relative lift and CI of every comparison, true lift marked, zero line; guardrail
    metrics in a panel of their own below (their own scale and family)."""
    panels = [
        (rows, title)
        for rows, title in (
            (_forest_rows(report, True), "Relative lift by metric"),
            (_forest_rows(report, False), "Guardrails (own family; colour by direction)"),
        )
        if rows
    ]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8.5, sum(0.45 * len(rows) + 1.2 for rows, _ in panels)),
        squeeze=False,
        gridspec_kw={"height_ratios": [len(rows) + 2 for rows, _ in panels]},
    )
    for ax, (rows, title) in zip(axes[:, 0], panels, strict=True):
        _forest_panel(ax, rows, report)
        ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def _forest_panel(ax, rows, report: Report) -> None:
    for y, (_label, m, r) in enumerate(reversed(rows)):
        c = r.comparison
        if not _finite(c.rel_lift, *c.rel_ci):
            ax.text(
                0, y, "undefined (see flags)", va="center", ha="center", fontsize=8, color="grey"
            )
            continue
        colour = lift_colour(m, c.rel_lift, r.p_value_adjusted, report.alpha)
        ax.errorbar(
            c.rel_lift,
            y,
            xerr=[[c.rel_lift - c.rel_ci[0]], [c.rel_ci[1] - c.rel_lift]],
            fmt="o",
            color=colour,
            capsize=3,
            lw=1.6,
        )
        if r.true_rel_lift is not None:
            ax.plot(r.true_rel_lift, y, marker="x", color=TRUTH, ms=8, mew=2)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in reversed(rows)])
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    _pct_axis(ax)
    ax.set_xlabel(
        f"relative lift, {1 - report.alpha:.0%} CI  (x = true lift; green = significant win, "
        f"red = significant harm after {report.correction})"
    )
    ax.grid(axis="x", alpha=0.3)


def sequential_plot(report: Report, names: tuple[str, ...] = TREND_METRICS) -> bytes | None:
    """Cumulative relative lift over daily looks: fixed CI and the always-valid sequence,
    for the metrics ``names`` (default: the registry's trend metrics)."""
    panels = [
        (name, key, r)
        for name in names
        if name in report.metrics
        for key, r in report.metrics[name].comparisons.items()
        if r.sequential is not None
    ]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False)
    from scipy import stats

    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, key, r) in zip(axes.flat, panels, strict=False):
        looks = r.sequential.looks
        days = [lk.day for lk in looks]
        est = [lk.estimate for lk in looks]
        z = stats.norm.ppf(1 - report.alpha / 2)
        ax.fill_between(
            days,
            [lk.ci[0] for lk in looks],
            [lk.ci[1] for lk in looks],
            color=NEUTRAL,
            alpha=0.18,
            label="confidence sequence (mSPRT)",
        )
        ax.fill_between(
            days,
            [e - z * lk.se for e, lk in zip(est, looks, strict=True)],
            [e + z * lk.se for e, lk in zip(est, looks, strict=True)],
            color=NEUTRAL,
            alpha=0.35,
            label="fixed-horizon CI",
        )
        ax.plot(days, est, "o-", color=NEUTRAL, lw=1.5, ms=4, label="cumulative lift")
        if len(looks) == 1:  # fill_between draws nothing over a single look: show the bars
            lk = looks[0]
            ax.errorbar(days, est, yerr=[[est[0] - lk.ci[0]], [lk.ci[1] - est[0]]], color=NEUTRAL,
                        alpha=0.45, lw=8, capsize=0)
            ax.errorbar(days, est, yerr=z * lk.se, color=NEUTRAL, lw=2, capsize=4)
        if r.true_rel_lift is not None:
            ax.axhline(r.true_rel_lift, color=TRUTH, ls=":", lw=1.4, label="true lift")
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        _pct_axis(ax, "y")
        ax.set_xlabel("day (cumulative look)")
        _day_axis(ax, days)
        ax.set_title(
            f"{name}: {key.replace('_vs_', ' vs ')}\nalways-valid p = {r.sequential.p_value:.3g}",
            fontsize=10,
        )
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def scenario_plot(report: Report) -> bytes | None:
    """Relative lift per scenario for CTR and CTCVR."""
    names = [
        n for n in SCENARIO_METRICS if n in report.metrics and report.metrics[n].per_scenario
    ]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        segments = report.metrics[name].per_scenario
        keys = list(next(iter(segments.values())))
        labels = list(segments)
        height = 0.8 / len(keys)
        for j, key in enumerate(keys):
            for i, seg in enumerate(labels):
                c = segments[seg][key].comparison
                y = i + (j - (len(keys) - 1) / 2) * height
                if _finite(c.rel_lift, *c.rel_ci):
                    ax.errorbar(
                        c.rel_lift,
                        y,
                        xerr=[[c.rel_lift - c.rel_ci[0]], [c.rel_ci[1] - c.rel_lift]],
                        fmt="s",
                        color=ARM_COLOURS[(j + 1) % len(ARM_COLOURS)],
                        capsize=3,
                        label=key.replace("_vs_", " vs ") if i == 0 else None,
                    )
        overall = report.metrics[name].comparisons[keys[0]].comparison.rel_lift
        if _finite(overall):
            ax.axvline(overall, color=SIGNIFICANT, lw=1, ls=":", label="overall")
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(range(len(labels)), labels)
        _pct_axis(ax)
        ax.set_title(f"{name} relative lift per scenario", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def daily_plot(report: Report) -> bytes | None:
    """Each arm's daily metric value (users active that day)."""
    names = [n for n in TREND_METRICS if n in report.metrics and report.metrics[n].per_day]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.0), squeeze=False)
    arms = list(report.arms)
    for ax, name in zip(axes[0], names, strict=True):
        per_day = report.metrics[name].per_day
        days = [int(d) for d in per_day]
        for k, arm in enumerate(arms):
            values = [
                next(iter(per_day[d].values())).values.get(arm, float("nan")) for d in per_day
            ]
            ax.plot(days, values, "o-", ms=3, color=ARM_COLOURS[k % len(ARM_COLOURS)], label=arm)
            true = report.metrics[name].arms[arm].true_value
            if true is not None and name in RATIO_METRICS:  # totals per user are not daily values
                ax.axhline(true, color=ARM_COLOURS[k % len(ARM_COLOURS)], ls=":", lw=1)
        suffix = " (dotted: truth)" if name in RATIO_METRICS else ""
        ax.set_title(f"daily {name} per arm{suffix}", fontsize=10)
        _day_axis(ax, days)
        ax.set_xlabel("day")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def traffic_plot(report: Report) -> bytes:
    """Users per arm, observed vs expected from the allocation, with the SRM test."""
    arms = list(report.arms)
    fig, ax = plt.subplots(figsize=(5.5, 2.9))
    observed = [report.arms[a].users for a in arms]
    expected = [report.srm.expected.get(a, 0.0) for a in arms]
    xs = range(len(arms))
    ax.bar([x - 0.2 for x in xs], observed, width=0.4, color=NEUTRAL, label="observed")
    ax.bar(
        [x + 0.2 for x in xs],
        expected,
        width=0.4,
        color="#D8DEE9",
        edgecolor="#4C566A",
        label="expected",
    )
    for x, o, e in zip(xs, observed, expected, strict=True):
        ax.text(x - 0.2, o, f"{o:,}", ha="center", va="bottom", fontsize=8)
        if e:
            ax.text(x + 0.2, e, f"{(o - e) / e:+.1%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), arms)
    verdict = "OK" if report.srm.ok else "SAMPLE RATIO MISMATCH"
    ax.set_title(
        f"users per arm — SRM χ² p = {report.srm.p_value:.3g}: {verdict}",
        fontsize=10,
        color="black" if report.srm.ok else SIGNIFICANT,
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
