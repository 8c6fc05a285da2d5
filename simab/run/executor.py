"""The one executor of independent jobs: a campaign's shards (and its counterfactual
worlds' shards), the pre-period's shards and a sweep's runs all go through it.

A job is a top-level function applied to one picklable argument.  With one worker the
jobs run here, one after the other; with more they go to a local pool of processes started
by ``spawn`` (a fresh interpreter each: nothing forked from the parent, the same on every
platform), or to Ray (``backend = "ray"``).  Results come back as jobs finish, each with
its job's index: a caller that writes files orders them by job, never by completion, so
what it writes does not depend on the number of workers.

An executor lives for its ``with`` block.  A campaign opens one and runs its pre-period,
its shards and its counterfactual shards in it, so a worker process starts once per run,
and :func:`process_memo` lets a job reuse what an earlier job of the same executor built in
that process (the world, the arms' policies).  The executor is the one place where worker
processes are started and ended: on an error it cancels the jobs not yet started, and
:meth:`Executor.close` ends the pool.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeVar

from simab.errors import SimabError

BACKENDS = ("local", "ray")

J = TypeVar("J")
R = TypeVar("R")

_serial = itertools.count()


class Executor:
    """Runs jobs in this process (``workers = 1``), a local process pool or Ray."""

    def __init__(self, workers: int = 1, backend: str = "local"):
        if backend not in BACKENDS:
            raise SimabError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}", key="--backend")
        if workers < 1:
            raise ValueError(f"an executor needs at least one worker, got {workers}")
        self.workers = workers
        self.backend = backend
        # names this executor's entries in process_memo (unique across processes and time)
        self.token = f"{os.getpid()}-{next(_serial)}-{id(self):x}"
        self._pool: ProcessPoolExecutor | None = None
        self._remote: Any = None

    def map(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[int, R]]:
        """``(index, fn(job))`` for every job, as the jobs finish (in job order with one
        local worker).  A job's exception is raised here; the jobs not yet started are
        then cancelled."""
        jobs = list(jobs)
        if not jobs:
            return
        if self.backend == "ray":
            yield from self._map_ray(fn, jobs)
        elif self.workers == 1:
            for i, job in enumerate(jobs):
                yield i, run_job(self.token, fn, job)
        else:
            yield from self._map_pool(fn, jobs)

    def _map_pool(self, fn: Callable[[J], R], jobs: list[J]) -> Iterator[tuple[int, R]]:
        if self._pool is None:
            # processes start on demand, up to ``workers``: fewer jobs start fewer processes
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"))
        pending = {self._pool.submit(run_job, self.token, fn, job): i for i, job in enumerate(jobs)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=pending.__getitem__):
                    yield pending.pop(fut), fut.result()
        finally:  # an error here or a caller that stopped early: start nothing more
            for fut in pending:
                fut.cancel()

    def _map_ray(self, fn: Callable[[J], R], jobs: list[J]) -> Iterator[tuple[int, R]]:
        ray = start_ray(self.workers)
        if self._remote is None:
            self._remote = ray.remote(run_job)
        pending = {self._remote.remote(self.token, fn, job): i for i, job in enumerate(jobs)}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                yield pending.pop(ready[0]), ray.get(ready[0])
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):  # a task that finished meanwhile
                    ray.cancel(ref)

    def close(self) -> None:
        """End the worker processes (after the jobs they are running) and forget what
        this executor's jobs memoised in this process."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for key in [k for k in _memo if k[0] == self.token]:
            del _memo[key]

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start_ray(workers: int):
    """The ``ray`` module, with a local Ray started on ``workers`` CPUs if none is running."""
    try:
        import ray
    except ImportError:
        raise SimabError("the ray backend needs the 'ray' extra: pip install 'simab[ray]'", key="--backend") from None
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray


# --------------------------------------------------------------------------- per-process memo
# (executor token, key) -> value, in whichever process runs the jobs; _active holds the
# tokens whose jobs run in this process now (nested when a job runs an executor of its own
# with one worker, as a sweep's run does)
_memo: dict[tuple[str, Hashable], Any] = {}
_active: list[str] = []


def run_job(token: str, fn: Callable[[J], R], job: J) -> R:
    """Run one job of the executor ``token`` (top-level, so that a pool can pickle it).
    Entries that executors no longer running here memoised are dropped first: a Ray
    worker outlives the executors whose jobs it ran."""
    if not _active:
        for key in [k for k in _memo if k[0] != token]:
            del _memo[key]
    _active.append(token)
    try:
        return fn(job)
    finally:
        _active.pop()


def process_memo(key: Hashable, build: Callable[[], R]) -> R:
    """What ``build()`` returns, built once per process for the executor whose job is
    running (its worker processes end with it; in this process, :meth:`Executor.close`
    forgets it).  ``key`` must name everything the value depends on.  Outside a job,
    ``build()`` each time."""
    if not _active:
        return build()
    k = (_active[-1], key)
    if k not in _memo:
        _memo[k] = build()
    return _memo[k]
