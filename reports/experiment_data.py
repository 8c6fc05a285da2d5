"""The input of ``simab analyze``: a real experiment's table, read and typed.

A table (Parquet or CSV file, pyarrow Table, pandas DataFrame) holds one row per unit, or
one row per event of a unit named by a unit column.  This module reads it, checks that the
named columns exist, and turns each metric column into float64 with every value that is not
a number marked: booleans (``True``/``False``, in CSV also ``TRUE``/``true``/...) become 1/0,
integer counts and sums stay what they are, numeric strings are parsed, and empty, ``NA`` or
``null`` values are *missing* while other strings are *non-numeric*.  A text column whose
values are mostly not numbers is not a metric (an error).  The data checks
(``data_checks``) report both; nothing is silently zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simab.errors import SimabError

#: strings read as a missing value (case-insensitive, after stripping blanks)
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none"})
TRUE_TEXT = frozenset({"true"})
FALSE_TEXT = frozenset({"false"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class MetricSpec:
    """``name`` = Σnum / Σden over units (``den=None``: the mean of ``num`` per unit), with an
    optional CUPED covariate ``covariate`` (a per-unit column of pre-experiment data)."""

    name: str
    num: str
    den: str | None = None
    covariate: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.num, self.den) if c is not None)

    @property
    def definition(self) -> str:
        return self.num if self.den is None else f"{self.num}/{self.den}"


def parse_metric(text: str, source: str = "--metric") -> MetricSpec:
    """``NAME=NUM`` or ``NAME=NUM/DEN`` (a bare ``NUM`` names the metric after its column)."""
    name, sep, expr = text.partition("=")
    if not sep:
        name, expr = text, text
    name, expr = name.strip(), expr.strip()
    num, slash, den = expr.partition("/")
    num, den = num.strip(), den.strip()
    if not name or not num or (slash and not den):
        raise SimabError(
            f"expected NAME=COLUMN or NAME=NUMERATOR/DENOMINATOR, got {text!r}", source=source
        )
    if not _NAME.match(name):
        raise SimabError(
            f"metric name {name!r}: use letters, digits, '_', '.', '-' (starting with a letter)",
            source=source,
        )
    return MetricSpec(name, num, den or None)


def key_values(items: Mapping | Sequence[str] | None, source: str, form: str) -> dict[str, str]:
    """``{"key": "value"}`` from a mapping or from ``["key=value", ...]`` (flags such as
    ``--share ARM=S``); a malformed item is an error naming ``source`` and the ``form``."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in items.items()}
    out = {}
    for text in items:
        key, sep, value = str(text).partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SimabError(f"expected {form}, got {text!r}", source=source)
        out[key.strip()] = value.strip()
    return out


def metric_specs(
    metrics: str | Sequence[str] | Mapping[str, str],
    covariates: Mapping[str, str] | Sequence[str] | None = None,
) -> list[MetricSpec]:
    """Metric specs from ``{"name": "num[/den]"}`` or ``["name=num[/den]", ...]``, with
    covariates from ``{"metric": "column"}`` or ``["metric=column", ...]``."""
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        specs = [parse_metric(f"{k}={v}") for k, v in metrics.items()]
    else:
        specs = [parse_metric(m) for m in metrics]
    if not specs:
        raise SimabError("at least one metric is needed (--metric NAME=NUM[/DEN])", source="--metric")
    names = [s.name for s in specs]
    for n in names:
        if names.count(n) > 1:
            raise SimabError(f"metric {n!r} is given twice", source="--metric")
    covariates = key_values(covariates, "--covariate", "METRIC=COLUMN")
    if covariates:
        by_name = {s.name: s for s in specs}
        for metric, column in covariates.items():
            if metric not in by_name:
                raise SimabError(
                    f"covariate for unknown metric {metric!r}; metrics: {', '.join(names)}",
                    source="--covariate",
                )
            s = by_name[metric]
            by_name[metric] = MetricSpec(s.name, s.num, s.den, column)
        specs = [by_name[n] for n in names]
    return specs


def _read_file(path: Path) -> pa.Table:
    if not path.exists():
        raise SimabError("no such file", source=str(path))
    if path.is_dir():
        raise SimabError("is a folder; expected a Parquet or CSV file", source=str(path))
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix in (".csv", ".tsv", ".txt") or suffix == ".gz" and path.stem.endswith(".csv"):
            import pyarrow.csv as pacsv

            delimiter = "\t" if suffix == ".tsv" else ","
            return pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    true_values=["TRUE", "True", "true"], false_values=["FALSE", "False", "false"]
                ),
            )
    except (pa.ArrowException, OSError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SimabError(f"unreadable: {text}", source=str(path)) from None
    raise SimabError(
        f"unknown file type {suffix or '(none)'!r}; allowed: .parquet, .pq, .csv, .tsv",
        source=str(path),
    )


def load_table(data) -> tuple[pa.Table, str]:
    """(Arrow table, a label naming where it came from) from a path, an Arrow table or a
    pandas DataFrame; an empty table is an error."""
    if isinstance(data, str | Path):
        source = str(data)
        table = _read_file(Path(data))
    elif isinstance(data, pa.Table):
        source, table = "<table>", data
    elif hasattr(data, "to_parquet") and hasattr(data, "columns"):  # pandas DataFrame
        source = "<DataFrame>"
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise SimabError(f"cannot convert the DataFrame: {exc}", source=source) from None
    else:
        raise SimabError(
            f"expected a file path, a pyarrow Table or a pandas DataFrame, got {type(data).__name__}",
            source="data",
        )
    if table.num_rows == 0:
        raise SimabError("the table has no rows", source=source)
    return table, source


def require_columns(table: pa.Table, columns: Mapping[str, str | None], source: str) -> None:
    """Every named column exists; ``columns`` maps a flag (``--arm``) to the column it names."""
    have = table.column_names
    for flag, column in columns.items():
        if column is not None and column not in have:
            listed = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "")
            raise SimabError(f"no column {column!r} (named by {flag}); columns: {listed}", source=source)


@dataclass(frozen=True)
class NumericColumn:
    """A column as float64 (NaN where not a number) and which rows were missing or non-numeric."""

    values: np.ndarray
    missing: np.ndarray  # bool per row
    non_numeric: np.ndarray  # bool per row
    examples: tuple[str, ...] = ()  # a few non-numeric values, for the check's detail


def _text_to_numbers(text: pa.Array) -> NumericColumn:
    raw = text.to_pylist()
    n = len(raw)
    values = np.full(n, np.nan)
    missing = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    examples: list[str] = []
    for i, v in enumerate(raw):
        if v is None:
            missing[i] = True
            continue
        s = v.strip().lower()
        if s in MISSING_TEXT:
            missing[i] = True
        elif s in TRUE_TEXT:
            values[i] = 1.0
        elif s in FALSE_TEXT:
            values[i] = 0.0
        else:
            try:
                x = float(s)
            except ValueError:
                x = math.nan
            if math.isfinite(x):
                values[i] = x
            else:
                bad[i] = True
                if len(examples) < 3 and v not in examples:
                    examples.append(v)
    return NumericColumn(values, missing, bad, tuple(examples))


def numeric_column(table: pa.Table, column: str, source: str) -> NumericColumn:
    """``column`` as numbers (module doc); a column with no number in it at all is an error."""
    col = table[column].combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    typ = col.type
    if pa.types.is_null(typ):
        n = len(col)
        return NumericColumn(np.full(n, np.nan), np.ones(n, dtype=bool), np.zeros(n, dtype=bool))
    if pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ) \
            or pa.types.is_decimal(typ):
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        values = np.where(np.asarray(col.is_null()), np.nan, values)
        missing = np.isnan(values)
        bad = np.isinf(values)
        values[bad] = np.nan
        return NumericColumn(values, missing, bad, ("inf",) if bad.any() else ())
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        out = _text_to_numbers(col)
        # a column of numbers with a few bad values is a data problem (the checks say so);
        # a column that is mostly text is not a metric
        if out.non_numeric.sum() * 2 > (~out.missing).sum():
            raise SimabError(
                f"not numeric: values such as {', '.join(repr(e) for e in out.examples)}; a metric "
                "column holds numbers, counts or booleans (TRUE/FALSE, true/false, 0/1)",
                source=source,
                key=column,
            )
        return out
    raise SimabError(
        f"not numeric: type {typ}; a metric column holds numbers, counts or booleans",
        source=source,
        key=column,
    )


def label_column(table: pa.Table, column: str) -> np.ndarray:
    """A column of labels (arm values) as Python strings, None where null."""
    col = table[column].combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_floating(col.type):
        # 0.0 / 1.0 read from CSV name the same arms as 0 / 1
        return np.array(
            [None if v is None else (str(int(v)) if float(v).is_integer() else str(v))
             for v in col.to_pylist()],
            dtype=object,
        )
    return np.array([None if v is None else str(v) for v in col.to_pylist()], dtype=object)


def key_codes(table: pa.Table, column: str) -> np.ndarray:
    """Integer code per row for the values of ``column`` (-1 where null), in first-seen order."""
    encoded = pc.dictionary_encode(table[column].combine_chunks())
    if isinstance(encoded, pa.DictionaryArray):
        idx = encoded.indices
    else:
        idx = encoded.combine_chunks().indices
    return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


SECONDS_PER_DAY = 86_400.0


def day_index(table: pa.Table, column: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(whole days since the first time, missing mask): timestamps and dates count days of
    24 h from the earliest; numbers are read as days."""
    col = table[column].combine_chunks()
    typ = col.type
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        seconds = pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64()).to_numpy(
            zero_copy_only=False
        )
        null = np.asarray(col.is_null())
        t = np.where(null, np.nan, np.asarray(seconds, dtype=np.float64) / 1e6 / SECONDS_PER_DAY)
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
        t = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
        t = np.where(np.asarray(col.is_null()), np.nan, t)
    else:
        raise SimabError(
            f"not a time: type {typ}; --time needs timestamps, dates or numbers (days)",
            source=source,
            key=column,
        )
    missing = ~np.isfinite(t)
    if missing.all():
        raise SimabError("the time column has no value", source=source, key=column)
    t0 = np.nanmin(t)
    days = np.where(missing, -1, np.floor(np.where(missing, t0, t) - t0)).astype(np.int64)
    return days, missing
