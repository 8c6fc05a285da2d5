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
