"""One command per folder: ``folder.lock``, held with ``flock`` for as long as a command
writes into the folder.

The file records who holds it (pid, host, command, start time) for the one-line refusal a
second command gets.  The lock itself is the kernel's ``flock`` on the open file, so it
ends with its process however that process ends (a SIGKILL included): a lock file left by
a dead command is recovered by the next one without asking.  Readers (``check``,
``power --from-run``) do not take the lock; they refuse a folder while a writer holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from simab.errors import SimabError
from simab.record import LOCK


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(fd: int) -> str:
    info = _holder(fd)
    try:
        return f"pid {int(info['pid'])} on {str(info['host'])[:60]}, {str(info['command'])[:40]}"
    except (KeyError, TypeError, ValueError):
        return "a process that has not yet said who it is"


def _mine(fd: int) -> bool:
    info = _holder(fd)
    return info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()


class FolderLock:
    """An exclusive lock on ``folder`` (``folder.lock`` inside it), released by :meth:`release`."""

    def __init__(self, folder: Path, fd: int):
        self.folder = folder
        self.path = folder / LOCK
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: str | Path, command: str) -> FolderLock:
        """Lock ``folder`` (which exists) for ``command``, or a one-line error naming the
        holder.  A lock file without a live holder is taken over."""
        folder = Path(folder)
        path = folder / LOCK
        for _ in range(20):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SimabError(f"{LOCK} is a symbolic link; simab writes only inside the folder",
                                     source=str(folder)) from None
                raise SimabError(f"the folder is not writable ({exc.strerror or exc})", source=str(folder)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _describe(fd)
                os.close(fd)
                raise SimabError(f"another simab command ({who}) is writing this folder; wait for it to "
                                 "finish or choose another folder", source=str(folder)) from None
            # the holder before us may have removed the file between our open and our lock
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            return cls(folder, fd)
        raise SimabError("could not take the folder's lock (it kept changing hands)", source=str(folder))

    def release(self) -> None:
        """Remove the lock file and unlock (in that order: a waiting command then finds no file)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def refuse_if_locked(folder: str | Path) -> None:
    """For readers: a one-line error while another command holds ``folder``'s lock."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return  # no lock file (or none we may open): nobody is writing
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if _mine(fd):  # this command holds it (it verifies what it is about to continue)
                return
            raise SimabError(f"another simab command ({_describe(fd)}) is writing this folder; wait for it "
                             "to finish", source=str(folder)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(folder: str | Path, command: str) -> Iterator[FolderLock]:
    lock = FolderLock.acquire(folder, command)
    try:
        yield lock
    finally:
        lock.release()
