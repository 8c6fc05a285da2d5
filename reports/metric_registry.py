"""The one home of every report metric: what it measures, how it is analysed and judged.

Spec validation (``simab.spec``), the analysis (``reports.analysis``), calibration
(``simab.reports.calibration``), the world's truth (``simab.run.truth.oracle_truth``) and the
figures all read this table, so adding or changing a metric is one edit here.

Roles: *confirmatory* metrics form the multiple-testing family (their adjusted p-values
decide "significant after correction"); *guardrail* metrics are reported apart, with their
own unadjusted p-values, and never change the confirmatory family.  ``latency_p99_ms`` is
a guardrail: an operational metric (from the serving latency model) that must not move the
other metrics' adjusted p-values.

This module imports nothing heavy (no numpy, no pyarrow) so spec validation stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Role = Literal["confirmatory", "guardrail"]
Unit = Literal["user", "request"]


@dataclass(frozen=True)
class TruthSums:
    """Per-arm sums over logged exposures of the true probabilities the world knew."""

    exposures: int
    users: int
    p_click: float  # Σ p_click
    p_click_convert: float  # Σ p_click·p_convert
    p_click_dwell: float  # Σ p_click·E[dwell | click]


@dataclass(frozen=True)
class MetricDef:
    """One metric.

    ``num``/``den``: per-user columns of the analysis, value = mean(num) / mean(den)
    (``den=None``: a plain per-user mean).  ``pre_num``/``pre_den``: the pre-period
    covariate columns CUPED adjusts with (``None``: no covariate).  ``truth``: the expected
    value from the logged true probabilities, and ``truth_sources`` the truth tables that
    may report it (``oracle``: the run's own exposures; ``counterfactual``: a replay).
    ``quantile``: for per-request metrics, the percentile of ``num`` per arm.
    ``trend``: drawn in the daily and sequential figures; ``by_scenario``: broken down
    per scenario in report.md and the figures.
    """

    name: str
    description: str
    unit: Unit
    role: Role
    higher_is_better: bool
    num: str | None = None
    den: str | None = None
    pre_num: str | None = None
    pre_den: str | None = None
    truth: Callable[[TruthSums], float] | None = None
    truth_sources: tuple[str, ...] = ()
    quantile: float | None = None
    trend: bool = False
    by_scenario: bool = False

    @property
    def confirmatory(self) -> bool:
        return self.role == "confirmatory"

    @property
    def is_ratio(self) -> bool:
        """A ratio of per-user sums (the delta-method ratio metrics)."""
        return self.den is not None


BOTH = ("oracle", "counterfactual")

REGISTRY: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef(
            "ctr",
            "clicks / exposures",
            "user",
            "confirmatory",
            True,
            num="clicks",
            den="exposures",
            pre_num="pre_clicks",
            pre_den="pre_exposures",
            truth=lambda s: s.p_click / s.exposures,
            truth_sources=BOTH,
            trend=True,
            by_scenario=True,
        ),
        MetricDef(
            "ctcvr",
            "conversions / exposures",
            "user",
            "confirmatory",
            True,
            num="conversions",
            den="exposures",
            pre_num="pre_conversions",
            pre_den="pre_exposures",
            truth=lambda s: s.p_click_convert / s.exposures,
            truth_sources=BOTH,
            trend=True,
            by_scenario=True,
        ),
        MetricDef(
            "cvr",
            "conversions / clicks",
            "user",
            "confirmatory",
            True,
            num="conversions",
            den="clicks",
            pre_num="pre_conversions",
            pre_den="pre_clicks",
            truth=lambda s: s.p_click_convert / max(s.p_click, 1e-300),
            truth_sources=BOTH,
        ),
        MetricDef(
            "stay_time",
            "dwell seconds per user",
            "user",
            "confirmatory",
            True,
            num="dwell_s",
            pre_num="pre_dwell_s",
            truth=lambda s: s.p_click_dwell / max(s.users, 1),
            truth_sources=BOTH,
            trend=True,
        ),
        MetricDef(
            "exposures_per_user",
            "exposures per user",
            "user",
            "confirmatory",
            True,
            num="exposures",
            pre_num="pre_exposures",
            # the oracle truth of a run is its own exposure count: only a replay knows it
            truth=lambda s: s.exposures / max(s.users, 1),
            truth_sources=("counterfactual",),
        ),
        MetricDef(
            "latency_p99_ms",
            "99th percentile of request latency (serving latency model, ms)",
            "request",
            "guardrail",
            False,
            num="latency_ms",
            quantile=0.99,
        ),
    )
}

METRIC_NAMES: tuple[str, ...] = tuple(REGISTRY)
USER_METRIC_NAMES: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.unit == "user")
CONFIRMATORY: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.confirmatory)
GUARDRAILS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if not m.confirmatory)


def metric(name: str) -> MetricDef:
    """The definition of ``name`` (KeyError for an unknown name: callers validate first)."""
    return REGISTRY[name]


def truth_values(sums: TruthSums, source: str) -> dict[str, float]:
    """metric -> expected value of every metric whose truth ``source`` can report."""
    return {
        name: float(m.truth(sums))
        for name, m in REGISTRY.items()
        if m.truth is not None and source in m.truth_sources
    }
