"""A campaign run's identity: ``spec.json`` holds the validated campaign spec plus the world
and event-log versions; ``--resume`` compares it, in order (arm order decides the control
and the hash buckets), with the requested spec and refuses any difference, naming the first
differing key (:func:`check_resume`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simab.errors import SimabError
from simab.record import RECORD

#: Spec keys that do not change a run's output (how it is executed, where it is written).
EXECUTION_KEYS = frozenset({"workers", "output"})


def identity(spec: Any) -> dict[str, Any]:
    """What makes two runs the same: the spec (less execution keys), the world generator
    version and the event-log schema."""
    from simab.eventlog import SCHEMA_VERSION
    from simab.simulators.world import WORLD_VERSION

    data = {k: v for k, v in spec.model_dump(mode="json").items() if k not in EXECUTION_KEYS}
    return {"spec": data, "world_version": WORLD_VERSION, "log_schema": SCHEMA_VERSION}


def identity_text(spec: Any) -> str:
    """``spec.json``: the full spec plus the world / log versions, keys in the spec's order."""
    from simab.eventlog import SCHEMA_VERSION
    from simab.simulators.world import WORLD_VERSION

    doc = {**spec.model_dump(mode="json"), "_simab": {"world_version": WORLD_VERSION, "log_schema": SCHEMA_VERSION}}
    return json.dumps(doc, indent=1)


def stored_identity(doc: dict[str, Any]) -> dict[str, Any]:
    versions = doc.get("_simab") if isinstance(doc.get("_simab"), dict) else {}
    return {"spec": {k: v for k, v in doc.items() if k not in EXECUTION_KEYS and k != "_simab"},
            "world_version": versions.get("world_version"), "log_schema": versions.get("log_schema")}


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key path where two JSON values differ, key order included (in a table such
    as ``arms`` the order is meaning: the first arm is the control and arms take hash
    buckets in order): ``(path, a's value, b's value)``; for a reordered table the path
    is the table's and the values its key lists."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(b) + [k for k in a if k not in b]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return sub, a.get(k, "<absent>"), b.get(k, "<absent>")
            d = first_difference(a[k], b[k], sub)
            if d:
                return d
        if list(a) != list(b):
            return (path or "<spec>") + " (order)", list(a), list(b)
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{path}.{i}" if path else str(i))
            if d:
                return d
        return None
    numbers = isinstance(a, (int, float)) and isinstance(b, (int, float))
    if isinstance(a, bool) != isinstance(b, bool) or (type(a) is not type(b) and not numbers):
        return path, a, b
    return None if a == b else (path, a, b)


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def check_resume(run_dir: Path, spec: Any) -> bool:
    """Refuse ``--resume`` when the stored run is not the requested one (its record and
    ``spec.json`` verified first); False when the folder holds no run to resume (the caller
    then starts a fresh one)."""
    from simab.run.verify import read_verified_json, verified_record

    run_dir = Path(run_dir)
    if not (run_dir / RECORD).exists() and not (run_dir / "spec.json").exists():
        return False
    record = verified_record(run_dir, "campaign", what="--resume")
    if "spec.json" not in record.files:
        return False  # killed before it wrote its spec: nothing to resume, a fresh run replaces it
    doc = read_verified_json(record, "spec.json", what="--resume")
    stored, now = stored_identity(doc), identity(spec)
    for key in ("world_version", "log_schema"):
        if stored[key] != now[key]:
            raise SimabError(
                f"--resume: the run was written with {key} {stored[key]}, this simab writes {now[key]}; "
                "start a fresh run", source=str(run_dir))
    d = first_difference(stored["spec"], now["spec"])
    if d:
        key, old, new = d
        raise SimabError(
            f"--resume: the requested spec differs from the stored run at {key} (stored {_short(old)}, "
            f"requested {_short(new)}); run without --resume or into another --out", source=str(run_dir))
    return True
