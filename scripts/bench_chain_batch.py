"""Micro-benchmark: rows/s of the batch scene-chain / need functions at B = 1 and 1024 vs
the old one-at-a-time code (the oracle copy in tests/simulators/test_chain_batch.py) and
the scalar wrappers, in one process.  Usage: .venv/bin/python scripts/bench_chain_batch.py"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "simulators"))
from test_chain_batch import OldChain, OldState  # noqa: E402

from simab.simulators.spec import world_spec  # noqa: E402
from simab.simulators.state import UserState  # noqa: E402
from simab.simulators.world import World  # noqa: E402

N_USERS = 1024


def rate(f, rows: int, reps: int = 5) -> float:
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return rows / best


def main() -> None:
    w = World.build(world_spec({"preset": "default", "n_users": N_USERS}), 5)
    chain, old = w.chain, OldChain(w.chain)
    g = np.random.default_rng(0)
    B = 1024
    users = g.integers(0, N_USERS, B)
    act, t, n = np.exp(g.normal(0, 0.7, B)), g.random(B) * 86400.0, g.integers(0, 3000, B)
    ul, al, tl, nl = users.tolist(), act.tolist(), t.tolist(), n.tolist()
    print("next_session rows/s:")
    print(f"  old scalar loop   {rate(lambda: [old.next_session(*x) for x in zip(ul, al, tl, nl, strict=True)], B):12,.0f}")
    print(f"  scalar wrapper    {rate(lambda: [chain.next_session(*x) for x in zip(ul, al, tl, nl, strict=True)], B):12,.0f}")
    print(f"  batch B=1         {rate(lambda: [chain.next_session_batch(*x) for x in zip(ul, al, tl, nl, strict=True)], B):12,.0f}")
    print(f"  batch B=1024      {rate(lambda: chain.next_session_batch(users, act, t, n), B, 50):12,.0f}")

    K = w.catalog.n_categories
    rows = np.arange(N_USERS)
    now = 3 * 86400.0 + g.random(N_USERS) * 86400.0  # about 3-4 needs per row
    base = UserState(w.spec, w.population.users(rows), w.catalog.centroid, 0.0)

    def scalar_old():
        st = copy.deepcopy(base)
        o = OldState(st)
        t0 = time.perf_counter()
        for r in range(N_USERS):
            o.arrive_needs(r, r, old, float(now[r]), K)
        return time.perf_counter() - t0

    def scalar_new():
        st = copy.deepcopy(base)
        t0 = time.perf_counter()
        for r in range(N_USERS):
            st.arrive_needs(r, r, chain, float(now[r]), K)
        return time.perf_counter() - t0

    def batch(size):
        st = copy.deepcopy(base)
        t0 = time.perf_counter()
        for lo in range(0, N_USERS, size):
            r = rows[lo:lo + size]
            st.arrive_needs_batch(r, r, chain, now[r], K)
        return time.perf_counter() - t0

    print(f"arrive_needs rows/s ({N_USERS} rows, ~3.5 needs each):")
    print(f"  old scalar loop   {N_USERS / min(scalar_old() for _ in range(3)):12,.0f}")
    print(f"  scalar wrapper    {N_USERS / min(scalar_new() for _ in range(3)):12,.0f}")
    print(f"  batch B=1         {N_USERS / min(batch(1) for _ in range(3)):12,.0f}")
    print(f"  batch B={N_USERS}       {N_USERS / min(batch(N_USERS) for _ in range(10)):12,.0f}")


if __name__ == "__main__":
    main()
