"""Ground truth of a campaign: each arm's expected metric values, from the true
probabilities logged with every exposure (and, with ``truth = "counterfactual"``, from
the worlds in which one arm serves every user)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simab.eventlog import read_table

TRUTH_SCHEMA = pa.schema([("arm", pa.string()), ("metric", pa.string()), ("value", pa.float64()), ("source", pa.string())])


def oracle_truth(exposures: pa.Table, users_per_arm: dict[str, int], source: str = "oracle") -> list[dict]:
    """Expected metric values per arm from the logged true probabilities; each metric's
    formula lives in the metric registry (simab.reports.metric_registry)."""
    from simab.reports.metric_registry import TruthSums, truth_values

    rows = []
    arm_col = exposures.column("arm").combine_chunks().cast(pa.string())
    for arm, n_users in users_per_arm.items():
        t = exposures.filter(pc.equal(arm_col, arm))
        n = t.num_rows
        if n == 0:
            continue
        pcl = t.column("p_click").to_numpy()
        pcv = t.column("p_convert").to_numpy()
        dw = t.column("expected_dwell_s").to_numpy()
        sums = TruthSums(
            exposures=n,
            users=n_users,
            p_click=float(pcl.sum()),
            p_click_convert=float((pcl * pcv).sum()),
            p_click_dwell=float((pcl * dw).sum()),
        )
        vals = truth_values(sums, source)
        rows += [{"arm": arm, "metric": m, "value": v, "source": source} for m, v in vals.items()]
    return rows


def users_per_arm(run_dir: Path, arms: list[str]) -> dict[str, int]:
    """Users the run exposed, per arm (from its ``assignments`` table)."""
    a = read_table(run_dir, "assignments", ["arm"])
    col = a.column("arm").combine_chunks().cast(pa.string()).to_pylist() if a.num_rows else []
    return {arm: col.count(arm) for arm in arms}


def write_truth(rows: list[dict], path: Path) -> None:
    """``truth.parquet``: one row per (arm, metric, source)."""
    pq.write_table(pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA), path)
