"""Atomic file writes: the one way every layer replaces a file.

The content goes to a temporary file in the destination's folder (so the rename stays
on one file system), optionally fsync'ed, then ``os.replace`` puts it in place: a
reader sees the old file or the new one, never half of one.  A leaf module (imports
nothing of simab), so simab, reports and policies may all use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Read once: ``os.umask`` can only be read by setting it, which is not thread-safe.
UMASK = _current_umask()


def temp_beside(path: str | Path) -> Path:
    """A new empty temporary file in ``path``'s folder, named ``.<name>.<random>.tmp`` (a
    name the run-folder checks know as an unfinished write); the caller fills it and
    :func:`commit` s it, or removes it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def commit(tmp: Path, path: str | Path, *, fsync: bool = False) -> Path:
    """Put the finished temporary file ``tmp`` in place as ``path`` (optionally fsync'ed
    first), with the permissions of a plain new file; on failure ``tmp`` is removed."""
    try:
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Path(path)


def write_atomic(path: str | Path, content: str | bytes | Callable[[Path], None], *, fsync: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically and return ``path``.

    ``content`` is text (UTF-8), bytes, or a function that writes the file at the path it
    is given (e.g. ``lambda tmp: pq.write_table(table, tmp)``).  ``fsync`` flushes the
    data to disk before the rename.  The file gets the permissions of a plain new file
    (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``.  On any failure the
    temporary file is removed and the exception propagates; ``path`` is untouched.
    """
    tmp = temp_beside(path)
    try:
        if callable(content):
            content(tmp)
        else:
            tmp.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return commit(tmp, path, fsync=fsync)
