"""The run folder's summary files: ``run.json`` (what ran, how long, status; written last and
atomically, listed in the record: its presence marks the run complete) and the report files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simab.record import FolderRecord
from simab.run.assignment import N_BUCKETS, Allocation
from simab.spec import CampaignSpec


def run_info(spec: CampaignSpec, *, wall_s: float, exposures: int, scoring_s: dict[str, float], workers: int,
             backend: str, policies: dict[str, dict]) -> dict[str, Any]:
    """The content of ``run.json``."""
    return {
        "campaign": spec.name,
        "seed": spec.seed,
        "alpha": spec.alpha,
        "control": spec.control_arm,
        "arms": {a: {"policy": s.policy, "share": s.share, "params": s.params} for a, s in spec.arms.items()},
        "metrics": spec.metrics,
        "duration_days": spec.duration_days,
        "unit": spec.unit,
        "truth": spec.truth,
        "ramps": [r.model_dump() for r in spec.ramps],
        "allocation": {"buckets": N_BUCKETS, "blocks": Allocation.from_spec(spec).blocks()},
        "rel_method": spec.rel_method,
        "correction": spec.correction,
        "sequential_mde": spec.sequential_mde,
        "runtime": {"wall_s": wall_s, "exposures_per_s": exposures / max(wall_s, 1e-9), "scoring_s": scoring_s,
                    "workers": workers, "backend": backend},
        "training": {a: p.get("metrics") for a, p in policies.items() if p["kind"] == "checkpoint"},
        "status": "complete",
    }


def write_report_files(report: Any, record: FolderRecord) -> list[Path]:
    """``report.json`` / ``.md`` / ``.html`` of ``report`` into the record's folder, each
    listed in the record (``check`` verifies report.json against it)."""
    from simab.reports import write_report

    paths = write_report(report, record.folder)
    for p in paths:
        record.add_file(p.name)
    record.save()
    return paths
