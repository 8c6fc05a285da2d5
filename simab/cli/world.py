"""``simab world PRESET``: build a world, run a short logging-policy pre-period on a sample
of its users, print a summary and write ``world.json`` (statistics and the three
seed-paper ``signals``), PNG figures and an HTML page that shows them.

The population and the lifelong histories are generated on demand, so a world of a
million users costs no more memory than its catalog; only the sampled users
(``--sample``, default 500) are simulated.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from simab.errors import SimabError
from simab.run.folder import Plan, output_folder
from simab.simulators.spec import PRESETS
from simab.simulators.world import World
from simab.worlds import world_spec_from

#: What ``simab world`` writes (simab.simulators.figures: the JSON, the page, its figures).
WORLD_FILES = ("world.json", "index.html", "realism.png", "signals.png", "ctr_by_position.png",
               "ctr_by_scenario.png", "sessions.png", "histories.png")
#: The short pre-period of ``simab world`` is at most a year (a campaign's longest).
MAX_DAYS = 365.0
#: ... over at most this many users (simulated in memory, one shard)
MAX_SAMPLE = 1_000_000


@dataclass
class SampleLog:
    """A pre-period of the logging policy over a sample of users (in memory)."""

    users: np.ndarray
    days: float
    exposures: pa.Table
    features: pa.Table
    requests: pa.Table
    moveline: pa.Table
    wall_s: float


def sample_pre_period(world: World, users: np.ndarray, days: float, *, shards: int = 1) -> SampleLog:
    """Run the logging policy (popularity + epsilon exploration, as ``preperiod.pre_period``)
    over ``[-days, 0)`` for ``users``; shards (hashed, as the campaign's) are simulated one
    after the other and only change how the users are grouped, never what any user does."""
    from simab.run.plan import shard_of
    from simab.run.preperiod import logging_simulation

    users = np.sort(np.asarray(users, np.int64))
    parts: dict[str, list[pa.Table]] = {k: [] for k in ("exposures", "features", "requests", "moveline")}
    started = time.perf_counter()
    shard = shard_of(world.seed, users, shards)
    for s in range(shards):
        mine = users[shard == s]
        if len(mine) == 0:
            continue
        sim = logging_simulation(world, mine, days, s)
        sim.run()
        for name, table in sim.tables().items():
            if name in parts:
                parts[name].append(table)
    tables = {k: pa.concat_tables(v) for k, v in parts.items()}
    return SampleLog(users, days, tables["exposures"], tables["features"], tables["requests"], tables["moveline"],
                     time.perf_counter() - started)


def run_world(preset: str, users: int | None = None, seed: int = 0, out: str | Path | None = None, *,
              sample: int = 500, days: float | None = None, source: str = "<cli>") -> dict:
    """Build world ``preset`` (a preset name or a TOML file with a ``[world]`` table), run
    the logging policy for ``days`` (default: the spec's pre-period, at most one day) over
    the first ``sample`` users, write ``world.json``, the PNG figures and ``index.html``
    to ``out``; returns the summary dict (``world.json``'s content)."""
    from simab.simulators.figures import draw_all, write_html, write_json
    from simab.simulators.summary import summarize

    ws = world_spec_from(str(preset), users=users, source=source)
    if sample < 1:
        raise SimabError("must be at least 1", source="--sample")
    if days is not None and not days > 0:
        raise SimabError("must be a positive number of days", source="--days")
    if seed < 0:
        raise SimabError(f"must be at least 0, got {seed}", source="--seed")
    if days is not None and days > MAX_DAYS:
        raise SimabError(f"must be at most {MAX_DAYS:g} days, got {days:g}", source="--days")
    days = float(days if days is not None else min(ws.pre_period_days, 1.0))
    t0 = time.perf_counter()
    world = World.build(ws, seed)
    build_s = time.perf_counter() - t0
    plan = Plan(files=list(WORLD_FILES))
    with output_folder(out if out is not None else f"world-{ws.preset}", kind="world", command="simab world",
                       plan=plan) as record:
        out = record.folder
        n = min(sample, ws.n_users)
        log = sample_pre_period(world, np.arange(n, dtype=np.int64), days)
        if log.exposures.num_rows == 0:
            raise SimabError(f"the {n:,} sampled users saw no exposure in {days:g} day(s): no statistic is "
                             "defined; raise --days or --sample", source="--days")
        s = summarize(world, log.exposures, log.requests, log.features, days, n)
        s["runtime"] = {"build_s": build_s, "simulate_s": log.wall_s,
                        "exposures_per_s": log.exposures.num_rows / max(log.wall_s, 1e-9),
                        "total_s": time.perf_counter() - t0}
        pngs = draw_all(s, out)
        write_json(s, out)
        write_html(s, pngs, out)
        for name in ["world.json", "index.html", *pngs]:
            record.add_file(name)
        record.save()
    return s


def _print_summary(s: dict, out: str) -> None:
    t, sig = s["totals"], s["signals"]
    print(f"world {s['preset']} ({s.get('calibration', 'realistic')}, seed {s['seed']}): {s['n_users']:,} users, {s['sampled_users']:,} simulated for "
          f"{s['pre_period_days']:g} day(s); {t['exposures']:,} exposures, {t['sessions']:,} sessions, "
          f"CTR {t['ctr']:.4f}, CVR {t['cvr']:.3f}")
    print(f"  {'scenario':<20}{'traffic':>9}{'CTR':>9}{'P(click)':>10}{'decay':>8}{'fitted':>14}")
    for name, v in s["scenarios"].items():
        print(f"  {name:<20}{v['traffic_observed']:>9.2f}{v['ctr']:>9.4f}{v['mean_p_click']:>10.4f}"
              f"{v['position_decay_spec']:>8.2f}{v['position_decay_fitted']:>8.2f} ± {v['position_decay_se']:.2f}")
    print(f"  signals: moveline_ratio {sig['moveline_ratio']:.2f}  lifelong_ratio {sig['lifelong_ratio']:.2f}  "
          f"scenario_label_correlation {sig['scenario_label_correlation']:.2f}")
    dials = {k: sig.get(k) for k in ("item_intent_ratio", "user_click_icc", "topic_ratio", "shareable_correlation",
                                     "specific_correlation")}
    print("  dial signals: " + "  ".join(f"{k} {v:.2f}" for k, v in dials.items() if v is not None and v == v))
    rows = s.get("realism", [])
    if rows:
        head = "realism targets" if s.get("calibration") == "realistic" else "realism (dense calibration: no targets)"
        print(f"  {head}:")
        for t in rows:
            mark = {True: "met", False: "MISSED", None: ""}[t["met"]]
            print(f"    {t['name']:<30}{t['measured']:>10.4g}   target {t['lo']:g} .. {t['hi']:g}   {mark}")
    r = s["runtime"]
    print(f"  {r['total_s']:.1f}s ({r['exposures_per_s']:,.0f} exposures/s); wrote {out}/world.json, index.html and figures")


def world_main(argv: list[str]) -> int:
    """``simab world PRESET [--users N] [--seed N] [--out DIR] [--sample N] [--days D]``."""
    from simab.cli.args import Parser, finite_float, int_at_least
    from simab.spec import MAX_SEED, MAX_USERS

    p = Parser(prog="simab world", description=__doc__.split("\n\n")[0])
    p.add_argument("preset", help=f"one of {', '.join(PRESETS)}, or a TOML file with a [world] table")
    p.add_argument("--users", type=int_at_least(2, MAX_USERS),
                   help=f"users in the world, 2 to {MAX_USERS:,} (population and histories are on demand; default: "
                   "the preset's)")
    p.add_argument("--seed", type=int_at_least(0, MAX_SEED), default=0, help=f"world seed, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--out", help="output folder (default: world-PRESET)")
    p.add_argument("--sample", type=int_at_least(1, MAX_SAMPLE), default=500,
                   help=f"users simulated in the short pre-period, 1 to {MAX_SAMPLE:,} (default 500; the world "
                   "keeps --users)")
    p.add_argument("--days", type=finite_float(positive=True, low=1e-3, high=MAX_DAYS),
                   help=f"length of the short pre-period in days, in [0.001, {MAX_DAYS:g}] (default: the preset's, "
                   "at most 1)")
    try:
        args = p.parse_args(argv)
        out = args.out or f"world-{Path(args.preset).stem}"
        s = run_world(args.preset, args.users, args.seed, out, sample=args.sample, days=args.days)
    except SimabError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    _print_summary(s, out)
    return 0
