"""Ground truth of a campaign: each arm's expected metric values, from the true
probabilities logged with every exposure (and, with ``truth = "counterfactual"``, from
the worlds in which one arm serves every user)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simab.eventlog import read_table

TRUTH_SCHEMA = pa.schema([("arm", pa.string()), ("metric", pa.string()), ("value", pa.float64()), ("source", pa.string())])


TRUTH_COLUMNS = ["arm", "p_click", "p_convert", "expected_dwell_s"]


def oracle_truth(exposures: pa.Table | Iterable[pa.Table], users_per_arm: dict[str, int],
                 source: str = "oracle") -> list[dict]:
    """Expected metric values per arm from the logged true probabilities; each metric's
    formula lives in the metric registry (simab.reports.metric_registry).  ``exposures``
    is a table or an iterable of tables (a run's parts, one at a time: memory stays that of
    one part); sums are added part by part."""
    from simab.reports.metric_registry import TruthSums, truth_values

    parts = [exposures] if isinstance(exposures, pa.Table) else exposures
    acc = {arm: np.zeros(4) for arm in users_per_arm}  # exposures, p_click, p_click*p_convert, p_click*dwell
    for part in parts:
        arm_col = part.column("arm").combine_chunks().cast(pa.string())
        for arm, a in acc.items():
            t = part.filter(pc.equal(arm_col, arm))
            if t.num_rows == 0:
                continue
            pcl = t.column("p_click").to_numpy()
            a += (t.num_rows, pcl.sum(), (pcl * t.column("p_convert").to_numpy()).sum(),
                  (pcl * t.column("expected_dwell_s").to_numpy()).sum())
    rows = []
    for arm, a in acc.items():
        if a[0] == 0:
            continue
        sums = TruthSums(exposures=int(a[0]), users=users_per_arm[arm], p_click=float(a[1]),
                         p_click_convert=float(a[2]), p_click_dwell=float(a[3]))
        vals = truth_values(sums, source)
        rows += [{"arm": arm, "metric": m, "value": v, "source": source} for m, v in vals.items()]
    return rows


def exposure_parts(run_dir: Path, rows: int = 1 << 20) -> Iterator[pa.Table]:
    """The columns of the truth from the exposures parts of a run folder, ``rows`` at a time
    (memory stays bounded at any campaign size)."""
    for path in sorted((Path(run_dir) / "exposures").glob("shard-*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=TRUTH_COLUMNS):
            yield pa.Table.from_batches([batch])


def users_per_arm(run_dir: Path, arms: list[str]) -> dict[str, int]:
    """Users the run exposed, per arm (from its ``assignments`` table)."""
    a = read_table(run_dir, "assignments", ["arm"])
    col = a.column("arm").combine_chunks().cast(pa.string()).to_pylist() if a.num_rows else []
    return {arm: col.count(arm) for arm in arms}


def write_truth(rows: list[dict], path: Path) -> None:
    """``truth.parquet``: one row per (arm, metric, source)."""
    pq.write_table(pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA), path)
