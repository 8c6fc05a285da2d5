"""Data checks of a real experiment's table, run before any lift is computed.

Each check is ``{check, ok, detail}`` (``ok`` is None when the check cannot run, e.g. no unit
column to find units in two arms).  Rows that cannot be analysed at all (an arm value outside
the stated arms, a missing or non-numeric metric value, a missing unit id or time) are always
left out, and the check says so; ``drop_invalid`` also drops every row of each unit that
fails a check (a unit in more than one arm, a unit with several rows where one is expected,
a unit with any unusable row), and the analysis reports how many units and rows went.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from simab.reports.experiment_data import NumericColumn
from simab.reports.srm import SRM_THRESHOLD, SrmResult

#: the order checks are listed in report.json and at the top of report.md / report.html
CHECKS = (
    "arm_values",
    "missing_values",
    "non_numeric_values",
    "units_in_several_arms",
    "duplicated_units",
    "sample_ratio",
)


@dataclass(frozen=True)
class DataCheck:
    check: str
    ok: bool | None
    detail: str
    rows: int = 0  # rows the problem touches
    units: int = 0  # units the problem touches (rows when each row is a unit)

    def to_json(self) -> dict:
        return {"check": self.check, "ok": self.ok, "detail": self.detail,
                "rows": self.rows, "units": self.units}


@dataclass(frozen=True)
class CheckedRows:
    """The checks, and which rows the analysis keeps."""

    checks: list[DataCheck]
    keep: np.ndarray  # bool per row
    left_out_units: int  # units with a row left out (all their rows under drop_invalid)
    left_out_rows: int  # rows left out: the unusable ones, and under drop_invalid every
    # row of a unit that failed a check


def _n(x: int) -> str:
    return f"{x:,}"


def _units_of(rows: np.ndarray, unit: np.ndarray | None) -> int:
    """Distinct units among the rows of mask ``rows`` (rows themselves without a unit column)."""
    if unit is None:
        return int(rows.sum())
    return int(np.unique(unit[rows & (unit >= 0)]).size + (rows & (unit < 0)).any())


def check_rows(
    arms: np.ndarray,
    unit: np.ndarray | None,
    values: Mapping[str, NumericColumn],
    *,
    stated_arms: Sequence[str] | None,
    events: bool,
    drop_invalid: bool,
    time_missing: np.ndarray | None = None,
) -> CheckedRows:
    """Run the row checks (every check but the sample ratio, which needs the kept units)."""
    n = len(arms)
    checks = []
    # arm values: null, or outside the stated arms
    null_arm = np.array([a is None for a in arms], dtype=bool)
    unknown = null_arm.copy()
    if stated_arms is not None:
        stated = set(stated_arms)
        unknown |= np.array([a is not None and a not in stated for a in arms], dtype=bool)
    if unknown.any():
        counts = Counter("null" if a is None else repr(a) for a in arms[unknown])
        listed = ", ".join(f"{k} ({_n(v)})" for k, v in counts.most_common(5))
        allowed = f" outside the stated arms ({', '.join(stated_arms)})" if stated_arms else " null"
        checks.append(DataCheck(
            "arm_values", False,
            f"{_n(int(unknown.sum()))} rows have an arm value{allowed}: {listed}; left out",
            int(unknown.sum()), _units_of(unknown, unit)))
    else:
        arms_seen = sorted({a for a in arms if a is not None})
        checks.append(DataCheck("arm_values", True, f"every row is in an arm: {', '.join(arms_seen)}"))
    # missing and non-numeric values of the metric and covariate columns (and unit id, time)
    missing = np.zeros(n, dtype=bool)
    parts = []
    for column, col in values.items():
        if col.missing.any():
            parts.append(f"{column}: {_n(int(col.missing.sum()))}")
            missing |= col.missing
    if unit is not None and (unit < 0).any():
        parts.append(f"unit id: {_n(int((unit < 0).sum()))}")
        missing |= unit < 0
    if time_missing is not None and time_missing.any():
        parts.append(f"time: {_n(int(time_missing.sum()))}")
        missing |= time_missing
    checks.append(
        DataCheck("missing_values", False,
                  f"{_n(int(missing.sum()))} rows have a missing value ({'; '.join(parts)}); left out",
                  int(missing.sum()), _units_of(missing, unit))
        if missing.any()
        else DataCheck("missing_values", True, f"no missing value in {', '.join(values)}")
    )
    bad = np.zeros(n, dtype=bool)
    parts = []
    for column, col in values.items():
        if col.non_numeric.any():
            shown = ", ".join(repr(e) for e in col.examples)
            parts.append(f"{column}: {_n(int(col.non_numeric.sum()))} (e.g. {shown})")
            bad |= col.non_numeric
    checks.append(
        DataCheck("non_numeric_values", False,
                  f"{_n(int(bad.sum()))} rows have a value that is not a number ({'; '.join(parts)}); "
                  "left out", int(bad.sum()), _units_of(bad, unit))
        if bad.any()
        else DataCheck("non_numeric_values", True, "every value is a number or a boolean")
    )
    unusable = unknown | missing | bad
    offending = unusable.copy()
    if unit is None:
        for name in ("units_in_several_arms", "duplicated_units"):
            checks.append(DataCheck(name, None, "not checked: no unit column (--unit), each row is a unit"))
    else:
        valid = unit >= 0
        arm_codes = {a: i for i, a in enumerate(sorted({a for a in arms if a is not None}))}
        arm_code = np.array([arm_codes.get(a, -1) for a in arms], dtype=np.int64)
        usable = valid & (arm_code >= 0)
        pairs = np.unique(np.stack([unit[usable], arm_code[usable]]), axis=1)
        arms_per_unit = np.bincount(pairs[0], minlength=int(unit.max()) + 1)
        several = np.zeros(n, dtype=bool)
        several[usable] = arms_per_unit[unit[usable]] > 1
        n_units = int((arms_per_unit > 1).sum())
        how = "dropped (--drop-invalid)" if drop_invalid else (
            "each counts in every arm it appears in; --drop-invalid drops them")
        checks.append(
            DataCheck("units_in_several_arms", False,
                      f"{_n(n_units)} units have rows in more than one arm ({_n(int(several.sum()))} "
                      f"rows): {how}", int(several.sum()), n_units)
            if n_units
            else DataCheck("units_in_several_arms", True, "every unit is in one arm")
        )
        offending |= several
        rows_per_unit = np.bincount(unit[valid], minlength=int(unit.max()) + 1)
        repeated = np.zeros(n, dtype=bool)
        repeated[valid] = rows_per_unit[unit[valid]] > 1
        n_rep = int((rows_per_unit > 1).sum())
        if events:
            units = int((rows_per_unit > 0).sum())
            checks.append(DataCheck(
                "duplicated_units", True,
                f"rows are events (--events): {_n(int(valid.sum()))} rows over {_n(units)} units, "
                f"summed per unit ({_n(n_rep)} units have more than one row)"))
        else:
            how = "dropped (--drop-invalid)" if drop_invalid else (
                "their rows are summed; --drop-invalid drops them, --events says rows are events")
            checks.append(
                DataCheck("duplicated_units", False,
                          f"{_n(n_rep)} units have more than one row ({_n(int(repeated.sum()))} rows; "
                          f"at most {int(rows_per_unit.max())} per unit): {how}",
                          int(repeated.sum()), n_rep)
                if n_rep
                else DataCheck("duplicated_units", True, "one row per unit")
            )
            offending |= repeated
        if drop_invalid:  # a unit with any unusable row goes whole
            bad_units = np.unique(unit[offending & valid])
            offending |= valid & np.isin(unit, bad_units)
    keep = ~offending if drop_invalid else ~unusable
    return CheckedRows(checks, keep, _units_of(~keep, unit), int((~keep).sum()))


def sample_ratio_check(srm: SrmResult, stated: bool) -> DataCheck:
    """The sample-ratio check of the kept units against the stated (or equal) shares."""
    shares = "the stated shares" if stated else "equal shares"
    observed = ", ".join(f"{a} {_n(n)}" for a, n in srm.observed.items())
    expected = ", ".join(f"{a} {e:,.0f}" for a, e in srm.expected.items())
    if srm.flags and srm.ok:  # not testable
        return DataCheck("sample_ratio", None, f"not testable: {srm.flags[0]}")
    verdict = "ok" if srm.ok else f"SAMPLE RATIO MISMATCH (p < {SRM_THRESHOLD})"
    return DataCheck(
        "sample_ratio", srm.ok,
        f"units {observed}; expected from {shares} {expected}; chi-square p = {srm.p_value:.3g}: "
        f"{verdict}",
    )
