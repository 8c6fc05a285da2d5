"""Worker processes die with the command that started them.

A process pool's workers are children of the command; when the command is killed (SIGKILL
cannot be caught, so nothing in the command can clean up) they would live on and keep
writing parts into a folder nobody holds any more.  :func:`bind_to_parent` is the pool's
``initializer``: on Linux the kernel sends the worker SIGKILL when its parent ends
(``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread notices that the parent changed
and ends the worker.  :func:`pool_kwargs` gives a ``ProcessPoolExecutor`` both, and
:func:`end_workers` stops a pool at once (``simab.run.executor.Executor`` uses both: the one
place where worker processes start and end).

:func:`end_on_terminate` (the CLI's entry) turns SIGTERM and SIGHUP into the same
``KeyboardInterrupt`` as Ctrl-C, so that a terminated command runs its ``finally`` blocks
(the folder's lock is released, the pool is shut down) like an interrupted one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1


def bind_to_parent(parent_pid: int) -> None:
    """Pool initializer: end this process when ``parent_pid`` (the command) ends."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends the worker
    if os.getppid() != parent_pid:  # the parent ended before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="simab-parent-watch", daemon=True).start()


def _watch(parent_pid: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(every_s)
    os._exit(1)


def pool_kwargs() -> dict[str, Any]:
    """``initializer`` and ``initargs`` for a ``ProcessPoolExecutor`` whose workers must not
    outlive this process."""
    return {"initializer": bind_to_parent, "initargs": (os.getpid(),)}


def end_workers(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: cancel what has not started and terminate the running workers
    (``shutdown`` alone would wait for every queued job, which then keep writing)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # the pool's own table of workers
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


def end_on_terminate() -> None:
    """SIGTERM / SIGHUP raise ``KeyboardInterrupt`` in the main thread (as Ctrl-C does)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and threading.current_thread() is threading.main_thread():
            signal.signal(sig, interrupt)
