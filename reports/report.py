"""The report's result records and their report.json form (the contract: docs/report_json.md).

JSON never holds NaN or infinity: an undefined number is ``null`` and the record's
``flags`` say why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from simab.reports.comparison import Comparison
from simab.reports.cross_check import OlsCrossCheck
from simab.reports.json_numbers import number
from simab.reports.null_flags import explain_nulls
from simab.reports.power import Mde
from simab.reports.sequential import GroupSequentialResult, SequentialResult
from simab.reports.srm import SrmResult
from simab.reports.truth import DEFINITIONS, TruthInfo

SCHEMA = 1


def interval(ci: tuple[float, float]) -> list[float | None]:
    return [number(ci[0]), number(ci[1])]


@dataclass(frozen=True)
class ArmTraffic:
    users: int
    exposures: int
    clicks: int
    conversions: int
    requests: int


@dataclass(frozen=True)
class ArmValue:
    value: float
    true_value: float | None
    users: int
    flags: tuple[str, ...] = ()
    #: expected value on this arm's own users' exposures (a realised-group quantity)
    realised_group_value: float | None = None


@dataclass(frozen=True)
class CupedResult:
    """CUPED-adjusted comparison; ``variance_reduction`` = 1 - Var_adj / Var_plain."""

    comparison: Comparison
    theta: float
    variance_reduction: float


@dataclass(frozen=True)
class SegmentComparison:
    values: dict[str, float]
    comparison: Comparison


@dataclass(frozen=True)
class ComparisonReport:
    control: str
    treatment: str
    comparison: Comparison
    p_value_adjusted: float = math.nan
    true_rel_lift: float | None = None
    ci_covers_truth: bool | None = None
    sequential: SequentialResult | None = None
    cuped: CupedResult | None = None
    cuped_reason: str | None = None  # why CUPED was not applied (None: applied)
    cross_check: OlsCrossCheck | None = None
    mde: Mde | None = None
    notes: tuple[str, ...] = ()
    group_sequential: GroupSequentialResult | None = None
    #: lift of the realised-group values (never used for coverage)
    realised_group_rel_lift: float | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        return self.comparison.flags


@dataclass(frozen=True)
class MetricReport:
    name: str
    arms: dict[str, ArmValue]
    comparisons: dict[str, ComparisonReport]
    per_scenario: dict[str, dict[str, SegmentComparison]] = field(default_factory=dict)
    per_day: dict[str, dict[str, SegmentComparison]] = field(default_factory=dict)
    role: str = "confirmatory"  # or "guardrail": outside the confirmatory family
    higher_is_better: bool = True

    @property
    def confirmatory(self) -> bool:
        return self.role == "confirmatory"

    def with_adjusted(self, key: str, p_adjusted: float) -> MetricReport:
        comparisons = dict(self.comparisons)
        comparisons[key] = replace(comparisons[key], p_value_adjusted=p_adjusted)
        return replace(self, comparisons=comparisons)


def _comparison_json(c: Comparison) -> dict:
    return {
        "abs_lift": number(c.abs_lift),
        "abs_ci": interval(c.abs_ci),
        "rel_lift": number(c.rel_lift),
        "rel_ci": interval(c.rel_ci),
        "p_value": number(c.p_value),
        "abs_p_value": number(c.abs_p_value),
    }


def _group_sequential_json(g: GroupSequentialResult | None) -> dict | None:
    if g is None:
        return None
    return {
        "method": "O'Brien-Fleming alpha spending (Lan-DeMets) over planned daily looks",
        "planned_looks": g.planned_looks,
        "rejected": g.rejected,
        "rejected_day": g.rejected_day,
        "looks": [{"day": lk.day, "fraction": number(lk.fraction), "z": number(lk.z),
                   "boundary": number(lk.boundary), "crossed": lk.crossed} for lk in g.looks],
    }


def _comparison_report_json(r: ComparisonReport) -> dict:
    c = r.comparison
    out = _comparison_json(c)
    out |= {
        "p_value_adjusted": number(r.p_value_adjusted),
        "true_rel_lift": number(r.true_rel_lift),
        "ci_covers_truth": r.ci_covers_truth,
        "realised_group_rel_lift": number(r.realised_group_rel_lift),
        "sequential": None
        if r.sequential is None
        else {
            "method": "mSPRT, normal mixture with tau fixed by the spec's sequential_mde",
            "tau2": number(r.sequential.tau2),
            "p_value": number(r.sequential.p_value),
            "rel_ci": interval(r.sequential.ci),
            "looks": [
                {
                    "day": look.day,
                    "rel_lift": number(look.estimate),
                    "rel_ci": interval(look.ci),
                    "p_value": number(look.p_value),
                }
                for look in r.sequential.looks
            ],
        },
        "control_value": number(c.control_value),
        "treatment_value": number(c.treatment_value),
        "abs_se": number(c.abs_se),
        "rel_se": number(c.rel_se),
        "rel_p_value": number(c.rel_p_value),
        "rel_ci_method": c.rel_method,
        "df": number(c.df),
        "rel_df": number(c.rel_df),
        "group_sequential": _group_sequential_json(r.group_sequential),
        "users": {"control": c.n_control, "treatment": c.n_treatment},
        "flags": list(c.flags),
        "notes": list(r.notes),
        "cuped_applied": r.cuped is not None,
        "cuped_reason": r.cuped_reason,
    }
    if r.cuped is not None:
        out["cuped"] = _comparison_json(r.cuped.comparison) | {
            "theta": number(r.cuped.theta),
            "variance_reduction": number(r.cuped.variance_reduction),
        }
    if r.cross_check is not None:
        out["cross_check"] = {
            "method": "statsmodels WLS, cluster-robust (CR0) by user",
            "abs_lift": number(r.cross_check.abs_lift),
            "se": number(r.cross_check.se),
            "delta_se": number(r.cross_check.delta_se),
            "rel_se_difference": number(r.cross_check.rel_se_difference),
        }
    if r.mde is not None:
        out["mde"] = {
            "abs": number(r.mde.abs_mde),
            "rel": number(r.mde.rel_mde),
            "power": r.mde.power,
        }
    return out


def _segments_json(segments: dict[str, dict[str, SegmentComparison]]) -> dict:
    return {
        seg: {
            key: {"values": {a: number(v) for a, v in s.values.items()}}
            | _comparison_json(s.comparison)
            for key, s in by_key.items()
        }
        for seg, by_key in segments.items()
    }


@dataclass(frozen=True)
class Report:
    """Everything one campaign's analysis found."""

    campaign: str
    seed: int
    alpha: float
    control: str
    correction: str
    arms: dict[str, ArmTraffic]
    srm: SrmResult
    metrics: dict[str, MetricReport]
    days: tuple[int, ...]
    runtime: dict[str, float]
    run_info: dict = field(default_factory=dict)
    #: problems found verifying the run folder (``simab report --allow-incomplete``); empty: verified
    integrity: tuple[str, ...] = ()
    truth: TruthInfo = TruthInfo("none", DEFINITIONS["none"])
    #: the multiple-testing family: correction, method, members, comparisons
    family: dict = field(default_factory=dict)
    rel_method: str = "delta-log"
    #: the design's analysis beside the global truth (runs with interference; a DesignReport)
    interference: Any = None

    def to_json_dict(self) -> dict:
        """The report.json contract (docs/report_json.md, field by field); NaN-free, and
        every null explained by a flag of its record (``null_flags.explain_nulls``)."""
        return explain_nulls({
            "schema": SCHEMA,
            "campaign": self.campaign,
            "seed": self.seed,
            "alpha": self.alpha,
            "control": self.control,
            "correction": self.correction,
            "family": self.family,
            "rel_method": self.rel_method,
            "truth": {"kind": self.truth.kind, "definition": self.truth.definition},
            "arms": {
                a: {
                    "users": t.users,
                    "exposures": t.exposures,
                    "clicks": t.clicks,
                    "conversions": t.conversions,
                    "requests": t.requests,
                    "policy": self.run_info.get("arms", {}).get(a, {}).get("policy"),
                    "share": number(self.run_info.get("arms", {}).get(a, {}).get("share")),
                }
                for a, t in self.arms.items()
            },
            "srm": {
                "p_value": number(self.srm.p_value),
                "ok": self.srm.ok,
                "chi2": number(self.srm.chi2),
                "expected_users": {a: number(v) for a, v in self.srm.expected.items()},
                "df": self.srm.df,
                "method": self.srm.method,
                "cohorts": [{"opens_day": c.opens_day, "observed": c.observed, "bucket_widths": c.widths}
                            for c in self.srm.cohorts],
                "flags": list(self.srm.flags),
            },
            "metrics": {
                name: {
                    "role": m.role,
                    "higher_is_better": m.higher_is_better,
                    "arms": {
                        a: {
                            "value": number(v.value),
                            "true_value": number(v.true_value),
                            "realised_group_value": number(v.realised_group_value),
                            "users": v.users,
                            "flags": list(v.flags),
                        }
                        for a, v in m.arms.items()
                    },
                    "comparisons": {
                        k: _comparison_report_json(r) for k, r in m.comparisons.items()
                    },
                    "per_scenario": _segments_json(m.per_scenario),
                    "per_day": _segments_json(m.per_day),
                    "segments": "intent-to-treat: every assigned user, zero where inactive in the segment",
                }
                for name, m in self.metrics.items()
            },
            "days": list(self.days),
            "runtime": {k: number(v) for k, v in self.runtime.items()},
            "integrity": {"complete": not self.integrity, "problems": list(self.integrity)},
        } | ({"interference": self.interference.to_json_dict()} if self.interference is not None else {}))
