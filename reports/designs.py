"""Estimators of experiment designs under interference, each beside the global effect.

Every design estimates the *global treatment effect* (GTE): a metric with the whole market in
treatment against the whole market in control (``simab.run.global_truth``).  The exposure-level
ratio metrics are estimated under every design:

    ctr = clicks / exposures,  ctcvr = conversions / exposures,  cvr = conversions / clicks

as a ratio of sums R_a = Σy / Σx over the rows of arm a, with a variance that is robust to
correlation within the design's *units* (clusters): the unit of randomisation.

- ``user``, ``budget_split``: units are users (as in the main report);
- ``market``: whole markets;
- ``switchback``: (market, time block, arm) — a session carried over a block boundary keeps its
  arm, so its exposures form their own small unit; exposures in the first ``washout`` of a
  block are left out (Bojinov, Simchi-Levi & Zhao 2023: a washout drops the carryover);
- ``item``: (market, item cluster), the arm of an exposure being its item's arm;
- ``two_sided``: the cells (treatment user, treatment item) against (control user, control
  item) — the TSR estimator of Johari, Li, Liskovich & Weintraub (2022) for a ratio metric —
  with two-way clustering by user and by item cluster (Cameron, Gelbach & Miller, "Robust
  Inference With Multiway Clustering", JBES 2011): V = V_user + V_item - V_user∩item.

One-way clustered variance of a ratio (the delta method over units, Deng, Knoblich & Lu 2018):
with unit sums (y_j, x_j), n units and R = Σy/Σx,

    Var(R) = n/(n-1) · Σ_j (y_j - R·x_j)² / (Σ_j x_j)²

which is exactly what :func:`simab.reports.comparison.ratio_comparison` computes from the unit
sums (its sample covariance divides by n - 1).  Lifts, intervals and Welch-Satterthwaite df are
:func:`simab.reports.comparison.compare`'s.

The *in-experiment truth* of a design is the same comparison on the expected values the world
logged with each exposure (Σ p_click instead of clicks): what the design's comparison targets
in its own experiment.  It differs from the GTE by the interference bias.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from simab.reports.comparison import (
    DEFAULT_REL_METHOD,
    Comparison,
    RelMethod,
    compare,
    ratio_comparison,
)
from simab.reports.estimates import ArmEstimate
from simab.reports.json_numbers import number
from simab.reports.srm import SrmResult, srm_test

#: metric -> (numerator, denominator) columns of an exposure row; ``exposures`` counts rows.
#: ``revenue``: clicks on the market's limited items per exposure, the rate at which their
#: budgets are spent (one unit a click; clicks past the last unit included) — the metric of
#: Liu et al.'s budget-split paper, which cannibalisation moves most.
RATIO_METRICS: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "exposures"),
    "ctcvr": ("conversions", "exposures"),
    "cvr": ("conversions", "clicks"),
    "revenue": ("limited_clicks", "exposures"),
}
#: the expected-value columns of the same metrics (from the logged true probabilities)
EXPECTED: dict[str, tuple[str, str]] = {
    "ctr": ("e_clicks", "exposures"),
    "ctcvr": ("e_conversions", "exposures"),
    "cvr": ("e_conversions", "e_clicks"),
    "revenue": ("e_limited_clicks", "exposures"),
}
USER_DESIGNS = ("user", "budget_split")
DESIGN_UNITS = {"user": "users", "budget_split": "users", "market": "markets",
                "switchback": "(market, block) periods", "item": "item clusters", "two_sided": "users x item clusters"}


def exposure_rows(clicked, converted, p_click, p_convert, limited=None) -> dict[str, np.ndarray]:
    """Per-exposure columns of the ratio metrics and of their expected values; ``limited``
    (whether each exposure's item is limited by the market) adds those of ``revenue``."""
    p = np.asarray(p_click, np.float64)
    clicks = np.asarray(clicked, np.float64)
    rows = {"exposures": np.ones(len(p)), "clicks": clicks,
            "conversions": np.asarray(converted, np.float64), "e_clicks": p,
            "e_conversions": p * np.asarray(p_convert, np.float64)}
    if limited is not None:
        lim = np.asarray(limited, np.float64)
        rows |= {"limited_clicks": clicks * lim, "e_limited_clicks": p * lim}
    return rows


def unit_sums(units: np.ndarray, rows: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the distinct units, each column summed per unit)."""
    ids, code = np.unique(units, return_inverse=True)
    return ids, {k: np.bincount(code, weights=v, minlength=len(ids)) for k, v in rows.items()}


def one_way(metric: str, units: np.ndarray, arm: np.ndarray, rows: Mapping[str, np.ndarray],
            alpha: float = 0.05, rel_method: RelMethod = DEFAULT_REL_METHOD, columns=RATIO_METRICS) -> Comparison:
    """Treatment (``arm`` 1) against control (``arm`` 0) of ``metric`` with the variance
    clustered by ``units`` (each unit in one arm; rows of neither arm are left out)."""
    num, den = columns[metric]
    sums = {}
    for a in (0, 1):
        sel = arm == a
        _, s = unit_sums(units[sel], {num: rows[num][sel], den: rows[den][sel]})
        sums[a] = s
    return ratio_comparison(sums[0][num], sums[0][den], sums[1][num], sums[1][den], alpha, rel_method)


def two_way_estimate(name: str, y: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> ArmEstimate:
    """R = Σy/Σx over rows with its variance clustered two ways, by ``a`` and by ``b``
    (Cameron, Gelbach & Miller 2011): V = V_a + V_b - V_ab, each V_g = G/(G-1) ·
    Σ_g (Σ_{r∈g} (y_r - R·x_r))² / (Σx)²; where V comes out negative, the larger one-way V.
    The estimate's ``n`` (its Welch df) is the smaller number of clusters."""
    if len(y) == 0 or x.sum() == 0:
        return ArmEstimate(name, math.nan, math.nan, 0, (f"{name} has no units",))
    R = float(y.sum() / x.sum())
    e = (y - R * x) / x.sum()

    def clustered(g: np.ndarray) -> tuple[float, int]:
        _, code = np.unique(g, return_inverse=True)
        G = int(code.max()) + 1
        s = np.bincount(code, weights=e, minlength=G)
        return (G / (G - 1) * float(s @ s) if G > 1 else math.nan), G

    va, ga = clustered(a)
    vb, gb = clustered(b)
    vab, _ = clustered(np.asarray(a, np.int64) * (int(np.max(b)) + 1) + np.asarray(b, np.int64))
    v = va + vb - vab
    if not v > 0:
        v = max(va, vb)
    n = min(ga, gb)
    return ArmEstimate(name, R, v * n, n)


def two_sided(metric: str, user_arm: np.ndarray, item_arm: np.ndarray, users: np.ndarray, items: np.ndarray,
              rows: Mapping[str, np.ndarray], alpha: float = 0.05, rel_method: RelMethod = DEFAULT_REL_METHOD,
              columns=RATIO_METRICS) -> Comparison:
    """The TSR comparison: the (treatment user, treatment item) cell against the (control user,
    control item) cell, variance clustered by user and by item cluster (:func:`two_way_estimate`)."""
    num, den = columns[metric]
    est = {}
    for a in (0, 1):
        sel = (user_arm == a) & (item_arm == a)
        est[a] = two_way_estimate("control" if a == 0 else "treatment", rows[num][sel], rows[den][sel],
                                  users[sel], items[sel])
    return compare(est[0], est[1], alpha, rel_method)


def expected_lift(metric: str, cell: np.ndarray, rows: Mapping[str, np.ndarray]) -> float | None:
    """The in-experiment truth: the relative lift of ``metric`` between the rows with ``cell``
    1 and 0 on the logged expected values."""
    num, den = EXPECTED[metric]
    vals = []
    for a in (0, 1):
        sel = cell == a
        d = rows[den][sel].sum()
        vals.append(rows[num][sel].sum() / d if d > 0 else math.nan)
    return None if not vals[0] > 0 or vals[1] != vals[1] else float(vals[1] / vals[0] - 1)


@dataclass(frozen=True)
class DesignMetric:
    """One metric under a design: the design's comparison, the GTE, the in-experiment truth."""

    comparison: Comparison
    gte_rel_lift: float | None
    in_experiment_rel_lift: float | None

    @property
    def covers_gte(self) -> bool | None:
        lo, hi = self.comparison.rel_ci
        if self.gte_rel_lift is None or lo != lo or hi != hi:
            return None
        return bool(lo <= self.gte_rel_lift <= hi)


@dataclass(frozen=True)
class DesignReport:
    """A design's analysis: its units per arm, their SRM, every ratio metric against the GTE."""

    kind: str
    units: dict[str, int]
    srm: SrmResult | None
    metrics: dict[str, DesignMetric]
    settings: dict
    market: dict

    def to_json_dict(self) -> dict:
        return {
            "design": self.kind,
            "settings": self.settings,
            "units": {"what": DESIGN_UNITS[self.kind], **self.units},
            "srm": None if self.srm is None else {"p_value": number(self.srm.p_value), "ok": self.srm.ok,
                                                   "observed": self.srm.observed, "flags": list(self.srm.flags)},
            "truth": {"kind": "global", "definition": GTE_DEFINITION, "beside": IN_EXPERIMENT_DEFINITION},
            "metrics": {m: {"rel_lift": number(d.comparison.rel_lift),
                            "rel_ci": [number(d.comparison.rel_ci[0]), number(d.comparison.rel_ci[1])],
                            "abs_lift": number(d.comparison.abs_lift),
                            "abs_ci": [number(d.comparison.abs_ci[0]), number(d.comparison.abs_ci[1])],
                            "p_value": number(d.comparison.p_value), "df": number(d.comparison.df),
                            "gte_rel_lift": number(d.gte_rel_lift),
                            "in_experiment_rel_lift": number(d.in_experiment_rel_lift),
                            "ci_covers_gte": d.covers_gte, "flags": list(d.comparison.flags)}
                        for m, d in self.metrics.items()},
            "market": self.market,
        }


GTE_DEFINITION = ("global treatment effect: the whole market with every user in treatment against the whole "
                  "market with every user in control, shared budgets and stock included (two global runs)")
IN_EXPERIMENT_DEFINITION = ("in-experiment truth: the same comparison on the expected values the world logged "
                            "with the experiment's own exposures (what the design's comparison targets)")


def srm_units(counts: Mapping[str, int], shares: Mapping[str, float]) -> SrmResult:
    """SRM over a design's units (markets, blocks, item clusters) against the design's shares."""
    return srm_test(counts, shares)


def markdown(report: DesignReport, control: str, treatment: str) -> list[str]:
    """report.md lines of the design's analysis beside the GTE and the in-experiment truth."""
    out = ["## Interference", "",
           f"Design **{report.kind}** (units: {DESIGN_UNITS[report.kind]}: "
           + ", ".join(f"{a} {n:,}" for a, n in report.units.items()) + ")."
           + ("" if report.srm is None else f" Units SRM p = {report.srm.p_value:.4g}"
              + (" (ok)." if report.srm.ok else " (**mismatch**)."))
           + f" Truth: {GTE_DEFINITION}; beside it the {IN_EXPERIMENT_DEFINITION}.", "",
           f"| metric | {treatment} vs {control} | CI | GTE | in-experiment truth | CI covers GTE |",
           "|---|---|---|---|---|---|"]

    def pct(v):
        return "n/a" if v is None or v != v else f"{100 * v:+.2f}%"

    for m, d in report.metrics.items():
        lo, hi = d.comparison.rel_ci
        cover = "n/a" if d.covers_gte is None else ("yes" if d.covers_gte else "**no**")
        out.append(f"| {m} | {pct(d.comparison.rel_lift)} | [{pct(lo)}, {pct(hi)}] | {pct(d.gte_rel_lift)} | "
                   f"{pct(d.in_experiment_rel_lift)} | {cover} |")
    if report.market:
        mk = report.market
        out += ["", f"Market: {mk.get('limited_items', 0):,} limited items per market; in the experiment "
                f"{100 * mk.get('sold_out_share', 0):.1f}% of (item, day, pool) sold out, "
                f"{mk.get('over_cap', 0):,} events past the last unit (charged: {mk.get('spent', 0):,})."]
    return out + [""]
