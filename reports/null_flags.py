"""Every null in report.json has a flag that says why (the conventions of docs/report_json.md).

The statistics flag the undefined numbers they know of (no users, a zero denominator, ...);
this last pass over the finished JSON record guarantees the contract for the rest: a record
(an arm's value, a comparison, a segment's comparison, the SRM check) holding a null that
its flags do not yet explain gets a flag naming the null fields and the kind of reason.
"""

from __future__ import annotations

from typing import Any

#: fields that are null when the world recorded no truth for a metric or an arm
TRUTH_FIELDS = frozenset({"true_value", "true_rel_lift", "ci_covers_truth"})
#: keys that are not numbers of the record: the explanations, and ``cuped_reason``, whose
#: null means "CUPED was applied" (``cuped_applied`` says so beside it)
_SKIP = frozenset({"flags", "notes", "cuped_reason"})


def explain_nulls(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a report.json dict) with a flag for every null its records do not explain."""
    if isinstance(doc.get("srm"), dict):
        _explain(doc["srm"])
    for m in doc.get("metrics", {}).values():
        for record in m.get("arms", {}).values():
            _explain(record)
        for record in m.get("comparisons", {}).values():
            _explain(record)
        for segment in ("per_scenario", "per_day"):
            for by_key in m.get(segment, {}).values():
                for record in by_key.values():
                    _explain(record)
    return doc


def null_fields(record: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the nulls in ``record`` (lists by index), explanations left out."""
    out: list[str] = []
    for key, value in record.items():
        if key in _SKIP:
            continue
        path = f"{prefix}{key}"
        if value is None:
            out.append(path)
        elif isinstance(value, dict):
            out += null_fields(value, path + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if item is None:
                    out.append(f"{path}[{i}]")
                elif isinstance(item, dict):
                    out += null_fields(item, f"{path}[{i}].")
    return out


def _explain(record: dict[str, Any]) -> None:
    nulls = null_fields(record)
    if not nulls:
        return
    flags = record.setdefault("flags", [])
    truth = [n for n in nulls if n.split(".")[0] in TRUTH_FIELDS]
    sequential = [n for n in nulls if n == "sequential"]
    other = [n for n in nulls if n not in truth and n not in sequential]
    explained_by_stats = bool(flags)  # the statistics flagged what made their numbers undefined
    if truth:
        flags.append(f"undefined: {_names(truth)} (the world recorded no truth for this metric)")
    if sequential:
        flags.append("undefined: sequential (no always-valid sequential test for this metric)")
    if other and not explained_by_stats:
        flags.append(f"undefined: {_names(other)} (not estimable from these data: an arm with too few users "
                     "or events, or no variance)")


def _names(paths: list[str], shown: int = 4) -> str:
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more
