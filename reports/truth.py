"""The world's truth beside the estimates: true values, true lifts, coverage."""

from __future__ import annotations

import math

import pyarrow as pa


def true_values(truth: pa.Table | None) -> dict[tuple[str, str], float]:
    """(arm, metric) -> expected value; ``counterfactual`` rows win over ``oracle`` rows, and
    ``global`` rows (the whole market under each arm, written under interference) over both."""
    if truth is None:
        return {}
    out: dict[tuple[str, str], float] = {}
    rows = truth.to_pylist()
    for source in ("oracle", "counterfactual", "global"):
        for row in rows:
            if row["source"] == source and row["value"] is not None and math.isfinite(row["value"]):
                out[(row["arm"], row["metric"])] = float(row["value"])
    return out


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
