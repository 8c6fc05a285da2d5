"""The record of a folder simab writes: ``manifest.json``.

simab owns a file in an output folder only because that folder's record says so (never
because of its name).  The record lists

- ``files``: every finished file, with its SHA-256 and size (what readers verify);
- ``plan``: files the command that holds the folder may still write (a killed command's
  half-finished outputs are then still simab's, and so are the temporary names
  ``.<name>.<random>.tmp`` of atomic writes of any listed or planned file);
- ``children``: sub-folders with a record of their own (a sweep's or a calibration's runs,
  ``ope --online``'s campaign);
- ``trees``: sub-folders wholly simab's (a cache);

and a ``checksum`` of all of that, so that a record changed by hand is no record at all.
The campaign's :class:`~simab.eventlog.Manifest` extends it with its shards' parts.
A top-level leaf: it imports only :mod:`simab.atomic` and :mod:`simab.errors`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path, PurePosixPath
from typing import Any

from simab.atomic import write_atomic
from simab.errors import SimabError

RECORD = "manifest.json"
#: 1: files, plan, children, trees and a checksum (issue #28); manifests before it had none
RECORD_VERSION = 1
#: the lock of the command writing a folder (``simab.run.lock``); simab's while it holds it
LOCK = "folder.lock"
#: a save of the record costs at most this share of the time between saves (``save(force=False)``)
SAVE_SHARE = 0.05
#: ... but a save quicker than this (a record of a few hundred shards) is never skipped
SMALL_SAVE_S = 0.01
_TEMP = re.compile(r"^\.(?P<base>.+)\.[A-Za-z0-9_]+\.tmp$")


def sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checksum(data: dict[str, Any]) -> str:
    """SHA-256 of a record's content (``checksum`` itself left out), keys sorted."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plain_relative(rel: str) -> bool:
    """A path a record may name: relative, '/'-separated, no '.', '..' or empty part."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    return all(p not in ("", ".", "..") for p in rel.split("/"))


def temp_base(name: str) -> str | None:
    """``.report.json.ab12.tmp`` -> ``report.json`` (the file an atomic write was writing)."""
    m = _TEMP.match(name)
    return m.group("base") if m else None


class FolderRecord:
    """``manifest.json`` of one output folder (see the module docstring)."""

    kind_default = "folder"

    def __init__(self, folder: str | Path, kind: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / RECORD
        self.data: dict[str, Any] = {"record": RECORD_VERSION, "kind": kind or self.kind_default,
                                     "files": {}, "plan": [], "children": [], "trees": [], "exclusive": []}
        self._next_save = 0.0

    # ------------------------------------------------------------------ reading
    @classmethod
    def read(cls, folder: str | Path) -> FolderRecord | None:
        """The folder's record; ``None`` when it has none; a :class:`SimabError` naming
        ``manifest.json`` when it is unreadable, of another simab, or changed by hand."""
        rec = cls.__new__(cls)
        FolderRecord.__init__(rec, folder)
        path = rec.path
        if not path.exists() and not path.is_symlink():
            return None
        if path.is_symlink() or not path.is_file():
            raise SimabError("is not a plain file; simab writes its record as one", source=str(path))
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SimabError(f"not valid JSON ({exc.msg}, line {exc.lineno}); this folder's record is damaged",
                             source=str(path)) from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise SimabError(f"unreadable ({type(exc).__name__}); this folder's record is damaged",
                             source=str(path)) from None
        problem = cls.problem(data)
        if problem:
            raise SimabError(problem, source=str(path))
        rec.data = data
        return rec

    @classmethod
    def problem(cls, data: Any) -> str | None:
        """Why ``data`` is not a record simab wrote (``None``: it is one)."""
        if not isinstance(data, dict) or data.get("record") != RECORD_VERSION:
            return ("not a record of this simab (written by an older version or by hand); "
                    "move the folder's files away or choose another folder")
        if data.get("checksum") != checksum(data):
            return "changed after simab wrote it (its checksum does not match); it cannot be trusted"
        shapes = {"kind": str, "files": dict, "plan": list, "children": list, "trees": list, "exclusive": list}
        for key, typ in shapes.items():
            if not isinstance(data.get(key), typ):
                return f"{key}: expected a {typ.__name__}"
        names = [*data["files"], *data["plan"], *data["children"], *data["trees"], *data["exclusive"]]
        bad = next((n for n in names if not plain_relative(n)), None)
        if bad is not None:
            return f"names {bad!r}, which is not a plain path inside the folder"
        for rel, meta in data["files"].items():
            if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)
                    and isinstance(meta.get("bytes"), int)):
                return f"files.{rel}: expected sha256 and bytes"
        return None

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def files(self) -> dict[str, dict]:
        return self.data["files"]

    @property
    def children(self) -> list[str]:
        return self.data["children"]

    @property
    def trees(self) -> list[str]:
        return self.data["trees"]

    @property
    def exclusive(self) -> list[str]:
        """Folders that hold nothing but listed files (readers refuse anything else there)."""
        return self.data["exclusive"]

    def listed_files(self) -> dict[str, dict]:
        """Every finished file of the record (what readers may read): path -> its ``sha256``
        (and ``bytes`` or ``rows``)."""
        return dict(self.files)

    def exclusive_folders(self) -> list[str]:
        return list(self.exclusive)

    # ------------------------------------------------------------------ ownership
    def listed(self) -> set[str]:
        """Every file the record lists or plans (relative paths), itself included."""
        return {RECORD, *self.files, *self.data["plan"]}

    def owns(self, rel: str) -> bool:
        """Whether the file at ``rel`` (not inside a child or a tree) is simab's by this record."""
        if rel in self.listed():
            return True
        parent, _, name = rel.rpartition("/")
        base = temp_base(name)
        return base is not None and ((f"{parent}/{base}" if parent else base) in self.listed())

    def owned_dirs(self) -> set[str]:
        """Folders on the way to a listed, planned, child or tree path (they hold simab's files)."""
        out: set[str] = set()
        for rel in [*self.listed(), *self.children, *self.trees]:
            parts = PurePosixPath(rel).parts
            out.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return out | set(self.children) | set(self.trees) | set(self.exclusive)

    # ------------------------------------------------------------------ writing
    def plan(self, rels: list[str]) -> None:
        """Files the command may write from now on (saved before it writes any)."""
        self.data["plan"] = sorted(set(self.data["plan"]) | set(rels))

    def add_file(self, rel: str) -> None:
        """List ``rel`` (written by the caller) with its digest and size."""
        p = self.folder / rel
        self.files[rel] = {"sha256": sha256(p), "bytes": p.stat().st_size}

    def forget(self, rel: str) -> None:
        self.files.pop(rel, None)

    def add_child(self, rel: str) -> None:
        if rel not in self.children:
            self.children.append(rel)

    def add_tree(self, rel: str) -> None:
        if rel not in self.trees:
            self.trees.append(rel)

    def write_file(self, rel: str, content: Any, *, fsync: bool = False) -> Path:
        """Write ``rel`` atomically (``simab.atomic.write_atomic``'s content), list it, save."""
        self.plan([rel])
        self.save()
        path = write_atomic(self.folder / rel, content, fsync=fsync)
        self.add_file(rel)
        self.save()
        return path

    def save(self, *, force: bool = True) -> None:
        """Write the record atomically.  ``force=False`` skips the write while the last one
        is recent (it then costs at most :data:`SAVE_SHARE` of the time), so that recording
        many small shards stays linear; the caller saves with ``force=True`` at the end."""
        now = time.monotonic()
        if not force and now < self._next_save:
            return
        self.data["checksum"] = checksum(self.data)
        text = json.dumps(self.data, indent=1, sort_keys=True)
        try:
            write_atomic(self.path, text)
        except OSError as exc:
            raise SimabError(f"cannot write: {exc.strerror or exc}", source=str(self.path)) from None
        took = time.monotonic() - now
        # a small record is always saved (a killed run then loses at most its running shards)
        self._next_save = now + (took / SAVE_SHARE if took > SMALL_SAVE_S else 0.0)


def lstat_file(path: Path) -> os.stat_result | None:
    """``lstat`` of ``path`` (``None`` when absent): the file itself, never a link's target."""
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
