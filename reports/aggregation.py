"""Per-user totals and per-arm sufficient statistics.

Units are users (the randomisation unit).  The overall per-user table starts from the
assignment table, so a user who was assigned but never exposed still counts (with zeros),
as intention-to-treat requires.  Segment tables (per scenario, per day) count the users
active in that segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simab.reports.moments import Moments, grouped_moments
from simab.reports.run_data import COUNT_COLUMNS, COVARIATE_COLUMNS


def user_totals(
    cells: pa.Table,
    by: Sequence[str] = (),
    assignments: pa.Table | None = None,
    covariates: pa.Table | None = None,
) -> pa.Table:
    """Sum ``cells`` to one row per (arm, user, *by), optionally over all assigned users."""
    keys = ["arm", "user", *by]
    # single-threaded grouping and joins, then key order: Arrow's threaded group_by/join give
    # no row-order guarantee, and row order decides the order of the float sums downstream
    totals = cells.group_by(keys, use_threads=False).aggregate([(c, "sum") for c in COUNT_COLUMNS])
    totals = totals.rename_columns([c.removesuffix("_sum") for c in totals.column_names])
    totals = totals.select([*keys, *COUNT_COLUMNS])
    if assignments is not None and not by:
        totals = assignments.select(["arm", "user"]).join(
            totals, keys=["arm", "user"], join_type="left outer", use_threads=False
        )
    if covariates is not None and not by:
        totals = totals.join(covariates, keys="user", join_type="left outer", use_threads=False)
    filled = [
        pc.fill_null(totals[c], 0).cast(pa.float64()) if c in totals.column_names else None
        for c in (*COUNT_COLUMNS, *COVARIATE_COLUMNS)
    ]
    for name, column in zip((*COUNT_COLUMNS, *COVARIATE_COLUMNS), filled, strict=True):
        if column is not None:
            totals = totals.set_column(totals.column_names.index(name), name, column)
    return totals.sort_by([(k, "ascending") for k in keys])


def _group_codes(totals: pa.Table, group: Sequence[str]) -> tuple[np.ndarray, list[tuple]]:
    """Integer code per row and the label tuple of each code, via Arrow dictionary encoding."""
    codes = np.zeros(totals.num_rows, dtype=np.int64)
    levels: list[list] = []
    for g in group:
        encoded = pc.dictionary_encode(totals[g]).combine_chunks()
        codes = codes * len(encoded.dictionary) + encoded.indices.to_numpy(zero_copy_only=False)
        levels.append(encoded.dictionary.to_pylist())
    used, codes = np.unique(codes, return_inverse=True)
    labels = []
    for code in used.tolist():
        label = []
        for values in reversed(levels):
            code, i = divmod(code, len(values))
            label.append(values[i])
        labels.append(tuple(reversed(label)))
    return codes, labels


def moments_by(
    totals: pa.Table, group: Sequence[str], columns: Sequence[str]
) -> dict[tuple, Moments]:
    """Moments of ``columns`` for each distinct value of ``group`` (one row per unit)."""
    if totals.num_rows == 0:
        return {}
    codes, labels = _group_codes(totals, group)
    values = [totals[c].to_numpy().astype(np.float64, copy=False) for c in columns]
    counts, means, comoments = grouped_moments(codes, len(labels), values)
    return {
        label: Moments(tuple(columns), int(counts[idx]), means[idx], comoments[idx])
        for idx, label in enumerate(labels)
    }


def cumulative_cells(cells: pa.Table, through_day: int) -> pa.Table:
    """The cells of days up to and including ``through_day`` (a daily look's data)."""
    return cells.filter(pc.less_equal(cells["day"], through_day))


def look_totals(cells: pa.Table, late: pa.Table | None, through_day: int) -> pa.Table:
    """Per-user totals as a look at the end of day ``through_day`` saw them: the cells of
    days up to it, less the conversions that landed after it (a live look cannot count a
    purchase that has not happened yet).  Users are those exposed by then."""
    totals = user_totals(cumulative_cells(cells, through_day))
    if late is None or late.num_rows == 0:
        return totals
    unseen = late.filter(pc.and_(pc.less_equal(late["day"], through_day),
                                 pc.greater(late["conversion_day"], through_day)))
    if unseen.num_rows == 0:
        return totals
    unseen = unseen.group_by(["arm", "user"], use_threads=False).aggregate([("conversions", "sum")])
    joined = totals.join(unseen, keys=["arm", "user"], join_type="left outer", use_threads=False)
    fixed = pc.subtract(joined["conversions"], pc.cast(pc.fill_null(joined["conversions_sum"], 0), pa.float64()))
    joined = joined.set_column(joined.column_names.index("conversions"), "conversions", fixed)
    return joined.drop_columns(["conversions_sum"]).sort_by([("arm", "ascending"), ("user", "ascending")])


def segment_unit_tables(cells: pa.Table, segment: str, assignments: pa.Table) -> dict[object, pa.Table]:
    """Intent-to-treat segment tables: for each value of ``segment`` (a day, a scenario),
    one row per *assigned* user with the user's totals in that segment, zero where the user
    had no activity there.  Counting only the users active in a segment would condition on
    post-treatment behaviour (a treatment that brings users back changes who is counted)."""
    seg = user_totals(cells, by=[segment])
    base = assignments.select(["arm", "user"])
    out = {}
    for value in sorted(pc.unique(seg[segment]).to_pylist()):
        rows = seg.filter(pc.equal(seg[segment], value)).drop_columns([segment])
        full = base.join(rows, keys=["arm", "user"], join_type="left outer", use_threads=False)
        for c in COUNT_COLUMNS:
            full = full.set_column(full.column_names.index(c), c, pc.fill_null(full[c], 0).cast(pa.float64()))
        out[value] = full.sort_by([("arm", "ascending"), ("user", "ascending")])
    return out
