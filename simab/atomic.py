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


def write_atomic(path: str | Path, content: str | bytes | Callable[[Path], None], *, fsync: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically and return ``path``.

    ``content`` is text (UTF-8), bytes, or a function that writes the file at the path it
    is given (e.g. ``lambda tmp: pq.write_table(table, tmp)``).  ``fsync`` flushes the
    data to disk before the rename.  The file gets the permissions of a plain new file
    (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``.  On any failure the
    temporary file is removed and the exception propagates; ``path`` is untouched.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
