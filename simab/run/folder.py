"""A run folder as a unit with an identity.

- ``spec.json`` holds the validated campaign spec plus the world and event-log versions;
  ``--resume`` compares it with the requested spec and refuses any difference, naming the
  first differing key (:func:`check_resume`).
- simab knows every name it writes into a run folder (:data:`OWNED_FILES`,
  :data:`OWNED_FOLDERS` and the part names inside them).  A fresh run into a folder that
  holds anything else refuses unless ``overwrite`` is set, and even then only simab's
  own files are removed (:func:`prepare_fresh`): ``--out .`` never deletes a user's files.
- ``manifest.json`` lists every part with its SHA-256, and ``run.json`` the digests of the
  truth and covariate tables; :func:`verify` checks a finished run against them before a
  report is (re)written.
- The pre-period / model cache lives in one documented folder (:func:`cache_root`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simab.atomic import write_atomic
from simab.errors import SimabError
from simab.eventlog import TABLES, sha256

#: Files simab writes at the top of a run folder (sweeps add rows.json to their runs).
OWNED_FILES = frozenset({
    "spec.json", "run.json", "run.json.partial", "manifest.json", "truth.parquet",
    "covariates.parquet", "report.json", "report.md", "report.html", "rows.json", "items.parquet",
    "markets.parquet",
})
#: Folders simab writes at the top of a run folder; what may sit inside each is checked too.
OWNED_FOLDERS = frozenset({*TABLES, "counterfactual", "models", ".models", "market", "global"})
#: the per-shard tables of a run with a market (``world.market``): the event log's and the market's
_MARKET_TABLES = (*TABLES, "market")
# temporary names of atomic writes (eventlog parts, manifest, reports, write probe)
_TEMP = re.compile(r"^\.(.+\.tmp(-\d+)?|write-probe-\d+)$")
_PART = re.compile(r"^shard-\d{5}\.parquet$")
_CHECKPOINT_FILES = frozenset({"weights.pt", "spec.json", "metrics.json"})
#: Spec keys that do not change a run's output (how it is executed, where it is written).
EXECUTION_KEYS = frozenset({"workers", "output"})


# --------------------------------------------------------------------------- names
# --------------------------------------------------------------------------- cache
def cache_root() -> Path:
    """The pre-period / trained-model cache: ``$SIMAB_CACHE`` if set, else
    ``$XDG_CACHE_HOME/simab``, else ``~/.cache/simab``.  Never the working directory."""
    env = os.environ.get("SIMAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "simab"


def cache_dir(configured: str | None) -> Path:
    """The cache folder a spec asks for (``training.cache_dir``), or :func:`cache_root`;
    created here so that an unusable one is a one-line error before any work."""
    path = Path(configured).expanduser() if configured else cache_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        hint = "set SIMAB_CACHE to a writable folder" if not configured else "training.cache_dir"
        raise SimabError(f"cache folder is not usable ({exc.strerror or exc}); {hint}",
                         source=str(path)) from None
    return path


# --------------------------------------------------------------------------- output folders
@contextlib.contextmanager
def new_output_folder(path: str | Path) -> Iterator[Path]:
    """Create ``path`` (refusing a file in the way); if the block fails, remove it again
    when it did not exist before and is still empty, so a refused command leaves nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SimabError("exists and is not a folder; choose a folder for the output", source=str(path))
    existed = path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimabError(f"cannot create the output folder: {exc.strerror or exc}", source=str(path)) from None
    try:
        yield path
    except BaseException:
        if not existed:
            remove_if_empty(path)
        raise


def remove_if_empty(path: Path) -> None:
    """Remove ``path`` if it holds nothing but empty folders."""
    if not path.is_dir():
        return
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not sub.is_symlink():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


# --------------------------------------------------------------------------- ownership
def _owned_inside(folder: str, rel: tuple[str, ...], is_dir: bool) -> bool:
    """Whether ``folder/rel...`` is a name simab writes inside one of its folders."""
    name = rel[-1]
    if _TEMP.match(name):
        return True
    if folder in _MARKET_TABLES:
        return len(rel) == 1 and not is_dir and bool(_PART.match(name))
    if folder == "global":  # global/<arm>/{manifest.json,<table>/shard-*}: the global truth's worlds
        if len(rel) == 1:
            return is_dir
        if len(rel) == 2:
            return (is_dir and rel[1] in _MARKET_TABLES) or (not is_dir and name == "manifest.json")
        return len(rel) == 3 and rel[1] in _MARKET_TABLES and not is_dir and bool(_PART.match(name))
    if folder == "counterfactual":  # counterfactual/<arm>/{manifest.json,<table>/shard-*}
        if len(rel) == 1:
            return is_dir
        if len(rel) == 2:
            return (is_dir and rel[1] in TABLES) or (not is_dir and name == "manifest.json")
        return len(rel) == 3 and rel[1] in TABLES and not is_dir and bool(_PART.match(name))
    if folder == "models":  # models/<arm>/{weights.pt,spec.json,metrics.json}
        return (len(rel) == 1 and is_dir) or (len(rel) == 2 and not is_dir and name in _CHECKPOINT_FILES)
    if folder == ".models":  # the per-run model cache: models/<key>/checkpoint files
        return (len(rel) == 1 and is_dir) or (len(rel) == 2 and not is_dir and name in _CHECKPOINT_FILES)
    return False


def classify(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(simab's own files and folders, anything else) in ``run_dir``, deepest first."""
    own: list[Path] = []
    foreign: list[Path] = []
    if not run_dir.is_dir():
        return own, foreign
    for entry in sorted(run_dir.iterdir()):
        name = entry.name
        if entry.is_symlink():
            foreign.append(entry)
        elif entry.is_file() and (name in OWNED_FILES or _TEMP.match(name)):
            own.append(entry)
        elif entry.is_dir() and name in OWNED_FOLDERS:
            inner_foreign = False
            for sub in sorted(entry.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                rel = sub.relative_to(entry).parts
                if not sub.is_symlink() and _owned_inside(name, rel, sub.is_dir()):
                    own.append(sub)
                else:
                    foreign.append(sub)
                    inner_foreign = True
            if not inner_foreign:
                own.append(entry)
        else:
            foreign.append(entry)
    return own, foreign


def prepare_fresh(run_dir: Path, *, overwrite: bool = False) -> None:
    """Make ``run_dir`` ready for a fresh run: remove simab's own files from an earlier run;
    refuse (unless ``overwrite``) when the folder holds anything simab did not write, and
    never remove such things."""
    own, foreign = classify(run_dir)
    if foreign and not overwrite:
        shown = ", ".join(str(p.relative_to(run_dir)) for p in foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise SimabError(
            f"folder holds files simab did not write ({shown}{more}); choose an empty or new "
            "folder, or pass --overwrite to replace only simab's own files", source=str(run_dir))
    for p in own:  # deepest first: files, then the folders they emptied
        if p.is_dir():
            with contextlib.suppress(OSError):
                p.rmdir()  # a folder that still holds foreign files stays
        else:
            p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- identity
def identity(spec: Any) -> dict[str, Any]:
    """What makes two runs the same: the spec (less execution keys), the world generator
    version and the event-log schema."""
    from simab.eventlog import SCHEMA_VERSION
    from simab.simulators.world import WORLD_VERSION

    data = {k: v for k, v in spec.model_dump(mode="json").items() if k not in EXECUTION_KEYS}
    return {"spec": data, "world_version": WORLD_VERSION, "log_schema": SCHEMA_VERSION}


def write_identity(run_dir: Path, spec: Any) -> None:
    """``spec.json``: the full spec plus the world / log versions (atomic write)."""
    from simab.eventlog import SCHEMA_VERSION
    from simab.simulators.world import WORLD_VERSION

    doc = {**spec.model_dump(mode="json"), "_simab": {"world_version": WORLD_VERSION,
                                                      "log_schema": SCHEMA_VERSION}}
    _write_atomic(run_dir / "spec.json", json.dumps(doc, indent=1))


def _stored_identity(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "spec.json"
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise SimabError("unreadable spec.json; cannot resume this run", source=str(path)) from None
    if not isinstance(doc, dict):
        raise SimabError("spec.json is not a table; cannot resume this run", source=str(path))
    versions = doc.pop("_simab", {}) or {}
    return {"spec": {k: v for k, v in doc.items() if k not in EXECUTION_KEYS},
            "world_version": versions.get("world_version"), "log_schema": versions.get("log_schema")}


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key path (in ``b``'s order, then ``a``'s extra keys) where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(b) + [k for k in a if k not in b]:
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return sub, a.get(k, "<absent>"), b.get(k, "<absent>")
            d = first_difference(a[k], b[k], sub)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{path}.{i}" if path else str(i))
            if d:
                return d
        return None
    return None if a == b else (path, a, b)


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def check_resume(run_dir: Path, spec: Any) -> bool:
    """Refuse ``--resume`` when the stored run is not the requested one; False when the
    folder holds no run to resume (the caller then starts a fresh one)."""
    stored = _stored_identity(run_dir)
    if stored is None:
        return False
    now = identity(spec)
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


# --------------------------------------------------------------------------- verification
def file_digests(run_dir: Path, names: tuple[str, ...] = ("truth.parquet", "covariates.parquet", "items.parquet",
                                                        "markets.parquet")) -> dict[str, str]:
    """SHA-256 of the run's whole-run tables (recorded in run.json, checked by :func:`verify`)."""
    return {n: sha256(run_dir / n) for n in names if (run_dir / n).exists()}


def _verify_parts(folder: Path, shards: int, label: str) -> list[str]:
    problems: list[str] = []
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        listed = manifest["shards"]
    except FileNotFoundError:
        return [f"{label}manifest.json is missing"]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{label}manifest.json is unreadable"]
    expected: set[Path] = set()
    for s in range(shards):
        entry = listed.get(str(s))
        if not entry:
            problems.append(f"{label}shard {s} is not in the manifest")
            continue
        for table, meta in entry.get("parts", {}).items():
            p = folder / table / f"shard-{s:05d}.parquet"
            expected.add(p)
            rel = f"{label}{table}/{p.name}"
            if not p.exists():
                problems.append(f"{rel} is missing")
            elif sha256(p) != meta.get("sha256"):
                problems.append(f"{rel} does not match its manifest digest")
    for table in _MARKET_TABLES:
        for p in sorted((folder / table).glob("shard-*.parquet")):
            if p not in expected:
                problems.append(f"{label}{table}/{p.name} is not in the manifest")
    return problems


def verify(run_dir: Path) -> list[str]:
    """Problems that make a run folder incomplete or altered (empty list: verified)."""
    run_dir = Path(run_dir)
    try:
        spec = json.loads((run_dir / "spec.json").read_text())
        shards, truth, arms = int(spec["shards"]), spec.get("truth"), list(spec["arms"])
    except FileNotFoundError:
        return ["spec.json is missing"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["spec.json is unreadable"]
    problems = _verify_parts(run_dir, shards, "")
    if (run_dir / "global").is_dir():  # a run with interference: the global truth's worlds
        for arm in arms:
            problems += _verify_parts(run_dir / "global" / arm, shards, f"global/{arm}/")
    elif truth == "counterfactual":
        for arm in arms:
            problems += _verify_parts(run_dir / "counterfactual" / arm, shards, f"counterfactual/{arm}/")
    try:
        info = json.loads((run_dir / "run.json").read_text())
        recorded = info.get("digests") if isinstance(info, dict) else None
    except (OSError, ValueError):
        return [*problems, "run.json is unreadable"]
    if recorded is None:
        problems.append("run.json records no table digests (written by an older simab?)")
    else:
        for name, digest in recorded.items():
            p = run_dir / name
            if not p.exists():
                problems.append(f"{name} is missing")
            elif sha256(p) != digest:
                problems.append(f"{name} does not match its recorded digest")
    return problems


def _write_atomic(path: Path, text: str) -> None:
    """``simab.atomic.write_atomic``, with a file-system failure as a one-line error."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise SimabError(f"cannot write: {exc.strerror or exc}", source=str(path)) from None

