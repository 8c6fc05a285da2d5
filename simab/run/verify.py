"""The one verifier of what a command reads from a folder simab wrote.

Every file a command reads is listed in the folder's record (``manifest.json``) with its
SHA-256: ``spec.json``, ``run.json``, ``truth.parquet``, ``covariates.parquet``, every part,
the checkpoints, ``report.json``, a sweep run's ``rows.json``.  Before reading, a command
checks

- the record itself (simab's, unchanged: its checksum; the kind of folder expected);
- that no other command holds the folder's lock;
- every listed file: a plain file (no link on its way), of its recorded size and digest;
- that the folders that hold only simab's files (table folders, ``counterfactual``, a trained
  arm's ``models/<arm>``) hold nothing unlisted;
- for a campaign run: ``spec.json`` and ``run.json`` (types, and each other's), and that
  every shard of the spec and every table of each shard is listed (with its counterfactual
  truth sums when the truth is counterfactual).

``report``, ``check``, ``power --from-run``, ``ope --online``, a sweep reusing a run and
``--resume`` all call it.  The API: :func:`verified_record` (any folder's record, checked),
:func:`read_verified_json` / :func:`file_problems` (its files), :func:`inspect_run` (a campaign
run: what no report can be built on - the record, ``spec.json``, ``run.json`` - is a
:class:`SimabError` at once, the rest is listed: ``report --allow-incomplete`` reports it
flagged), :func:`verify_run` (every problem refused) and :func:`verified_report`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simab.errors import SimabError
from simab.record import RECORD, FolderRecord, sha256

#: What the report's own outputs are: ``report`` rewrites them, so it does not read them.
REPORT_FILES = ("report.json", "report.md", "report.html")


def verified_record(folder: str | Path, kind: str, *, what: str) -> FolderRecord:
    """The folder's record, checked (simab's, unchanged, of ``kind``) with nobody writing the
    folder; a one-line error naming ``what`` needed it otherwise."""
    from simab.eventlog import Manifest
    from simab.run.lock import refuse_if_locked

    folder = Path(folder)
    if not folder.is_dir():
        raise SimabError("no such folder", source=str(folder))
    refuse_if_locked(folder)
    record = FolderRecord.read(folder)  # a damaged record: a one-line error naming it
    if record is None:
        raise SimabError(f"{what}: no {RECORD} here: not a folder simab wrote (or written by a simab before "
                         "issue #28)", source=str(folder))
    if record.kind != kind:
        raise SimabError(f"{what}: holds the output of `simab {record.kind}`, not a {kind}", source=str(folder))
    return Manifest(folder) if kind == "campaign" else record


def _link_on_the_way(folder: Path, rel: str) -> bool:
    p = folder
    for part in rel.split("/")[:-1]:
        p = p / part
        if p.is_symlink():
            return True
    return False


def file_problems(record: FolderRecord, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Listed files that are missing, not plain files, or altered; unlisted entries in the
    record's exclusive folders."""
    folder = record.folder
    problems: list[str] = []
    listed = record.listed_files()
    for rel, meta in sorted(listed.items()):
        if rel in skip:
            continue
        path = folder / rel
        if _link_on_the_way(folder, rel):
            problems.append(f"{rel} lies behind a symbolic link")
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{rel} is not a plain file")
        elif ("bytes" in meta and st.st_size != meta["bytes"]) or sha256(path) != meta["sha256"]:
            problems.append(f"{rel} does not match its digest in {RECORD}")
    children = {folder / c for c in record.children}  # verified by their own records
    for excl in record.exclusive_folders():
        top = folder / excl
        if top.is_symlink():
            problems.append(f"{excl} is a symbolic link")
            continue
        if not top.is_dir():
            continue
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if Path(root, d) not in children]
            for name in sorted(files) + sorted(d for d in dirs if Path(root, d).is_symlink()):
                rel = Path(root, name).relative_to(folder).as_posix()
                if rel not in listed:
                    problems.append(f"{rel} is not listed in {RECORD}")
    return problems


def read_verified_json(record: FolderRecord, rel: str, *, what: str) -> Any:
    """A listed JSON file, verified against its digest, parsed."""
    source = str(record.folder / rel)
    if rel not in record.files:
        raise SimabError(f"{what}: not listed in {RECORD}", source=source)
    bad = file_problems(_only(record, rel))
    if bad:
        raise SimabError(f"{what}: {bad[0]}; re-run it", source=str(record.folder))
    try:
        return json.loads((record.folder / rel).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SimabError(f"{what}: unreadable ({type(exc).__name__})", source=source) from None


def _only(record: FolderRecord, rel: str) -> FolderRecord:
    one = FolderRecord(record.folder, record.kind)
    one.data["files"] = {rel: record.files[rel]}
    return one


# --------------------------------------------------------------------------- campaign runs
def _spec_of(record: FolderRecord, what: str):
    from simab.spec import CampaignSpec

    doc = read_verified_json(record, "spec.json", what=what)
    if not isinstance(doc, dict):
        raise SimabError(f"{what}: not a campaign spec (a JSON object)", source=str(record.folder / "spec.json"))
    body = {k: v for k, v in doc.items() if k != "_simab"}
    try:
        return CampaignSpec.model_validate_json(json.dumps(body))
    except ValueError as exc:
        from pydantic import ValidationError

        from simab.errors import pydantic_to_simab

        if isinstance(exc, ValidationError):
            e = pydantic_to_simab(exc, str(record.folder / "spec.json"), model=CampaignSpec)
            raise SimabError(f"{what}: {e.message}", source=e.source, key=e.key) from None
        raise


_RUN_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "campaign": str, "seed": int, "alpha": float, "control": str, "arms": dict, "metrics": list,
    "duration_days": (int, float), "unit": str, "truth": str, "ramps": list, "runtime": dict,
    "training": dict, "status": str,
}


def _run_json_problem(info: Any, spec) -> str | None:
    if not isinstance(info, dict):
        return "not a JSON object"
    for key, typ in _RUN_JSON_TYPES.items():
        if not isinstance(info.get(key), typ) or isinstance(info.get(key), bool):
            return f"{key}: missing or not a {getattr(typ, '__name__', 'number')}"
    if info["status"] != "complete":
        return f"status: {info['status']!r}, not 'complete'"
    expected = {"campaign": spec.name, "seed": spec.seed, "alpha": spec.alpha, "control": spec.control_arm,
                "metrics": list(spec.metrics)}
    for key, value in expected.items():
        if info[key] != value:
            return f"{key}: {info[key]!r} is not the spec's {value!r}"
    if list(info["arms"]) != list(spec.arms):
        return f"arms: {list(info['arms'])} are not the spec's {list(spec.arms)}"
    runtime = info["runtime"]
    for key in ("wall_s", "exposures_per_s"):
        v = runtime.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
            return f"runtime.{key}: not a number >= 0"
    return None


def _shard_problems(record: FolderRecord, shards: int, label: str) -> list[str]:
    listed = record.data.get("shards", {})
    tables = record.data.get("part_plan", {}).get("tables", [])
    problems = []
    for s in range(shards):
        entry = listed.get(str(s))
        if not entry:
            problems.append(f"{label}shard {s} is not in {RECORD} (the run did not finish it)")
            continue
        missing = [t for t in tables if t not in entry["parts"]]
        if missing:
            problems.append(f"{label}shard {s} lists no {missing[0]} part")
    extra = sorted(int(s) for s in listed if int(s) >= shards)
    if extra:
        problems.append(f"{label}shard {extra[0]} is not a shard of the spec ({shards} shards)")
    return problems


@dataclass
class VerifiedRun:
    """A campaign run whose record, ``spec.json`` and ``run.json`` verified, and what else
    was found (``problems``: missing, altered or unlisted parts and tables; empty: verified
    in full)."""

    record: Any
    spec: Any
    info: dict
    problems: list[str]


def inspect_run(run_dir: str | Path, *, what: str = "report", skip: tuple[str, ...] = ()) -> VerifiedRun:
    """Verify a finished campaign run.  What no report can be built on (the record,
    ``spec.json``, ``run.json``) is a :class:`SimabError` at once; the rest is listed in
    ``problems`` (``skip``: listed files not checked, e.g. the report files ``report``
    rewrites)."""

    record = verified_record(run_dir, "campaign", what=what)
    if record.data.get("summary_only"):
        raise SimabError(f"{what}: a sweep run that kept only its report (its event log was not kept: sweep "
                         "--keep-events keeps it)", source=str(run_dir))
    if "run.json" not in record.files:
        raise SimabError(f"{what}: not a complete run (no run.json in its {RECORD}); run `simab run` (or "
                         "--resume it) first", source=str(run_dir))
    spec = _spec_of(record, what)
    info = read_verified_json(record, "run.json", what=what)
    problem = _run_json_problem(info, spec)
    if problem:
        raise SimabError(f"{what}: {problem}", source=str(Path(run_dir) / "run.json"))
    problems = _shard_problems(record, spec.shards, "") + file_problems(record, skip=skip)
    required = ["spec.json", "run.json", "truth.parquet"]
    if spec.world.pre_period_days > 0:
        required.append("covariates.parquet")
    problems += [f"{rel} is not listed in {RECORD}" for rel in required if rel not in record.files]
    from simab.run.design import counterfactual_passes
    from simab.run.folder import read_child

    for child in record.children:  # the global truth's worlds (runs with interference)
        sub = read_child(record.folder / child)
        if sub is None:
            problems.append(f"{child}/{RECORD} is missing or not a campaign record")
            continue
        problems += _shard_problems(sub, spec.shards, f"{child}/")
        problems += [f"{child}/{p}" for p in file_problems(sub)]
    if counterfactual_passes(spec):  # the counterfactual truth: sums in every shard's entry
        untrue = [s for s, e in sorted(record.data["shards"].items(), key=lambda x: int(x[0]))
                  if int(s) < spec.shards and not isinstance(e.get("truth"), dict)]
        if untrue:
            problems.append(f"shard {untrue[0]} records no counterfactual truth in {RECORD}")
    return VerifiedRun(record, spec, info, problems)


def run_problems(run_dir: str | Path, *, what: str = "report", skip: tuple[str, ...] = ()) -> list[str]:
    """:func:`inspect_run`'s problems (empty: verified in full)."""
    return inspect_run(run_dir, what=what, skip=skip).problems


def verify_run(run_dir: str | Path, *, what: str) -> VerifiedRun:
    """A finished run, verified in full: every problem is a one-line error."""
    run = inspect_run(run_dir, what=what)
    if run.problems:
        more = f" (and {len(run.problems) - 1} more)" if len(run.problems) > 1 else ""
        raise SimabError(f"{what}: incomplete or altered run: {run.problems[0]}{more}", source=str(run_dir))
    return run


def verified_report(run_dir: str | Path, *, what: str = "check") -> dict:
    """``report.json`` of a run that verifies in full, itself verified against the run's
    record and ``run.json`` (listed, its digest, ``integrity.complete``, the same campaign,
    seed, alpha and control); a run without one is analysed now (nothing is written).  The
    folder of ``simab analyze`` (a real experiment) holds only a report: its record and every
    listed file must verify."""
    try:
        kind = (FolderRecord.read(run_dir) or FolderRecord(run_dir)).kind
    except SimabError:
        kind = "campaign"  # verify_run says what is wrong with it
    if kind == "analyze":
        record = verified_record(run_dir, "analyze", what=what)
        problems = file_problems(record)
        if problems:
            raise SimabError(f"{what}: altered report folder: {problems[0]}", source=str(run_dir))
        report = read_verified_json(record, "report.json", what=what)
        if not isinstance(report, dict):
            raise SimabError(f"{what}: not a report (a JSON object)", source=str(Path(run_dir) / "report.json"))
        return report
    run = verify_run(run_dir, what=what)
    if "report.json" not in run.record.files:
        from simab.reports import analyze

        return analyze(run_dir).to_json_dict()
    report = read_verified_json(run.record, "report.json", what=what)
    source = str(Path(run_dir) / "report.json")
    if not isinstance(report, dict):
        raise SimabError(f"{what}: not a report (a JSON object)", source=source)
    integrity = report.get("integrity")
    if not isinstance(integrity, dict) or integrity.get("complete") is not True:
        raise SimabError(f"{what}: the report is flagged incomplete (written with --allow-incomplete); run "
                         "`simab report` on the verified run first", source=source)
    for key in ("campaign", "seed", "alpha", "control"):
        if report.get(key) != run.info[key]:
            raise SimabError(f"{what}: {key} {report.get(key)!r} is not the run's {run.info[key]!r}", source=source)
    return report
