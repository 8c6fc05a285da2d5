"""Users per second of lifelong-history generation: the vectorised counter-based generator
(world version 4) against the per-user Philox loop it replaced (world version 3, kept
below for the comparison only), in the same process.

  .venv/bin/python scripts/bench_history.py [--preset default] [--users 1000 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simab.simulators.catalog import Csr
from simab.simulators.history import ACTION_P, pick_items
from simab.simulators.population import Users
from simab.simulators.rng import generator
from simab.simulators.spec import world_spec
from simab.simulators.streams import Stream
from simab.simulators.units import DAY
from simab.simulators.world import World


def _v3_one(world: World, users: Users, i: int, stream: str, length: int, groups: Csr, with_dormant: bool):
    """One user's history as world version 3 drew it (a numpy Philox Generator per user)."""
    g = generator(world.seed, stream, int(users.ids[i]))
    lf = world.spec.lifelong
    ts = np.sort(-lf.span_days * DAY * g.random(length))
    ia = users.active.shape[1]
    w = np.concatenate([users.active_w[i], users.dormant_w[i] if with_dormant else np.zeros(users.dormant.shape[1])])
    cats_all = np.concatenate([users.active[i], users.dormant[i]])
    recent = ts > -lf.dormant_recency_days * DAY
    w_recent = w.copy()
    w_recent[ia:] = 0.0
    u = g.random(length) * 0.9999999
    slot = np.where(recent, np.searchsorted(np.cumsum(w_recent / w_recent.sum()), u),
                    np.searchsorted(np.cumsum(w / w.sum()), u))
    cats = cats_all[np.minimum(slot, len(cats_all) - 1)]
    cats = np.where(g.random(length) < 0.15, g.integers(0, world.catalog.n_categories, length), cats)
    items = pick_items(groups, cats, g.random(length))
    actions = 1 + np.searchsorted(np.cumsum(ACTION_P), g.random(length) * 0.9999999)
    return items, actions, ts


def _v3_batch(world: World, users: Users, stream: str, length: int, groups: Csr, with_dormant: bool, max_len):
    keep = length if max_len is None else min(length, max_len)
    out = np.zeros((len(users), keep), np.int64)
    for i in range(len(users)):
        out[i] = _v3_one(world, users, i, stream, length, groups, with_dormant)[0][length - keep:]
    return out


def _rate(fn, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--users", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    world = World.build(world_spec({"preset": args.preset, "n_users": max(args.users)}), 0)
    spec, cat, h = world.spec, world.catalog, world.histories
    cases = {
        f"target(max_len=seq_len={spec.seq_len})": (
            lambda u: h.target(u, max_len=spec.seq_len),
            lambda u: _v3_batch(world, u, Stream.HISTORY_TARGET, spec.lifelong.target_length, cat.target_by_category,
                                False, spec.seq_len)),
        f"source(all {spec.lifelong.source_length})": (
            lambda u: h.source(u),
            lambda u: _v3_batch(world, u, Stream.HISTORY_SOURCE, spec.lifelong.source_length, cat.content_by_category,
                                True, None)),
    }
    print(f"preset {args.preset}: users/s, best of {args.repeat}")
    print(f"{'call':32s} {'B':>7s} {'v3 loop':>11s} {'v4 batch':>11s} {'speed-up':>9s}")
    for name, (new, old) in cases.items():
        for b in args.users:
            users = world.population.users(np.arange(b))
            r_old = _rate(lambda: old(users), b, args.repeat)  # noqa: B023 (called within the iteration)
            r_new = _rate(lambda: new(users), b, args.repeat)  # noqa: B023
            print(f"{name:32s} {b:7d} {r_old:11,.0f} {r_new:11,.0f} {r_new / r_old:8.1f}x")


if __name__ == "__main__":
    main()
