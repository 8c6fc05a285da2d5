"""Peer throughput: SARDINE's slate simulator (pip ``sardine-rec``), exposures/s with a cheap policy.

Run with the PEER venv's python, never with .venv (this script must not import simab, and
sardine-rec is not a dependency of simab):

    python3.11 -m venv /tmp/sardine-venv && /tmp/sardine-venv/bin/pip install sardine-rec
    OMP_NUM_THREADS=1 taskset -c 0 /tmp/sardine-venv/bin/python scripts/peer_sardine.py \\
        [--env sardine/SlateTopK-Bored-v0] [--steps 200000] [--policy random|topk]

It builds one of SARDINE's registered gymnasium environments with ``gym.make`` and steps it
``--steps`` times (resetting on termination; the reset's initial interaction is not
counted) with a policy that does no learning:

* ``random``: a uniform random slate of ``slate_size`` items (numpy integers per step);
* ``topk``: the same top-``slate_size`` items of a fixed random score every step.

exposures/s = slate_size x env steps / wall time of the stepping loop (policy included).
Prints a Markdown table row and a JSON line.  Named peer_*.py so that ``make bench``
(scripts/bench_*.py with .venv/bin/python) does not pick it up.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="sardine/SlateTopK-Bored-v0")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--policy", choices=("random", "topk"), default="random")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        import gymnasium as gym
        import numpy as np
        import sardine  # noqa: F401  (registers the sardine/* environments)
    except ImportError as e:
        print(f"peer_sardine: sardine-rec not importable ({e}); run with the peer venv's python "
              "(see the docstring). Nothing measured.")
        return 0

    env = gym.make(a.env)
    base = env.unwrapped
    k, n_items = int(base.slate_size), int(base.num_items)
    rng = np.random.default_rng(a.seed)
    fixed = np.argsort(-rng.random(n_items), kind="stable")[:k].astype(np.int64)
    if a.policy == "random":
        def act():
            return rng.integers(0, n_items, size=k)
    else:
        def act():
            return fixed.copy()  # a fresh array per step, as a policy would return

    env.reset(seed=a.seed)
    clicks = 0
    episodes = 0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        _, reward, terminated, truncated, _ = env.step(act())
        clicks += int(reward)
        if terminated or truncated:
            env.reset()
            episodes += 1
    wall = time.perf_counter() - t0
    exposures = k * a.steps
    res = {
        "simulator": "sardine-rec", "version": metadata.version("sardine-rec"), "env": a.env, "policy": a.policy,
        "slate_size": k, "num_items": n_items, "steps": a.steps, "episodes": episodes, "exposures": exposures,
        "clicks": clicks, "wall_s": round(wall, 3), "steps_per_s": round(a.steps / wall, 1),
        "exposures_per_s": round(exposures / wall, 1), "python": platform.python_version(),
        "numpy": np.__version__, "gymnasium": gym.__version__,
    }
    print("| simulator | env | policy | slate | steps | exposures | wall s | steps/s | exposures/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    print(f"| sardine-rec {res['version']} | {a.env} | {a.policy} | {k} | {a.steps:,} | {exposures:,} | "
          f"{wall:.1f} | {a.steps / wall:,.0f} | {exposures / wall:,.0f} |")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
