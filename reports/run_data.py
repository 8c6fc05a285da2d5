"""Reading a run folder (the campaign runner's output contract) into Arrow tables.

Only the columns the statistics need are read; the exposure log is reduced once, with
pyarrow compute, to one row per (arm, user, day, scenario) — every later aggregate
(per user, per scenario, per day, cumulative to a day) is a re-grouping of that table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from simab.errors import SimabError

EXPOSURE_COLUMNS = ["arm", "user", "day", "scenario", "clicked", "converted", "dwell_s", "conversion_ts"]
SECONDS_PER_DAY = 86_400.0  # the event log's ``day`` is floor(ts / one day)
COUNT_COLUMNS = ("exposures", "clicks", "conversions", "dwell_s")
COVARIATE_COLUMNS = ("pre_exposures", "pre_clicks", "pre_conversions", "pre_dwell_s")


@dataclass(frozen=True)
class RunData:
    """The parts of a run folder the report reads."""

    run_dir: Path
    info: dict
    cells: pa.Table  # arm, user, day, scenario, exposures, clicks, conversions, dwell_s
    requests: pa.Table  # arm, user, day, latency_ms
    assignments: pa.Table  # arm, user (and bucket where the run recorded it)
    truth: pa.Table | None  # arm, metric, value, source
    covariates: pa.Table | None  # user, pre_*
    #: conversions that landed on a later day than their exposure: arm, user, day (of the
    #: exposure), conversion_day, conversions; a daily look counts only those landed by then
    late_conversions: pa.Table | None = None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SimabError("no run.json here: not a run folder", source=str(path.parent)) from None
    except json.JSONDecodeError as exc:
        raise SimabError(f"invalid JSON ({exc.msg}, line {exc.lineno})", source=str(path)) from None


def _read_folder(path: Path, columns: list[str] | None, required: bool = True) -> pa.Table | None:
    """A table file, or a table folder's parts (``shard-*.parquet`` only, in shard order: a
    folder's other files are no part of the run; ``simab report`` refuses them first)."""
    if not path.exists():
        if required:
            raise SimabError(f"missing {path.name} in the run folder", source=str(path.parent))
        return None
    source = sorted(str(p) for p in path.glob("shard-*.parquet")) if path.is_dir() else str(path)
    if not source:
        raise SimabError("holds no parts", source=str(path))
    try:
        # the parts' dictionary columns (arm, scenario) each have their own dictionary
        return ds.dataset(source, format="parquet").to_table(columns=columns).unify_dictionaries()
    except (pa.ArrowInvalid, KeyError, OSError) as exc:
        raise SimabError(f"unreadable or wrong columns: {str(exc)[:120]}", source=str(path)) from None


def decode_dictionaries(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns as plain values.  The event log's categorical
    columns are dictionaries, one per part; Arrow neither sorts dictionary columns nor joins
    or groups them when their dictionaries differ, and orders groups differently for them."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, pa.field(f.name, f.type.value_type, f.nullable, f.metadata),
                                     table.column(i).cast(f.type.value_type))
    return table


def reduce_exposures(exposures: pa.Table) -> pa.Table:
    """One row per (arm, user, day, scenario): exposure count and sums of clicks, conversions,
    dwell; arm and scenario as plain strings (the tables the report joins)."""
    # grouped on plain strings: Acero orders the groups differently for dictionary keys, and
    # the cells' order decides the float sums of every later aggregate
    exposures = decode_dictionaries(exposures)
    table = exposures.append_column(
        "clicks", pc.cast(exposures["clicked"], pa.int64())
    ).append_column("conversions", pc.cast(exposures["converted"], pa.int64()))
    # single-threaded: a threaded group_by gives no row order, and row order decides float sums
    grouped = table.group_by(["arm", "user", "day", "scenario"], use_threads=False).aggregate(
        [("clicks", "count"), ("clicks", "sum"), ("conversions", "sum"), ("dwell_s", "sum")]
    )
    names = {"clicks_count": "exposures", "clicks_sum": "clicks"}
    names |= {"conversions_sum": "conversions", "dwell_s_sum": "dwell_s"}
    grouped = grouped.rename_columns([names.get(c, c) for c in grouped.column_names])
    return grouped.select(["arm", "user", "day", "scenario", *COUNT_COLUMNS])


def late_conversions(exposures: pa.Table) -> pa.Table:
    """Conversions landing on a later day than their exposure, per (arm, user, day,
    conversion_day): what a look at the end of ``day`` has not seen yet."""
    if "conversion_ts" not in exposures.column_names:
        return pa.table({"arm": pa.array([], pa.string()), "user": pa.array([], pa.int64()),
                         "day": pa.array([], pa.int64()), "conversion_day": pa.array([], pa.int64()),
                         "conversions": pa.array([], pa.int64())})
    exposures = decode_dictionaries(exposures.filter(pc.fill_null(exposures["converted"], False)))
    conv_day = pc.cast(pc.floor(pc.divide(exposures["conversion_ts"], SECONDS_PER_DAY)), pa.int64())
    day = pc.cast(exposures["day"], pa.int64())
    t = pa.table({"arm": exposures["arm"], "user": exposures["user"], "day": day,
                  "conversion_day": conv_day}).filter(pc.greater(conv_day, day))
    grouped = t.group_by(["arm", "user", "day", "conversion_day"], use_threads=False).aggregate([("user", "count")])
    return grouped.rename_columns([*grouped.column_names[:-1], "conversions"]).select(
        ["arm", "user", "day", "conversion_day", "conversions"])


def read_run(run_dir: str | Path) -> RunData:
    """Read and reduce a run folder; contract violations are SimabErrors naming the file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SimabError("run folder does not exist", source=str(run_dir))
    info = _read_json(run_dir / "run.json")
    for key in ("campaign", "seed", "alpha", "control", "arms"):
        if key not in info:
            raise SimabError("required key is missing", source=str(run_dir / "run.json"), key=key)
    if info["control"] not in info["arms"]:
        raise SimabError(
            f"control arm {info['control']!r} is not one of the arms {sorted(info['arms'])}",
            source=str(run_dir / "run.json"),
            key="control",
        )
    exposures = _read_folder(run_dir / "exposures", EXPOSURE_COLUMNS)
    requests = _read_folder(run_dir / "requests", ["arm", "user", "day", "latency_ms"])
    assignments = _read_folder(run_dir / "assignments", None, required=False)
    if assignments is not None:
        assignments = assignments.select([c for c in ("arm", "user", "bucket") if c in assignments.column_names])
    if assignments is None:
        assignments = exposures.group_by(["arm", "user"], use_threads=False).aggregate([]).select(["arm", "user"])
    # plain strings: joined with the cells, filtered and grouped by arm
    requests, assignments = decode_dictionaries(requests), decode_dictionaries(assignments)
    truth_path = run_dir / "truth.parquet"
    truth = _read_folder(truth_path, ["arm", "metric", "value", "source"], required=False)
    covariates = _read_folder(
        run_dir / "covariates.parquet", ["user", *COVARIATE_COLUMNS], required=False
    )
    return RunData(
        run_dir=run_dir,
        info=info,
        cells=reduce_exposures(exposures),
        late_conversions=late_conversions(exposures),
        requests=requests,
        assignments=assignments,
        truth=truth,
        covariates=covariates,
    )
