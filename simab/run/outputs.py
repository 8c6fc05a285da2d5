"""The run folder's summary files: ``run.json`` (what ran, how long, status) is written
atomically, so a reader sees either no file or a whole one; its presence marks the run
complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simab.atomic import write_atomic
from simab.run.assignment import N_BUCKETS, Allocation
from simab.spec import CampaignSpec


def run_info(spec: CampaignSpec, *, wall_s: float, exposures: int, scoring_s: dict[str, float], workers: int,
             backend: str, policies: dict[str, dict], digests: dict[str, str]) -> dict[str, Any]:
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
        "digests": digests,
        "status": "complete",
    }


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    write_atomic(run_dir / "run.json", json.dumps(info, indent=1))
