"""The world's truth beside the estimates: which truth a run has, true values, true lifts,
coverage.

Two kinds of truth rows can be in ``truth.parquet`` (column ``source``):

- ``counterfactual``: each arm's expected metric values over *all* the campaign's users had
  every one of them been in that arm (paired worlds with common random numbers).  The true
  lift is a population quantity, fixed before randomisation: the estimand of the A/B
  test, and the only truth the report's ``true_rel_lift`` and ``ci_covers_truth`` use.
- ``global`` (runs with interference): each arm's expected values had the whole market,
  shared budgets and stock included, been under that arm (two global runs); the global
  treatment effect wins over the counterfactual rows where present.
- ``oracle``: each arm's expected values from the true probabilities on the exposures of
  that arm's *own* users.  This is a *realised-group* quantity: it moves with which users
  the randomisation put in each arm (its lift has the sampling spread of the estimate), so
  it is reported as ``realised_group_value`` / ``realised_group_rel_lift`` and never
  decides coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa

COUNTERFACTUAL = "counterfactual"
GLOBAL = "global"  # the whole market under each arm (runs with interference, docs/interference.md)
REALISED = "oracle"  # the truth.parquet source name of the realised-group rows

DEFINITIONS = {
    "counterfactual": (
        "true lift = the lift over all of the campaign's users had every one of them been in each "
        "arm (paired counterfactual worlds, common random numbers); a fixed population quantity, "
        "the estimand of the test"
    ),
    "global": (
        "true lift = the global treatment effect: the lift had the whole market (its shared budgets "
        "and stock included) been under each arm, from two global runs; the estimand interference "
        "biases, a fixed quantity"
    ),
    "realised-group": (
        "no counterfactual truth in this run: only each arm's expected values on its own users' "
        "exposures (a realised-group quantity that moves with the randomisation), so no CI is "
        "judged against it"
    ),
    "none": "no truth table: true values unknown",
}


@dataclass(frozen=True)
class TruthInfo:
    """Which truth a report uses: ``kind`` (global, counterfactual, realised-group, none) and the
    one-sentence ``definition`` report.json/md/html print."""

    kind: str
    definition: str


def _rows(truth: pa.Table | None, source: str) -> dict[tuple[str, str], float]:
    if truth is None:
        return {}
    out: dict[tuple[str, str], float] = {}
    for row in truth.to_pylist():
        if row["source"] == source and row["value"] is not None and math.isfinite(row["value"]):
            out[(row["arm"], row["metric"])] = float(row["value"])
    return out


def true_values(truth: pa.Table | None) -> dict[tuple[str, str], float]:
    """(arm, metric) -> the expected value coverage is judged on: ``global`` rows (the whole
    market under each arm, written under interference) where the run has them, else the
    ``counterfactual`` rows."""
    return _rows(truth, GLOBAL) or _rows(truth, COUNTERFACTUAL)


def realised_values(truth: pa.Table | None) -> dict[tuple[str, str], float]:
    """(arm, metric) -> the realised-group expected value (never used for coverage)."""
    return _rows(truth, REALISED)


def truth_info(truth: pa.Table | None) -> TruthInfo:
    """The kind of truth a run's table holds."""
    if _rows(truth, GLOBAL):
        kind = "global"
    elif _rows(truth, COUNTERFACTUAL):
        kind = "counterfactual"
    elif realised_values(truth):
        kind = "realised-group"
    else:
        kind = "none"
    return TruthInfo(kind, DEFINITIONS[kind])


def true_rel_lift(control: float | None, treatment: float | None) -> float | None:
    """value_t / value_c - 1, or None when either is unknown or the control is zero."""
    if control is None or treatment is None or control == 0:
        return None
    return treatment / control - 1


def covers(interval: tuple[float, float], value: float | None) -> bool | None:
    """Whether lo <= value <= hi; None when the value or the interval is undefined."""
    lo, hi = interval
    if value is None or lo != lo or hi != hi:
        return None
    return bool(lo <= value <= hi)
