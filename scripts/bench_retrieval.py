"""Benchmark: candidate retrieval, requests per second, one request at a time vs batched.

    .venv/bin/python scripts/bench_retrieval.py [--preset default] [--n 60] [--requests 4096]

It imports the pre-batch scalar retrieval kept as the oracle in
tests/simab/engine/test_retrieval_batch.py).  For home and search, in one process: the old scalar
loop, ``Retriever.candidates`` (now a batch of one) in a loop, and ``candidates_batch`` at
B = 1 and B = 1024; the same random requests for all (the best of ``--repeat`` timings).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from simab.engine.retrieval import Retriever
from simab.simulators.spec import world_spec
from simab.simulators.world import World

# the oracle lives in the test suite (one copy of the old rule); Python puts scripts/ on the path, not the root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.simab.test_retrieval_batch import ScalarRetriever, random_requests  # noqa: E402


def _best(f, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="default")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--requests", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    w = World.build(world_spec({"preset": a.preset}), 0)
    new, old = Retriever(w), ScalarRetriever(w)
    R = a.requests
    rids, cats, shops, ctx = random_requests(w, R, seed=0, ctx_len=20)  # 20: the campaign's moveline + sequence tails
    lists = [ctx[i][ctx[i] >= 0] for i in range(R)]
    print(f"preset {a.preset}, n = {a.n}, {R} requests; requests per second")
    print(f"{'surface':8s} {'old scalar':>11s} {'candidates':>11s} {'batch B=1':>10s} {'batch B=1024':>13s}")
    for surface in ("home", "search"):
        def scalar(r, surface=surface):
            return lambda: [r.candidates(surface, a.n, int(rids[i]), int(cats[i]), int(shops[i]), lists[i])
                            for i in range(R)]

        def batched(b, surface=surface):
            return lambda: [new.candidates_batch(surface, a.n, rids[i:i + b], cats[i:i + b], shops[i:i + b],
                                                 ctx[i:i + b]) for i in range(0, R, b)]

        times = [_best(scalar(old), a.repeat), _best(scalar(new), a.repeat), _best(batched(1), a.repeat),
                 _best(batched(1024), a.repeat)]
        print(f"{surface:8s} " + " ".join(f"{R / t:{w_},.0f}" for t, w_ in zip(times, (11, 11, 10, 13), strict=True)))


if __name__ == "__main__":
    main()
