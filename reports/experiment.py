"""``simab analyze``: the campaign report's statistics on a real experiment's data.

Two inputs:

- a table of units or events (:func:`analyze_table`): one row per unit, or per event with a
  unit column (``unit``) whose rows are summed to one row per unit; metrics are
  ``NAME = Σnum / Σden`` over units (``den`` absent: the mean per unit), analysed at the unit
  with the delta method exactly as a campaign's per-user metrics are
  (``analysis.metric_report``: Welch intervals, CUPED with a per-unit covariate, the OLS
  cross-check, MDE, the multiple-testing family, and the always-valid sequential test over
  daily looks when a time column is given);
- per-arm summary statistics (:func:`analyze_summary`): count, mean and variance per arm, one
  row per look (the layout of the ASOS data set), compared the same way from the moments.

Data checks run first (``data_checks``).  A real experiment has no known truth: every
``true_rel_lift`` and ``ci_covers_truth`` is null and the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from simab.errors import SimabError
from simab.reports import messages
from simab.reports.aggregation import moments_by
from simab.reports.analysis import adjust_families, metric_report
from simab.reports.data_checks import DataCheck, check_rows, sample_ratio_check
from simab.reports.experiment_data import (
    MetricSpec,
    NumericColumn,
    day_index,
    key_codes,
    key_values,
    label_column,
    load_table,
    metric_specs,
    numeric_column,
    require_columns,
)
from simab.reports.json_numbers import json_safe, number
from simab.reports.metric_registry import MetricDef
from simab.reports.moments import Moments
from simab.reports.multiplicity import Correction
from simab.reports.report import ArmTraffic, Report
from simab.reports.srm import srm_test

#: the covariate column of a metric in the per-unit table (never clashes with a data column
#: used as a metric)
PRE = "pre:"
TRUTH = {
    "kind": "none",
    "definition": "a real experiment: no true lift is known, so true_rel_lift and "
    "ci_covers_truth are null",
}


@dataclass(frozen=True)
class ExperimentReport(Report):
    """A :class:`Report` of a real experiment: the same metrics and comparisons, with the
    data checks and a description of the data in place of the campaign's run."""

    data_checks: tuple[DataCheck, ...] = ()
    data: dict = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        base = super().to_json_dict()
        rows = self.data.get("rows_per_arm", {})
        shares = self.data.get("shares", {})
        out = {
            "schema": base["schema"],
            "kind": "experiment",
            "campaign": self.campaign,
            "seed": None,
            "alpha": self.alpha,
            "control": self.control,
            "correction": self.correction,
            "truth": dict(TRUTH),
            "data_checks": [c.to_json() for c in self.data_checks],
            "data": json_safe(self.data),
            "arms": {
                a: {"users": t.users, "rows": rows.get(a), "share": number(shares.get(a))}
                for a, t in self.arms.items()
            },
        }
        for key, value in base.items():
            if key not in out and key not in ("runtime", "integrity"):
                out[key] = value
        return out


def _check_alpha(alpha: float, correction: str) -> float:
    alpha = float(alpha)
    if not 0 < alpha < 1:
        raise SimabError(f"must be in (0, 1), got {alpha}", source="--alpha")
    if correction not in ("holm", "bh", "bonferroni", "none"):
        raise SimabError(
            f"unknown correction {correction!r}; allowed: holm, bh, bonferroni, none",
            source="--correction",
        )
    return alpha


def _shares(shares: Mapping[str, float] | Sequence[str] | None) -> dict[str, float] | None:
    """``{"arm": share}`` or ``["arm=share", ...]``; shares are normalised by their sum."""
    pairs = key_values(shares, "--share", "ARM=SHARE")
    if not pairs:
        return None
    try:
        shares = {a: float(v) for a, v in pairs.items()}
    except ValueError:
        raise SimabError(f"shares must be numbers, got {pairs}", source="--share") from None
    out = {str(a): float(s) for a, s in shares.items()}
    if any(not (s >= 0 and s == s and s != float("inf")) for s in out.values()) or sum(out.values()) <= 0:
        raise SimabError(f"shares must be finite, >= 0, with a positive sum; got {out}", source="--share")
    return out


def _arm_order(present: Sequence[str], control: str, stated: Sequence[str] | None, source: str,
               key: str) -> list[str]:
    """The arms of the report: the stated ones (in their order), else the control and then the
    others as sorted; the control must have rows and there must be a second arm."""
    present = sorted(set(present))
    if control not in present:
        shown = ", ".join(repr(a) for a in present[:12]) or "none"
        raise SimabError(
            f"unknown control value {control!r}: no analysable row has it; arm values: {shown}",
            source=source, key=key)
    arms = list(stated) if stated else [control, *[a for a in present if a != control]]
    if len([a for a in arms if a in present]) < 2:
        raise SimabError(
            f"only one arm ({control!r}) has analysable rows; a comparison needs at least two arms",
            source=source, key=key)
    return arms


def _aggregate(
    arm_code: np.ndarray, unit: np.ndarray | None, rows: np.ndarray,
    sums: Mapping[str, np.ndarray], means: Mapping[str, np.ndarray], arms: list[str],
) -> pa.Table:
    """One row per (arm, unit) of the rows in mask ``rows``: ``sums`` columns summed,
    ``means`` columns averaged; sorted by arm (in ``arms`` order), then unit."""
    idx = np.flatnonzero(rows)
    if unit is None:
        key = arm_code[idx] * (len(arm_code) + 1) + idx
    else:
        key = arm_code[idx] * (int(unit.max()) + 2) + unit[idx]
    groups, inverse = np.unique(key, return_inverse=True)
    first = idx[np.unique(inverse, return_index=True)[1]]  # the first row of each group
    counts = np.bincount(inverse, minlength=len(groups)).astype(np.float64)
    columns = {
        "arm": pa.array([arms[c] for c in arm_code[first]], pa.string()),
        "unit": pa.array(first if unit is None else unit[first], pa.int64()),
    }
    for name, v in sums.items():
        columns[name] = pa.array(np.bincount(inverse, weights=v[idx], minlength=len(groups)))
    for name, v in means.items():
        columns[name] = pa.array(np.bincount(inverse, weights=v[idx], minlength=len(groups)) / counts)
    return pa.table(columns)


def _arm_moments(totals: pa.Table, arms: list[str], columns: tuple[str, ...]) -> dict[str, Moments]:
    found = moments_by(totals, ["arm"], columns)
    return {a: found.get((a,), Moments.empty(columns)) for a in arms}


def _mdef(spec: MetricSpec) -> MetricDef:
    return MetricDef(
        spec.name, spec.definition, "user", "confirmatory", True, num=spec.num, den=spec.den,
        pre_num=None if spec.covariate is None else PRE + spec.covariate,
    )


def analyze_table(
    data,
    *,
    arm: str,
    control,
    metrics: str | Sequence[str] | Mapping[str, str],
    unit: str | None = None,
    covariates: Mapping[str, str] | Sequence[str] | None = None,
    time: str | None = None,
    alpha: float = 0.05,
    correction: Correction = "holm",
    shares: Mapping[str, float] | Sequence[str] | None = None,
    drop_invalid: bool = False,
    events: bool = False,
    name: str | None = None,
) -> ExperimentReport:
    """Analyse a table of units or events (module doc): every arm against ``control``."""
    table, source = load_table(data)
    alpha = _check_alpha(alpha, correction)
    specs = metric_specs(metrics, covariates)
    share_map = _shares(shares)
    control = str(control)
    require_columns(table, {"--arm": arm, "--unit": unit, "--time": time}, source)
    for s in specs:
        require_columns(table, {f"--metric {s.name}": s.num}, source)
        require_columns(table, {f"--metric {s.name}": s.den}, source)
        require_columns(table, {f"--covariate {s.name}": s.covariate}, source)
    used = list(dict.fromkeys(c for s in specs for c in s.columns))
    pre = list(dict.fromkeys(s.covariate for s in specs if s.covariate is not None))
    values: dict[str, NumericColumn] = {
        c: numeric_column(table, c, source) for c in dict.fromkeys([*used, *pre])
    }
    arm_labels = label_column(table, arm)
    units = key_codes(table, unit) if unit is not None else None
    days, time_missing = day_index(table, time, source) if time is not None else (None, None)
    stated = list(share_map) if share_map else None
    checked = check_rows(arm_labels, units, values, stated_arms=stated, events=events,
                         drop_invalid=drop_invalid, time_missing=time_missing)
    keep = checked.keep
    present = {a for a, k in zip(arm_labels, keep, strict=True) if k and a is not None}
    arms = _arm_order(present, control, stated, source, arm)
    code_of = {a: i for i, a in enumerate(arms)}
    arm_code = np.array([code_of.get(a, -1) for a in arm_labels], dtype=np.int64)
    keep = keep & (arm_code >= 0)

    sums = {c: values[c].values for c in used}
    totals = _aggregate(arm_code, units, keep, sums, {PRE + c: values[c].values for c in pre}, arms)
    all_columns = (*used, *(PRE + c for c in pre))
    by_arm = _arm_moments(totals, arms, all_columns)
    looks: list[tuple[int, dict[str, Moments]]] = []
    if days is not None:
        for day in range(int(days[keep].max()) + 1):
            through = keep & (days <= day)
            if through.any():
                cumulative = _aggregate(arm_code, units, through, sums, {}, arms)
                looks.append((day, _arm_moments(cumulative, arms, tuple(used))))
    treatments = [a for a in arms if a != control]
    reports = {}
    for s in specs:
        mdef = _mdef(s)
        columns = tuple(dict.fromkeys(c for c in (mdef.num, mdef.den, mdef.pre_num) if c))
        reports[s.name] = metric_report(
            mdef,
            {a: _select(m, columns) for a, m in by_arm.items()},
            control, treatments, alpha,
            looks=looks,
            totals=totals,
            no_truth=messages.NO_TRUTH_REAL,
        )
    metrics_out = adjust_families(reports, correction)
    users = {a: m.n for a, m in by_arm.items()}
    srm = srm_test(users, share_map or dict.fromkeys(arms, 1.0))
    rows_per_arm = {a: int(((arm_code == code_of[a]) & keep).sum()) for a in arms}
    checks = (*checked.checks, sample_ratio_check(srm, stated=share_map is not None))
    data_info = {
        "mode": "units" if unit is None else ("events" if events else "units by id"),
        "source": source,
        "rows": table.num_rows,
        "rows_analysed": int(keep.sum()),
        "units_analysed": int(sum(users.values())),
        "arm": arm,
        "unit": unit,
        "time": time,
        "metrics": {s.name: s.definition for s in specs},
        "covariates": {s.name: s.covariate for s in specs if s.covariate is not None},
        "drop_invalid": drop_invalid,
        "left_out": {"rows": checked.left_out_rows, "units": checked.left_out_units},
        "rows_per_arm": rows_per_arm,
        "shares": share_map or {a: 1 / len(arms) for a in arms},
        "looks": [day for day, _ in looks],
    }
    return _report(name or _name_of(source), alpha, control, correction, arms, users, srm,
                   metrics_out, tuple(day for day, _ in looks), checks, data_info)


def _select(m: Moments, columns: tuple[str, ...]) -> Moments:
    """``m`` restricted to ``columns`` (co-moments of a pair do not depend on the others)."""
    idx = [m.columns.index(c) for c in columns]
    return Moments(columns, m.n, m.centre[idx], m.comoments[np.ix_(idx, idx)])


def _name_of(source: str) -> str:
    return Path(source).stem if not source.startswith("<") else "experiment"


def _report(name, alpha, control, correction, arms, users, srm, metrics, looks, checks, data):
    return ExperimentReport(
        campaign=name,
        seed=None,
        alpha=alpha,
        control=control,
        correction=correction,
        arms={a: ArmTraffic(users[a], None, None, None, None) for a in arms},
        srm=srm,
        metrics=metrics,
        days=looks,
        runtime={},
        data_checks=tuple(checks),
        data=data,
    )


# ---------------------------------------------------------------- summary statistics


def wide_to_long(
    table: pa.Table, suffixes: Sequence[str], stats: Mapping[str, str], arm: str = "arm"
) -> pa.Table:
    """A wide summary table (columns ``count_c``, ``mean_c``, ``variance_c``, ``count_t``, ...:
    one column per statistic and arm suffix) as a long one with an ``arm`` column; the other
    columns (look, metric, ids) are repeated for each suffix."""
    names = {f"{stats[s]}_{x}" for s in ("count", "mean", "variance") for x in suffixes}
    missing = [c for c in sorted(names) if c not in table.column_names]
    if missing:
        raise SimabError(f"no column {missing[0]!r} (from --wide {','.join(suffixes)})", key="--wide")
    rest = [c for c in table.column_names if c not in names]
    parts = []
    for x in suffixes:
        cols = {c: table[c] for c in rest}
        cols[arm] = pa.array([x] * table.num_rows, pa.string())
        for s in ("count", "mean", "variance"):
            cols[stats[s]] = table[f"{stats[s]}_{x}"]
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)


def _where(table: pa.Table, where: Mapping[str, str] | Sequence[str] | None, source: str) -> pa.Table:
    where = key_values(where, "--where", "COLUMN=VALUE")
    if not where:
        return table
    mask = np.ones(table.num_rows, dtype=bool)
    for col, value in where.items():
        require_columns(table, {"--where": col}, source)
        mask &= label_column(table, col) == str(value)
    out = table.filter(pa.array(mask))
    if out.num_rows == 0:
        shown = ", ".join(f"{c}={v}" for c, v in where.items())
        raise SimabError(f"no row matches {shown}", source=source, key="--where")
    return out


def summary_moments(n: float, mean: float, variance: float) -> Moments:
    """Moments of one arm from its count, mean and (unbiased, n - 1) sample variance."""
    n = int(round(n))
    if n <= 0:
        return Moments.empty(("x",))
    return Moments(("x",), n, np.array([float(mean)]),
                   np.array([[float(variance) * (n - 1)]]))


def analyze_summary(
    data,
    *,
    control,
    arm: str = "arm",
    count: str = "count",
    mean: str = "mean",
    variance: str = "variance",
    metric: str | None = None,
    look: str | None = None,
    wide: Sequence[str] | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
    shares: Mapping[str, float] | Sequence[str] | None = None,
    alpha: float = 0.05,
    correction: Correction = "holm",
    name: str | None = None,
    metric_name: str = "metric",
) -> ExperimentReport:
    """Compare arms from per-arm count / mean / variance rows (one row per arm, metric and
    look); the last look gives the fixed-horizon comparison and every look feeds the
    sequential test.  ``wide``: the arms' statistics are columns ``<stat>_<suffix>`` (the
    first suffix names the control unless ``control`` is another suffix)."""
    table, source = load_table(data)
    alpha = _check_alpha(alpha, correction)
    share_map = _shares(shares)
    control = str(control)
    table = _where(table, where, source)
    stats = {"count": count, "mean": mean, "variance": variance}
    if wide:
        table = wide_to_long(table, [str(w) for w in wide], stats, arm=arm)
    require_columns(table, {"--arm": arm, "--stats count": count, "--stats mean": mean,
                            "--stats variance": variance, "--metric-column": metric,
                            "--time": look}, source)
    values = {c: numeric_column(table, c, source) for c in (count, mean, variance)}
    arm_labels = label_column(table, arm)
    stated = list(share_map) if share_map else None
    checked = check_rows(arm_labels, None, values, stated_arms=stated, events=False,
                         drop_invalid=False)
    n, mu, var = (values[c].values for c in (count, mean, variance))
    invalid = checked.keep & ((n < 0) | (var < 0) | (n != np.round(n)))
    keep = checked.keep & ~invalid
    checks = list(checked.checks[:3])
    checks.append(
        DataCheck("summary_values", False,
                  f"{int(invalid.sum()):,} rows have a negative or fractional count or a negative "
                  "variance; left out", int(invalid.sum()), int(invalid.sum()))
        if invalid.any() else
        DataCheck("summary_values", True, "counts are whole numbers >= 0, variances >= 0"))
    present = {a for a, k in zip(arm_labels, keep, strict=True) if k and a is not None}
    arms = _arm_order(present, control, stated, source, arm)
    metric_values = label_column(table, metric) if metric is not None else np.full(
        table.num_rows, metric_name, dtype=object)
    look_values = (numeric_column(table, look, source).values if look is not None
                   else np.zeros(table.num_rows))
    keep &= np.isfinite(look_values) & np.array([m is not None for m in metric_values])
    cells: dict[tuple[str, float, str], int] = {}
    for i in np.flatnonzero(keep):
        key = (metric_values[i], float(look_values[i]), arm_labels[i])
        if arm_labels[i] not in arms:
            continue
        if key in cells:
            raise SimabError(
                f"two rows for arm {key[2]!r}, metric {key[0]!r}, look {key[1]:g}; one row per "
                "arm, metric and look is allowed (--where selects one experiment)",
                source=source)
        cells[key] = int(i)
    treatments = [a for a in arms if a != control]
    reports, look_times, users = {}, {}, {}
    for m in sorted({k[0] for k in cells}, key=_natural):
        times = sorted({k[1] for k in cells if k[0] == m})
        per_look = []
        for t in times:
            per_look.append({a: (summary_moments(n[cells[(m, t, a)]], mu[cells[(m, t, a)]],
                                                 var[cells[(m, t, a)]])
                                 if (m, t, a) in cells else Moments.empty(("x",)))
                             for a in arms})
        label = m if metric is None else f"{metric}_{m}" if not str(m)[:1].isalpha() else str(m)
        mdef = MetricDef(label, "mean per unit (summary statistics)", "user", "confirmatory", True,
                         num="x")
        reports[label] = metric_report(
            mdef, per_look[-1], control, treatments, alpha,
            looks=list(enumerate(per_look)) if look is not None else (),
            no_truth=messages.NO_TRUTH_REAL,
        )
        look_times[label] = times
        if not users:
            users = {a: per_look[-1][a].n for a in arms}
    if not reports:
        raise SimabError("no analysable row (see the data checks: missing or invalid values)",
                         source=source)
    metrics_out = adjust_families(reports, correction)
    srm = srm_test(users, share_map or dict.fromkeys(arms, 1.0))
    checks.append(sample_ratio_check(srm, stated=share_map is not None))
    first = next(iter(reports))
    data_info = {
        "mode": "summary statistics",
        "source": source,
        "rows": table.num_rows,
        "rows_analysed": len(cells),
        "units_analysed": int(sum(users.values())),
        "arm": arm,
        "stats": stats,
        "metric_column": metric,
        "look": look,
        "where": dict(where) if isinstance(where, Mapping) else list(where or []),
        "look_times": look_times,
        "srm_from": f"units per arm at the last look of {first}",
        "rows_per_arm": {a: int(sum(1 for k in cells if k[2] == a)) for a in arms},
        "shares": share_map or {a: 1 / len(arms) for a in arms},
    }
    n_looks = max((len(v) for v in look_times.values()), default=0)
    return _report(name or _name_of(source), alpha, control, correction, arms, users, srm,
                   metrics_out, tuple(range(n_looks)) if look else (), checks, data_info)


def _natural(x: str) -> tuple:
    return (0, float(x), x) if _is_number(x) else (1, 0.0, x)


def _is_number(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


__all__ = [
    "ExperimentReport",
    "analyze_summary",
    "analyze_table",
    "summary_moments",
    "wide_to_long",
]
