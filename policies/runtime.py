"""How torch work runs in a process: the C allocator's treatment of large temporaries.

By default glibc serves a request above its mmap threshold (at most 32 MB, raised
dynamically) with a fresh ``mmap`` and returns it when freed, and trims the heap's free
top above 128 kB (twice the dynamic threshold): a model step whose temporaries are
megabytes to tens of MB (DIN's [requests, candidates, history, units] activations, LCN's
[batch, history, 2d] keys) then page-faults and zero-fills fresh pages at every call.  On
the project's machine that made elementwise ops on such tensors up to 10x slower, DIN's
bare scoring erratic across batch sizes (51-116k candidates/s instead of a flat
~130k) and LCN's training steps 1.4x slower (docs/benchmarks.md, "Neural arms").  With
large blocks served from the heap and freed memory kept for reuse, a process holds its
peak instead (the heap grows in steps of 1 GB of address space, whose untouched pages cost
no memory).  Other C libraries are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

#: glibc ``mallopt`` parameters (malloc.h).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def glibc_mallopt():
    """glibc's ``mallopt``, or ``None`` on another C library."""
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def keep_heap() -> bool:
    """From now on in this process, large blocks come from the heap and freed memory is
    kept for reuse (module docstring); what a process serving a neural arm calls once.
    Returns whether the settings were applied (glibc)."""
    mallopt = glibc_mallopt()
    if mallopt is None:
        return False
    mallopt(M_MMAP_THRESHOLD, 1 << 30)
    mallopt(M_TRIM_THRESHOLD, 1 << 32)
    mallopt(M_TOP_PAD, 1 << 30)
    return True


@contextlib.contextmanager
def heap_temporaries() -> Iterator[None]:
    """:func:`keep_heap` for the duration of the block (training); on leaving, glibc's
    settings return to what its dynamic threshold reaches with large blocks (32 MB,
    trimming above 64 MB), so the heap's free top goes back at the next free."""
    if not keep_heap():
        yield
        return
    try:
        yield
    finally:
        mallopt = glibc_mallopt()
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
        mallopt(M_TRIM_THRESHOLD, 64 << 20)
        mallopt(M_TOP_PAD, 128 << 10)
