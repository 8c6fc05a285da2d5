"""Validate the world's dials (docs/world.md, "Dials"): sweep each dial over four values
(0 = phenomenon absent), run the logging policy on a sample of users, and measure the
signal the dial is for.  Writes ``OUT/dials.json``, ``OUT/dials.md`` and one figure per dial.

    .venv/bin/python scripts/world_dials.py --out docs/world/dials            # ~3 minutes

The curves must rise (or, for ``specific_share``, split) with the dial before any model is
trained on it (issue #19).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import experiment_kit as kit
import numpy as np

from simab.cli.world import sample_pre_period
from simab.simulators import signals
from simab.simulators.spec import deep_merge, world_spec
from simab.simulators.world import World

# dial name, preset, spec path of the dial, its values, base overrides, signal(s) it moves
DIALS = [
    ("intent.item_level", "moveline", ("intent", "item_level"), [0.0, 0.3, 0.6, 0.9], {}, ["item_intent_ratio"]),
    ("intent.strength", "moveline", ("intent", "strength"), [0.0, 1.0, 2.0, 3.0], {}, ["moveline_ratio"]),
    ("response.user_click_bias_sd", "default", ("response", "user_click_bias_sd"), [0.0, 0.5, 1.0, 1.5], {},
     ["user_click_icc"]),
    ("lifelong.item_affinity", "lifelong", ("lifelong", "item_affinity"), [0.0, 0.3, 0.6, 0.9], {"n_topics": 4},
     ["topic_ratio"]),
    ("interest.dormant_weight", "lifelong", ("interest", "dormant_weight"), [0.0, 0.2, 0.35, 0.5], {},
     ["lifelong_ratio"]),
    ("specific_share", "multiscenario3", ("specific_share",), [0.0, 0.33, 0.67, 1.0], {},
     ["shareable_correlation", "specific_correlation", "scenario_label_correlation"]),
]



def measure(preset: str, table: dict, users: int, days: float, seed: int) -> dict:
    w = World.build(world_spec(deep_merge({"preset": preset}, table)), seed)
    log = sample_pre_period(w, np.arange(min(users, w.spec.n_users), dtype=np.int64), days)
    s = signals.measure(w, log.exposures, log.features)
    return {k: getattr(s, k) for k in ("moveline_ratio", "lifelong_ratio", "scenario_label_correlation",
                                       "item_intent_ratio", "user_click_icc", "topic_ratio",
                                       "shareable_correlation", "specific_correlation")} | {
        "ctr": float(log.exposures.column("clicked").to_numpy().mean())}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/world-dials")
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = []
    started = time.perf_counter()
    for name, preset, path, values, base, sig in DIALS:
        rows = []
        for v in values:
            m = measure(preset, deep_merge(base, kit.nest(path, v)), args.users, args.days, args.seed)
            rows.append({"value": v, **m})
            print(f"  {name} = {v:g} ({preset}): " + ", ".join(f"{k} {m[k]:.3f}" for k in sig)
                  + f"; ctr {m['ctr']:.4f} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
        results.append({"dial": name, "preset": preset, "base": base, "signals": sig, "rows": rows})
        fig, ax = plt.subplots(figsize=(4.6, 3.2), dpi=110)
        for k in sig:
            ax.plot(values, [r[k] for r in rows], "o-", label=k)
        ax.set_xlabel(f"{name}" + (f" ({', '.join(f'{a}={b}' for a, b in base.items())})" if base else ""))
        ax.set_ylabel("signal")
        ax.set_title(f"{name} on {preset}: {args.users} users x {args.days:g} day", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        fig.savefig(out / f"{name.replace('.', '_')}.png")
        plt.close(fig)
    (out / "dials.json").write_text(json.dumps({"users": args.users, "days": args.days, "seed": args.seed,
                                                "dials": results}, indent=1))
    lines = [f"World dials: {args.users} users x {args.days:g} day, seed {args.seed} "
             f"(`scripts/world_dials.py --out {args.out}`)", "",
             "| dial | preset | signal | " + " | ".join(f"value {i + 1}" for i in range(4)) + " |",
             "|---|---|---|" + "---|" * 4]
    for r in results:
        for k in r["signals"]:
            cells = " | ".join(f"{x['value']:g}: {x[k]:.3f}" for x in r["rows"])
            lines.append(f"| {r['dial']} | {r['preset']} | {k} | {cells} |")
    (out / "dials.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
