"""Output folders that cannot lie: ownership by record, one command per folder, the run's
identity.

- **Ownership by record.**  Every command that writes a folder (run, report, train, world,
  ope, sweep, calibrate) holds it with :func:`output_folder`: the folder's lock
  (:mod:`simab.run.lock`), then its record (``manifest.json``, :class:`simab.record.FolderRecord`):
  simab removes or replaces only files the record lists or plans.  Anything else makes a
  fresh command refuse, naming the first such file; a campaign's ``--overwrite`` runs anyway
  when nothing foreign sits where it writes, and still removes only listed files.  Nothing
  is followed through a symbolic link: a link anywhere in the folder is foreign.
- **Identity** (``spec.json``, what ``--resume`` compares) is :mod:`simab.run.identity`.
- **Verification** of what a command reads is :mod:`simab.run.verify`.
- The pre-period / model cache lives in one documented folder (:func:`cache_root`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simab.errors import SimabError
from simab.eventlog import TABLES
from simab.record import LOCK, RECORD, FolderRecord

#: What a campaign run writes at its top (besides its record, the parts and the children).
RUN_FILES = ("spec.json", "run.json", "truth.parquet", "covariates.parquet", "report.json", "report.md",
             "report.html")
#: What a run with a market (``world.market``) adds at its top: the design's items and, with
#: several markets, each user's market (``simab.run.global_truth.write_items``).
MARKET_FILES = ("items.parquet", "markets.parquet")
REPORT_FILES = ("report.json", "report.md", "report.html")
#: A checkpoint's files (``simab.policies.checkpoint``; SSIM keeps its selection beside them).
CHECKPOINT_FILES = ("weights.pt", "spec.json", "metrics.json", "shared_instances.parquet")


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


# --------------------------------------------------------------------------- ownership
@dataclass
class Plan:
    """What a command may write into its folder: ``files`` (relative paths), ``exclusive``
    folders (they hold nothing but simab's files: table folders, ``models``, a sweep's
    ``runs``), ``children`` (sub-folders with a record of their own), ``trees`` (wholly
    simab's, e.g. a cache) and, for a campaign, the parts of ``shards`` shards of ``tables``."""

    files: list[str] = field(default_factory=list)
    exclusive: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    tables: tuple[str, ...] = ()
    shards: int = 0

    def apply(self, record: FolderRecord) -> None:
        record.plan(self.files)
        record.data["exclusive"] = sorted(set(record.data.get("exclusive", [])) | set(self.exclusive))
        for c in self.children:
            record.add_child(c)
        for t in self.trees:
            record.add_tree(t)
        if self.tables:
            record.plan_parts(self.tables, self.shards)  # type: ignore[attr-defined]

    def collides(self, rel: str) -> bool:
        """Whether a foreign entry at ``rel`` sits where this plan writes (at a planned file,
        on the way to one, or inside an exclusive folder, a child or a tree)."""
        folders = [*self.exclusive, *self.children, *self.trees, *self.tables]
        targets = [*self.files, *folders]
        return (rel in self.files
                or any(t.startswith(rel + "/") for t in targets)
                or any(rel == f or rel.startswith(f + "/") for f in folders))


@dataclass
class Scan:
    """A folder's entries by owner: ``own`` (files and folders simab may remove, deepest
    first) and ``foreign`` (relative paths of everything else, links included)."""

    own: list[Path] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def _is_link_or_special(st: os.stat_result) -> bool:
    return stat.S_ISLNK(st.st_mode) or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def read_child(folder: Path) -> FolderRecord | None:
    """A child folder's record (``None`` when it has none or it is not one simab wrote)."""
    from simab.eventlog import Manifest

    try:
        rec = FolderRecord.read(folder)
        if rec is not None and rec.kind == "campaign":
            rec = Manifest(folder)
        return rec
    except SimabError:
        return None


def scan(folder: Path, record: FolderRecord | None) -> Scan:
    """Who owns each entry under ``folder`` by ``record`` (and, inside each child, by the
    child's own record).  Links are never followed and always foreign."""
    out = Scan()
    top = Path(folder)

    def walk(directory: Path, rec: FolderRecord | None, base: Path, in_tree: bool) -> bool:
        """Classify ``directory``'s content; True when all of it is simab's."""
        all_own = True
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise SimabError(f"cannot read the folder ({exc.strerror or exc})", source=str(directory)) from None
        for entry in entries:
            path = Path(entry.path)
            rel = path.relative_to(base).as_posix()
            st = entry.stat(follow_symlinks=False)
            if _is_link_or_special(st):
                out.foreign.append(path.relative_to(top).as_posix())
                all_own = False
            elif stat.S_ISDIR(st.st_mode):
                if in_tree or (rec is not None and rel in rec.trees):
                    inner = walk(path, rec, base, True)
                elif rec is not None and rel in rec.children:
                    child = read_child(path)
                    inner = walk(path, child, path, False)
                else:
                    inner = walk(path, rec, base, False)
                    inner = inner and rec is not None and rel in rec.owned_dirs()
                if inner:
                    out.own.append(path)
                else:
                    if is_empty(path):  # a folder of someone else's, with nothing in it
                        out.foreign.append(path.relative_to(top).as_posix())
                    all_own = False
            elif in_tree or (rec is not None and rec.owns(rel)) or (directory == base and entry.name == LOCK):
                out.own.append(path)
            else:
                out.foreign.append(path.relative_to(top).as_posix())
                all_own = False
        return all_own

    if top.is_dir():
        walk(top, record, top, False)
    return out


def is_empty(path: Path) -> bool:
    try:
        return not any(os.scandir(path))
    except OSError:
        return False


def remove_owned(paths: list[Path], *, keep: Path | None = None) -> None:
    """Remove simab's files and then the folders they emptied (``paths`` deepest first);
    ``keep``: the lock, which its holder removes."""
    for p in paths:
        if p == keep:
            continue
        st = os.lstat(p) if os.path.lexists(p) else None
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(OSError):
                p.rmdir()  # a folder that still holds foreign files stays
        else:
            p.unlink(missing_ok=True)


def _refusal(folder: Path, foreign: list[str], why: str) -> SimabError:
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    return SimabError(f"{why}{more}", source=str(folder / foreign[0]))


@contextlib.contextmanager
def output_folder(path: str | Path, *, kind: str, command: str, plan: Plan, overwrite: bool = False,
                  resume_if: Callable[[], bool] | None = None,
                  keep_on_failure: bool = False) -> Iterator[FolderRecord]:
    """Hold ``path`` for a command that writes it: lock it; check, by its record, that it holds
    only simab's files (``overwrite``: that nothing foreign sits where ``plan`` writes); remove
    the previous command's files (none when ``resume_if()``, called under the lock, says to
    resume or, for a sweep, to reuse its runs); write the record with ``plan``.  Yields the record (a
    :class:`~simab.eventlog.Manifest` for ``kind="campaign"``); the command lists each file
    it finishes.  A refused command leaves the folder as it was; a command that fails
    removes what it wrote unless ``keep_on_failure`` (a campaign, a sweep: resumable), and
    then a folder it created and left with nothing finished is removed."""
    from simab.run.lock import FolderLock

    folder = Path(path)
    if os.path.lexists(folder) and not folder.is_dir():
        raise SimabError("exists and is not a folder; choose a folder for the output", source=str(folder))
    existed = folder.exists()
    created = folder  # the outermost folder this call creates (removed again if left empty)
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimabError(f"cannot create the output folder: {exc.strerror or exc}", source=str(folder)) from None
    record: FolderRecord | None = None
    try:
        lock = FolderLock.acquire(folder, command)
    except BaseException:
        if not existed:
            remove_if_empty(created)
        raise
    try:
        resume = bool(resume_if and resume_if())
        record = _claim(folder, kind, plan, overwrite=overwrite, resume=resume, lock=lock.path)
        try:
            yield record
        except BaseException:
            if not keep_on_failure:
                remove_owned(scan(folder, record).own, keep=lock.path)
            elif not existed and not record.files and not record.data.get("shards"):
                (folder / RECORD).unlink(missing_ok=True)  # nothing finished: leave nothing behind
            raise
    finally:
        lock.release()
        if not existed:
            remove_if_empty(created)


def _claim(folder: Path, kind: str, plan: Plan, *, overwrite: bool, resume: bool, lock: Path) -> FolderRecord:
    from simab.eventlog import Manifest

    cls = Manifest if kind == "campaign" else FolderRecord
    old = FolderRecord.read(folder)  # a damaged record: a one-line error naming it
    if old is not None and old.kind != kind:
        raise SimabError(f"holds the output of `simab {old.kind}`, not of `simab {kind}`; choose another folder",
                         source=str(folder))
    if old is not None and kind == "campaign":
        old = Manifest(folder)
    found = scan(folder, old)
    if found.foreign and (not overwrite or resume):
        raise _refusal(folder, found.foreign, f"not written by simab (the folder's {RECORD} does not list it); "
                       "choose an empty or new folder" + (", or pass --overwrite to keep such files and "
                                                          "replace only simab's" if kind == "campaign" else ""))
    clash = [f for f in found.foreign if plan.collides(f)]
    if clash:
        raise _refusal(folder, clash, "not written by simab, and simab would write there; move it away or "
                       "choose another folder")
    if resume and old is not None:
        record = old
    else:
        remove_owned(found.own, keep=lock)
        record = cls(folder) if kind == "campaign" else FolderRecord(folder, kind)
    plan.apply(record)
    record.save()
    return record


def remove_if_empty(path: Path) -> None:
    """Remove ``path`` if it holds nothing but empty folders (never through a link)."""
    if not path.is_dir() or path.is_symlink():
        return
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not sub.is_symlink():
            with contextlib.suppress(OSError):
                sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def campaign_plan(spec: Any) -> Plan:
    """Everything a campaign run may write into its folder."""
    from simab.eventlog import PART_TABLES
    from simab.run.design import interference

    arms = list(spec.arms)
    files = [*RUN_FILES, *(f"models/{a}/{f}" for a in arms for f in CHECKPOINT_FILES)]
    trees = [] if spec.training.cache else [".models"]
    # (the counterfactual truth is sums in the record's shard entries: no folder of its own)
    market = spec.world.market.enabled
    if interference(spec):
        files += MARKET_FILES
    # with interference the global truth's worlds: global/<arm>, each a campaign record of its own
    children = [f"global/{a}" for a in arms] if interference(spec) else []
    return Plan(files=files, exclusive=[f"models/{a}" for a in arms], trees=trees, children=children,
                tables=PART_TABLES if market else TABLES, shards=spec.shards)


def list_checkpoints(record: FolderRecord, policies: dict[str, dict]) -> None:
    """List each trained arm's checkpoint files (``models/<arm>/...``) in ``record``."""
    for arm, desc in policies.items():
        if desc.get("kind") == "checkpoint":
            for name in CHECKPOINT_FILES:
                if (record.folder / "models" / arm / name).is_file():
                    record.add_file(f"models/{arm}/{name}")


def keep_summary(record: FolderRecord) -> None:
    """Reduce a finished run to its summary (a sweep without ``--keep-events``): remove its
    listed parts, checkpoints and trees, and say so in the record, which
    still lists spec.json, run.json, the truth, the covariates and the report."""
    folder = record.folder
    for child in list(record.children):
        sub = read_child(folder / child)
        remove_owned(scan(folder / child, sub).own)
        remove_if_empty(folder / child)
        record.children.remove(child)
        parent = (folder / child).parent  # e.g. global/ of global/<arm>: the record's no more
        while parent != folder and folder in parent.parents:
            remove_if_empty(parent)
            parent = parent.parent
    for rel in [r for r in record.listed_files() if r not in record.files or r.startswith("models/")]:
        (folder / rel).unlink(missing_ok=True)
        record.forget(rel)
    trees = [folder / t for t in record.trees]
    remove_owned([p for p in scan(folder, record).own if any(t == p or t in p.parents for t in trees)])
    record.data["trees"] = []
    record.data.update(shards={}, summary_only=True)
    record.data["part_plan"]["shards"] = 0
    record.data["plan"] = [r for r in record.data["plan"] if not r.startswith("models/")]
    for rel in sorted(record.owned_dirs(), key=len, reverse=True):
        if (folder / rel).is_dir() and not (folder / rel).is_symlink():
            remove_if_empty(folder / rel)
    record.save()
