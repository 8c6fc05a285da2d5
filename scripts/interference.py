"""Interference study: each experiment design's bias against the global effect, over the
market-tightness dial (issue #32).

    nice -n 5 .venv/bin/python scripts/interference.py --workers 2    # docs/results/interference.{md,json,png}
    .venv/bin/python scripts/interference.py --quick --out /tmp/interference   # a smoke run (~1 minute)

The world: the ``default`` preset (dense calibration: many events from few users) split into
``--markets`` markets of ``--users`` users each (``world.market.n_markets``); the most popular
10% of shop items are limited, each with a daily click budget of ``capacity`` clicks per 1,000
users (the tightness dial; ``--capacities``).  The policy pair: control ranks by the true
P(click) (``oracle``), treatment blends it half and half with popularity (``oracle`` with
``blend = 0.5``), which shifts demand towards the popular, budget-limited items.

Every market is one replicate: markets share the catalogue but nothing else (their users,
their budgets, their item split and switchback sequence are their own), so one simulation of
``--markets`` markets gives that many independent experiments.  Per tightness point the script
runs the two global worlds (every user in control; every user in treatment: the GTE of each
market) and one simulation per design; market (cluster) randomisation needs no simulation of
its own, since markets do not interact: a market's outcome in it is its outcome in its arm's
global world (tested in tests/simab/run/test_interference.py), and each replicate draws
``--market-group`` markets, half to each arm.  ``--aa`` runs the A/A battery (treatment =
control's policy) at the tightest point: each design's false-positive rate.

Per design and point: the mean bias of the estimated relative lift against each market's GTE
(with its Monte-Carlo standard error), the spread of the estimate around the GTE, the mean
reported standard error, the coverage of the GTE by the 95% interval, the power (p < 0.05 in
the GTE's direction), and the bias of the design's in-experiment truth (the interference part
of the bias, without sampling noise).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("ctr", "ctcvr", "cvr", "revenue")
ALPHA = 0.05
#: the relative intervals of the recorded study (the linear delta method; the report's default
#: since issue #27 is the log scale, docs/statistics.md)
REL_METHOD = "delta-linear"
#: (label, design table, analysis washouts in hours); the global worlds come first
DESIGNS = [
    ("user", {"kind": "user"}),
    ("budget_split", {"kind": "budget_split"}),
    ("item", {"kind": "item", "cluster": "item", "merge": "rank"}),
    ("two_sided", {"kind": "two_sided", "cluster": "item", "merge": "rank"}),
    ("switchback_1h", {"kind": "switchback", "block_hours": 1.0}),
    ("switchback_3h", {"kind": "switchback", "block_hours": 3.0}),
    ("switchback_6h", {"kind": "switchback", "block_hours": 6.0}),
]
#: switchback analyses with a washout (hours) on top of the plain ones: same simulation
WASHOUTS = {"switchback_3h": (1.0,), "switchback_6h": (2.0,)}
QUICK = {"markets": 12, "users": 120, "days": 0.5, "capacities": [1000.0, 5.0], "market_group": 4,
         "designs": ["user", "budget_split", "item", "two_sided", "switchback_3h"]}


def spec_of(args, capacity: float, design: dict, aa: bool = False):
    from simab.spec import load_campaign

    treatment = {"policy": "oracle", "share": 0.5, "params": {} if aa else {"blend": 0.5}}
    return load_campaign(None, overrides={"arms": {"control": {"policy": "oracle", "share": 0.5},
                                                   "treatment": treatment}},
                         set_values={"name": "interference", "seed": args.seed, "duration_days": args.days,
                                     "shards": 1, "truth": "oracle", "design": design,
                                     "world": {"preset": "default", "calibration": "dense",
                                               "n_users": args.markets * args.users, "pre_period_days": 1.0,
                                               "market": {"enabled": True, "n_markets": args.markets,
                                                          "capacity": capacity, "refresh_s": args.refresh_s,
                                                          "limited_share": 0.1}}})


class ExposureSink:
    """Keeps the exposure columns the analysis needs; drops the rest of the event log."""

    COLUMNS = ["arm", "user", "ts", "item", "clicked", "converted", "p_click", "p_convert"]

    def __init__(self):
        self.parts = []

    def write(self, name, table) -> None:
        if name == "exposures" and table.num_rows:
            self.parts.append(table.select(self.COLUMNS))

    def table(self):
        import pyarrow as pa

        from simab.reports.run_data import decode_dictionaries

        return decode_dictionaries(pa.concat_tables(self.parts).combine_chunks())


def simulate(task: dict) -> dict:
    """One simulation (a global world or a design) of one tightness point, analysed per market."""
    import torch

    from simab.engine.engines import make_simulation
    from simab.run.arm_policies import build_policy
    from simab.run.design import item_arms, item_clusters, markets_of, shard_setup
    from simab.simulators.market import limited_items
    from simab.simulators.world import World

    torch.set_num_threads(1)
    args = argparse.Namespace(**task["args"])
    spec = spec_of(args, task["capacity"], task["design"], task["aa"])
    world = World.build(spec.world, spec.seed)
    policies = {a: build_policy({"kind": "fixed", "name": s.policy, "params": s.params}, world)
                for a, s in spec.arms.items()}
    started = time.perf_counter()
    setup = shard_setup(spec, world, 0, task["force_arm"], policies)
    sink = ExposureSink()
    sim = make_simulation("wave", world, setup.plan, list(spec.arms), setup.policies, campaign=spec.name,
                          serving=spec.serving, unit=setup.unit, session_arm=setup.session_arm, sink=sink,
                          market=setup.market, market_pools=setup.market_pools)
    sim.run()
    exp = sink.table()
    users = exp["user"].to_numpy()
    market = markets_of(spec, users)
    out = {"label": task["label"], "capacity": task["capacity"], "aa": task["aa"],
           "wall_s": time.perf_counter() - started, "exposures": exp.num_rows, "market": _market_stats(setup.market)}
    from simab.reports import designs

    limited = np.isin(exp["item"].to_numpy(), limited_items(spec.world.market, world.catalog, world.seed))
    rows = designs.exposure_rows(exp["clicked"].to_numpy(zero_copy_only=False),
                                 exp["converted"].to_numpy(zero_copy_only=False),
                                 exp["p_click"].to_numpy(), exp["p_convert"].to_numpy(), limited)
    order = np.argsort(market, kind="stable")
    bounds = np.searchsorted(market[order], np.arange(args.markets + 1))
    if task["force_arm"] is not None:  # per market sums: the GTE and market randomisation
        sums = {k: np.add.reduceat(v[order], bounds[:-1]) if len(v) else np.zeros(args.markets)
                for k, v in rows.items()}
        empty = bounds[:-1] == bounds[1:]
        out["sums"] = {k: np.where(empty, 0.0, v).tolist() for k, v in sums.items()}
        return out
    arm = np.where(exp["arm"].to_numpy(zero_copy_only=False) == "control", 0, 1)
    item = exp["item"].to_numpy()
    ts = exp["ts"].to_numpy()
    kind = spec.design.kind
    if kind in ("item", "two_sided"):
        iarm = item_arms(spec, world.catalog, np.arange(args.markets))  # [M, items]
        item_arm = (iarm[market, item] == 1).astype(np.int64)
        cluster = item_clusters(world.catalog, spec.design.cluster)[item]
    analyses = {f"{task['label']}": 0.0, **{f"{task['label']}_washout{w:g}h": w
                                            for w in WASHOUTS.get(task["label"], ())}}
    results = {}
    for name, washout in analyses.items():
        per = {m: {k: [] for k in ("rel", "lo", "hi", "p", "inexp")} for m in METRICS}
        for mk in range(args.markets):
            sel = order[bounds[mk]:bounds[mk + 1]]
            r = {k: v[sel] for k, v in rows.items()}
            for m in METRICS:
                if kind in ("user", "budget_split"):
                    c = designs.one_way(m, users[sel], arm[sel], r, ALPHA, REL_METHOD)
                    cell = arm[sel]
                elif kind == "item":
                    c = designs.one_way(m, cluster[sel], item_arm[sel], r, ALPHA, REL_METHOD)
                    cell = item_arm[sel]
                elif kind == "two_sided":
                    c = designs.two_sided(m, arm[sel], item_arm[sel], users[sel], cluster[sel], r, ALPHA, REL_METHOD)
                    cell = np.where(arm[sel] == item_arm[sel], arm[sel], -1)
                else:  # switchback: units (block, arm); the washout's exposures left out
                    block_s = spec.design.block_hours * 3600.0
                    block = np.floor(ts[sel] / block_s).astype(np.int64)
                    keep = ts[sel] - block * block_s >= washout * 3600.0
                    cell = np.where(keep, arm[sel], -1)
                    c = designs.one_way(m, block * 4 + arm[sel], cell, r, ALPHA, REL_METHOD)
                for k, v in (("rel", c.rel_lift), ("lo", c.rel_ci[0]), ("hi", c.rel_ci[1]), ("p", c.p_value),
                             ("inexp", designs.expected_lift(m, cell, r))):
                    per[m][k].append(math.nan if v is None else float(v))
        results[name] = per
    out["results"] = results
    return out


def _market_stats(market) -> dict:
    """Share of (market, day, pool, limited item) sold out at some point, charged and over-cap events."""
    t = market.table(0)
    sold = ~np.isnan(t["sold_out_ts"].to_numpy(zero_copy_only=False))
    return {"sold_out_share": float(sold.mean()), "spent": int(np.sum(t["spent"].to_numpy())),
            "over_cap": int(np.sum(t["over_cap"].to_numpy())), "units": int(np.sum(t["units"].to_numpy()))}


# --------------------------------------------------------------------------- analysis
def gte(sums: dict, metric: str, idx=None) -> np.ndarray:
    """Per market (or pooled over ``idx``) expected value of ``metric`` in a global world."""
    from simab.reports.designs import EXPECTED

    num, den = EXPECTED[metric]
    n, d = np.asarray(sums[num]), np.asarray(sums[den])
    if idx is not None:
        return n[idx].sum() / d[idx].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return n / d


def summarise(est: np.ndarray, lo: np.ndarray, hi: np.ndarray, p: np.ndarray, inexp: np.ndarray,
              truth: np.ndarray) -> dict:
    """Bias, spread, coverage and power of one design's estimates against per-replicate truths."""
    ok = np.isfinite(est) & np.isfinite(truth)
    err = est[ok] - truth[ok]
    ci = ok & np.isfinite(lo) & np.isfinite(hi)
    half = (hi[ci] - lo[ci]) / 2
    z = 1.959963984540054
    direction = np.sign(truth) == np.sign(est)
    return {"replicates": int(ok.sum()), "bias": float(err.mean()) if len(err) else math.nan,
            "bias_mcse": float(err.std(ddof=1) / math.sqrt(len(err))) if len(err) > 1 else math.nan,
            "sd": float(err.std(ddof=1)) if len(err) > 1 else math.nan,
            "mean_se": float((half / z).mean()) if ci.any() else math.nan,
            "with_ci": int(ci.sum()),
            "coverage": float(((lo[ci] <= truth[ci]) & (truth[ci] <= hi[ci])).mean()) if ci.any() else math.nan,
            "power": float(((p[ok] < ALPHA) & direction[ok]).mean()) if ok.any() else math.nan,
            "rejections": float((p[ok] < ALPHA).mean()) if ok.any() else math.nan,
            "inexp_bias": float(np.nanmean(inexp[ok] - truth[ok])) if ok.any() else math.nan,
            "gte_mean": float(truth[ok].mean()) if ok.any() else math.nan}


def market_design(glob: dict, metric: str, args, rng: np.random.Generator, replicates: int) -> dict:
    """Market randomisation from the global worlds: each replicate draws ``market_group``
    markets, half to each arm; a market's outcome is its arm's global world's."""
    from simab.reports.comparison import ratio_comparison
    from simab.reports.designs import RATIO_METRICS

    num, den = RATIO_METRICS[metric]
    c, t = glob["control"], glob["treatment"]
    est, lo, hi, p, inexp, truth = ([] for _ in range(6))
    for _ in range(replicates):
        pick = rng.choice(args.markets, size=args.market_group, replace=False)
        mc, mt = pick[: args.market_group // 2], pick[args.market_group // 2:]
        cmp = ratio_comparison(np.asarray(c[num])[mc], np.asarray(c[den])[mc], np.asarray(t[num])[mt],
                               np.asarray(t[den])[mt], ALPHA)
        est.append(cmp.rel_lift)
        lo.append(cmp.rel_ci[0])
        hi.append(cmp.rel_ci[1])
        p.append(cmp.p_value)
        inexp.append(gte(t, metric, mt) / gte(c, metric, mc) - 1)
        truth.append(gte(t, metric, pick) / gte(c, metric, pick) - 1)
    return summarise(*(np.asarray(x, float) for x in (est, lo, hi, p, inexp, truth)))


def analyse(sims: list[dict], args) -> dict:
    """Every design at every point against the per-market GTE."""
    points = {}
    rng = np.random.default_rng(args.seed)
    for cap in args.capacities:
        for aa in (False, True):
            here = [s for s in sims if s["capacity"] == cap and s["aa"] == aa]
            if not here:
                continue
            glob = {s["label"].split("-", 1)[1]: s["sums"] for s in here if s["label"].startswith("global-")}
            glob.setdefault("treatment", glob["control"])  # A/A: the same policy, the same world
            stats = {s["label"]: {"wall_s": s["wall_s"], "exposures": s["exposures"], **s["market"]} for s in here}
            rows = {}
            for m in METRICS:
                with np.errstate(invalid="ignore", divide="ignore"):  # a market without clicks: no truth
                    truth = gte(glob["treatment"], m) / gte(glob["control"], m) - 1
                for s in here:
                    for name, per in s.get("results", {}).items():
                        r = per[m]
                        rows.setdefault(name, {})[m] = summarise(*(np.asarray(r[k], float) for k in
                                                                   ("rel", "lo", "hi", "p", "inexp")), truth)
                rows.setdefault("market", {})[m] = market_design(glob, m, args, rng, args.market_replicates)
                rows["market"][m]["users_per_replicate"] = args.market_group * args.users
            for name in rows:
                for m in METRICS:
                    rows[name][m].setdefault("users_per_replicate", args.users)
            points[f"{cap:g}{'-aa' if aa else ''}"] = {"capacity": cap, "aa": aa, "designs": rows, "sims": stats}
    return points


# --------------------------------------------------------------------------- page
def pct(v: float, digits: int = 2) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:+.{digits}f}%"


def page(result: dict, args, command: str, wall_s: float) -> str:
    pts = result["points"]
    lines = ["# Interference: each design's bias against the global effect", "",
             "Generated by `scripts/interference.py` (issue #32); the method is in its docstring and in "
             "[docs/interference.md](../interference.md).", "",
             f"Command: `{command}` — wall time {wall_s / 60:.1f} minutes on a shared 2-core machine "
             f"({args.workers} worker processes).", "",
             f"World: `default` preset, dense calibration, {args.markets} markets of {args.users} users "
             f"(each market one replicate), {args.days:g} day(s), the most popular 10% of shop items limited "
             f"with a daily click budget of *capacity* clicks per 1,000 users (serving index refreshed every "
             f"{args.refresh_s} s).  Control: `oracle`; treatment: `oracle` with `blend = 0.5` (half "
             "popularity: demand shifted towards the limited items).  Item-side designs mix the two policies "
             "by rank.  Market randomisation: "
             f"{args.market_replicates} draws of {args.market_group} markets, half to each arm.", "",
             "Tightness: share of (market, day, limited item) that sold out in the global control world / "
             "global treatment world.", ""]
    lines += ["| capacity | sold out (all control) | sold out (all treatment) | mean GTE of CTR |", "|---|---|---|---|"]
    for pt in pts.values():
        if pt["aa"]:
            continue
        s = pt["sims"]
        lines.append(f"| {pt['capacity']:g} | {100 * s['global-control']['sold_out_share']:.1f}% | "
                     f"{100 * s['global-treatment']['sold_out_share']:.1f}% | "
                     f"{pct(pt['designs']['user']['ctr']['gte_mean'])} |")
    titles = {"revenue": "revenue (clicks on the limited items per exposure: their budgets' spend rate)",
              "ctr": "CTR", "ctcvr": "CTCVR"}
    for metric in ("revenue", "ctr", "ctcvr"):
        lines += ["", f"## {titles[metric]}: bias, spread, coverage and power per design", "",
                  "bias = mean(estimated relative lift - the replicate's GTE) ± its Monte-Carlo SE; in-exp = "
                  "mean(in-experiment truth - GTE), the interference part of the bias; sd = spread of estimate - "
                  f"GTE over replicates, and the same scaled to {args.users} users (a market-randomised replicate "
                  f"holds {args.market_group} markets); SE = mean reported SE; coverage of the GTE by the 95% "
                  "interval (replicates with an interval); power = p < 0.05 in the GTE's direction.", ""]
        for pt in pts.values():
            if pt["aa"]:
                continue
            gte_mean = pt["designs"]["user"][metric]["gte_mean"]
            lines += [f"### capacity {pt['capacity']:g} (mean GTE {pct(gte_mean)})", "",
                      f"| design | replicates | bias | in-exp bias | sd | sd at {args.users} users | SE | "
                      "coverage of GTE | power |", "|---|---|---|---|---|---|---|---|---|"]
            for name, by in pt["designs"].items():
                r = by[metric]
                scaled = r["sd"] * math.sqrt(r["users_per_replicate"] / args.users)
                lines.append(f"| {name} | {r['replicates']} | {pct(r['bias'])} ± {100 * r['bias_mcse']:.2f} | "
                             f"{pct(r['inexp_bias'])} | {100 * r['sd']:.2f}% | {100 * scaled:.2f}% | "
                             f"{100 * r['mean_se']:.2f}% | "
                             + (f"{100 * r['coverage']:.1f}% ({r['with_ci']})" if r['coverage'] == r['coverage']
                                else "n/a") + f" | {100 * r['power']:.1f}% |")
            lines.append("")
    aa = [pt for pt in pts.values() if pt["aa"]]
    if aa:
        pt = aa[0]
        lines += ["## A/A battery: false-positive rate at nominal 5%", "",
                  f"Treatment = control's policy, capacity {pt['capacity']:g}; rate of p < 0.05 per design "
                  "(binomial SE about 1.5 points at 200 replicates).", "",
                  "| design | replicates | revenue FPR | CTR FPR | CTCVR FPR | CVR FPR |", "|---|---|---|---|---|---|"]
        for name, by in pt["designs"].items():
            lines.append(f"| {name} | {by['ctr']['replicates']} | {100 * by['revenue']['rejections']:.1f}% | "
                         f"{100 * by['ctr']['rejections']:.1f}% | "
                         f"{100 * by['ctcvr']['rejections']:.1f}% | {100 * by['cvr']['rejections']:.1f}% |")
        lines.append("")
    lines += ["## Findings", "", "<!-- notes -->", ""]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Bias (±2 MC-SE), spread and coverage of every design over the tightness dial, for
    revenue and CTR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [pt for pt in result["points"].values() if not pt["aa"]]
    caps = [pt["capacity"] for pt in pts]
    users = result["settings"]["users"]
    x = np.arange(len(caps))
    names = list(pts[0]["designs"])
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for row, metric in enumerate(("revenue", "ctr")):
        for i, name in enumerate(names):
            off = (i - len(names) / 2) * 0.05
            r = [pt["designs"][name][metric] for pt in pts]
            axes[row, 0].errorbar(x + off, [100 * v["bias"] for v in r], yerr=[200 * v["bias_mcse"] for v in r],
                                  marker="o", capsize=2, label=name)
            axes[row, 1].plot(x + off, [100 * v["sd"] * math.sqrt(v.get("users_per_replicate", 1) / users)
                                        for v in r], marker="o", label=name)
            axes[row, 2].plot(x + off, [100 * v["coverage"] for v in r], marker="o", label=name)
        axes[row, 0].axhline(0, color="k", lw=0.8)
        axes[row, 2].axhline(95, color="k", lw=0.8, ls="--")
        if metric == "revenue":  # short switchbacks' ratios explode when budgets bind: a log scale past 10
            for ax in axes[row, :2]:
                ax.set_yscale("symlog", linthresh=10)
        for ax, title in zip(axes[row], (f"{metric}: bias vs GTE (points, ±2 MC-SE)",
                                         f"{metric}: spread of estimate - GTE (points, at {users} users)",
                                         f"{metric}: coverage of the GTE (%)"), strict=True):
            ax.set_xticks(x, [f"{c:g}" for c in caps])
            ax.set_xlabel("capacity (clicks per 1,000 users per day; left = slack)")
            ax.set_title(title)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markets", type=int, default=200, help="markets per simulation (= replicates)")
    ap.add_argument("--users", type=int, default=150, help="users per market")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--capacities", type=float, nargs="+", default=[1000.0, 60.0, 30.0, 15.0])
    ap.add_argument("--refresh-s", type=int, default=900)
    ap.add_argument("--market-group", type=int, default=10, help="markets per market-randomised replicate")
    ap.add_argument("--market-replicates", type=int, default=200)
    ap.add_argument("--designs", nargs="+", default=[d for d, _ in DESIGNS], choices=[d for d, _ in DESIGNS])
    ap.add_argument("--no-aa", action="store_true", help="skip the A/A battery")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny markets, two points, five designs")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
        args.market_replicates = 20
    command = "python scripts/interference.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    designs = [(n, d) for n, d in DESIGNS if n in args.designs]
    base = {k: v for k, v in vars(args).items()}
    tasks = []
    for cap in args.capacities:
        for arm in ("control", "treatment"):
            tasks.append({"label": f"global-{arm}", "capacity": cap, "design": {"kind": "user"}, "force_arm": arm,
                          "aa": False, "args": base})
        tasks += [{"label": n, "capacity": cap, "design": d, "force_arm": None, "aa": False, "args": base}
                  for n, d in designs]
    if not args.no_aa:  # the A/A battery at the tightest point (both global worlds are the control's)
        cap = min(args.capacities)
        tasks.append({"label": "global-control", "capacity": cap, "design": {"kind": "user"}, "force_arm": "control",
                      "aa": True, "args": base})
        tasks += [{"label": n, "capacity": cap, "design": d, "force_arm": None, "aa": True, "args": base}
                  for n, d in designs]
    sims = []
    if args.workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            for i, s in enumerate(pool.map(simulate, tasks)):
                sims.append(s)
                print(f"[{i + 1}/{len(tasks)}] {s['label']} capacity {s['capacity']:g}{' A/A' if s['aa'] else ''}: "
                      f"{s['exposures']:,} exposures, {s['wall_s']:.0f}s", file=sys.stderr, flush=True)
    else:
        for i, t in enumerate(tasks):
            s = simulate(t)
            sims.append(s)
            print(f"[{i + 1}/{len(tasks)}] {s['label']} capacity {s['capacity']:g}{' A/A' if s['aa'] else ''}: "
                  f"{s['exposures']:,} exposures, {s['wall_s']:.0f}s", file=sys.stderr, flush=True)
    result = {"settings": {k: v for k, v in base.items() if k != "out"}, "points": analyse(sims, args)}
    result["wall_s"] = time.perf_counter() - started
    result["command"] = command
    md = write_outputs(result, Path(args.out))
    print(f"wrote {md} in {result['wall_s'] / 60:.1f} minutes", file=sys.stderr)
    return 0


def write_outputs(result: dict, out: Path) -> Path:
    """interference.json, interference.md (keeping the hand-written findings below its notes
    marker) and interference.png from a study's result."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "interference.json").write_text(json.dumps(result, indent=1, default=float, allow_nan=True))
    text = page(result, argparse.Namespace(**result["settings"]), result["command"], result["wall_s"])
    md = out / "interference.md"
    if md.exists() and "<!-- notes -->" in md.read_text():  # keep hand-written findings
        notes = md.read_text().split("<!-- notes -->", 1)[1]
        text = text.split("<!-- notes -->", 1)[0] + "<!-- notes -->" + notes
    md.write_text(text)
    figure(result, out / "interference.png")
    return md


if __name__ == "__main__":
    os.environ.setdefault("SIMAB_QUIET", "1")
    sys.exit(main())
