"""Offline to online (issue #20): how well do offline AUC gains and off-policy estimates
predict the true online lift of a policy pair?

For each world, one campaign of several arms against a control: popularity (control)
against the oracle with ``blend`` on a grid (a dial of the true lift; blend 0 is
popularity itself, an A/A pair), and, on the first ``--trained-worlds`` worlds, the trained
models (DNN, AMEN, DeepFM, DCN) and popularity against DIN (control), whose offline
validation AUC / GAUC / logloss differences are known.  Every campaign has ``truth =
"counterfactual"``: each arm also serves the whole population alone, so the true online
lift is the policies' lift on these users and days, not the realised arms' (whose users
differ).  Each campaign goes through ``simab ope`` (``simab.cli.ope.run_ope``)
once per logging policy (uniform, and the pre-period's own epsilon-greedy logger) with
``--online`` on the first: every pair gets each OPE estimate (IPS, SNIPS, DM, DR) of its
CTR and CTCVR relative lift with its interval, the truth on the logged requests, the
online A/B estimate with its interval and the campaign's true lift.  The summary scores
each predictor against the true online lift: Spearman rank correlation, mean bias, and how
often its interval covers the true online lift and the logged-requests truth.

    .venv/bin/python scripts/offline_online.py --threads 1                         # the page, ~25 min
    .venv/bin/python scripts/offline_online.py --quick --out runs/offline-online   # a smoke run

Writes ``OUT/offline_online.json``, ``OUT/offline_online.md`` and ``OUT/offline_online.png``
(predicted against true online CTR lift, one panel per predictor, identity line); the
campaigns and OPE runs go under ``<cache>/../offline-online``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import experiment_kit as kit
import numpy as np

from simab.reports.formatting import fmt_number

ESTIMATORS = ("ips", "snips", "dm", "dr")
OFFLINE = ("auc", "gauc", "logloss")
METRICS = ("ctr", "ctcvr")


def world_list(args: argparse.Namespace) -> list[dict]:
    """The worlds of the fixed pairs: ``--worlds`` seeds of the default world from
    ``--seed`` on (the first also holds the trained pairs), and each ``--dial`` on the
    first seed."""
    worlds = [{"seed": args.seed + i, "dial": None, "table": {"preset": "default", "n_users": args.users}}
              for i in range(args.worlds)]
    for d in kit.split_list(args.dials):
        key, value = d.split("=", 1)
        table = {"preset": "default", "n_users": args.users, **kit.nest(key.split("."), float(value))}
        worlds.append({"seed": args.seed, "dial": d, "table": table})
    return worlds


def campaigns(args: argparse.Namespace) -> list[dict]:
    """Each campaign: a name, its world, its arms (first = control) as (policy, params)."""
    blends = [float(b) for b in kit.split_list(args.blends)]
    out = []
    for i, w in enumerate(world_list(args)):
        arms = {"popularity": ("popularity", {})}
        arms.update({f"oracle_b{b:g}": ("oracle", {"blend": b}) for b in blends})
        tag = f"s{w['seed']}" + ("-" + w["dial"].replace("=", "-") if w["dial"] else "")  # a run-folder name
        out.append({"name": f"fixed-{tag}", "world": w, "arms": arms})
        if i < args.trained_worlds and not w["dial"] and args.trained:
            models = kit.split_list(args.trained)
            arms = {m: (m, {}) for m in models}
            arms["popularity"] = ("popularity", {})
            out.append({"name": f"trained-{tag}", "world": w, "arms": arms})
    return out


def run_one(args: argparse.Namespace, camp: dict, root: Path) -> list[dict]:
    """``simab ope`` of one campaign under every logger (online with the first); one row per
    treatment-vs-control pair."""
    import simab
    from simab.cli.ope import run_ope

    training = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "cache_dir": args.cache}
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    n = len(camp["arms"])
    spec = simab.load_campaign(None, overrides={
        "name": camp["name"], "seed": camp["world"]["seed"], "duration_days": args.campaign_days,
        "world": camp["world"]["table"], "shards": 4, "workers": args.workers, "training": training,
        "truth": "counterfactual",
        "arms": {a: {"policy": p, "share": 1.0 / n, "params": dict(params)} for a, (p, params) in camp["arms"].items()},
    })
    loggers = kit.split_list(args.loggers)
    datas = finished(spec, root / camp["name"], loggers) if args.resume else None
    if datas is not None:
        print(f"{camp['name']}: reusing the finished runs under {root / camp['name']}", flush=True)
    else:
        datas = {}
        for j, logger in enumerate(loggers):
            t = time.perf_counter()
            datas[logger] = run_ope(spec, root / camp["name"] / logger, mode=logger, workers=args.workers, online=j == 0)
            print(f"{camp['name']} ({logger}{', online' if j == 0 else ''}): {time.perf_counter() - t:.0f}s", flush=True)
    first = next(iter(datas.values()))
    rows = []
    seconds = sum(d["runtime"]["wall_s"] for d in datas.values())
    for name in first["metrics"]["ctr"]["comparisons"]:
        treatment, control = name.split("_vs_", 1)
        row = {"campaign": camp["name"], "seed": camp["world"]["seed"], "dial": camp["world"]["dial"],
               "pair": name, "treatment": camp["arms"][treatment], "control": camp["arms"][control],
               "offline_difference": first["metrics"]["ctr"]["comparisons"][name].get("offline_difference"),
               "users": first["logging"]["users"], "campaign_seconds": seconds, "metrics": {}}
        for metric in METRICS:
            online = first["metrics"][metric]["comparisons"][name]["online"]
            m = {"online": online, "ope": {}}
            for logger, d in datas.items():
                c = d["metrics"][metric]["comparisons"][name]
                m["ope"][logger] = {"logged_truth": c["true_rel_lift"],
                                    "estimates": {e: {"rel_lift": c["estimates"][e]["rel_lift"],
                                                      "rel_ci": c["estimates"][e]["rel_ci"]} for e in ESTIMATORS}}
            row["metrics"][metric] = m
        rows.append(row)
    return rows


def finished(spec, folder: Path, loggers: list[str]) -> dict | None:
    """``--resume``: the ``ope.json`` of every logger of a campaign whose online run (under
    the first logger) has the same spec as ``spec``; None when anything is missing or differs."""
    import json

    stored = folder / loggers[0] / "campaign" / "spec.json"
    paths = [folder / lg / "ope.json" for lg in loggers]
    if not stored.exists() or not all(p.exists() for p in paths):
        return None
    old = json.loads(stored.read_text())
    old.pop("_simab", None)  # the versions the runner adds
    if old != json.loads(spec.model_dump_json()):
        return None
    return {lg: json.loads(p.read_text()) for lg, p in zip(loggers, paths, strict=True)}


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (None with fewer than 3 pairs or a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def same_slates(row: dict, loggers: list[str]) -> bool:
    """An A/A pair: the two arms show the same slates on every logged request (blend 0
    ranks by popularity), so every off-policy estimate of the lift is exactly 0."""
    return all(row["metrics"]["ctr"]["ope"][lg]["logged_truth"] == 0.0 for lg in loggers)


#: The subsets of pairs each predictor is scored on: key -> (page heading, row filter).
SUBSETS = {
    "all": ("all pairs", lambda r, loggers: True),
    "without_aa": ("without the A/A pairs", lambda r, loggers: not same_slates(r, loggers)),
    "trained": ("trained pairs only (both arms trained: offline differences known)",
                lambda r, loggers: bool(r["offline_difference"])),
}


def predictors(rows: list[dict], metric: str, loggers: list[str]) -> dict[str, list[dict]]:
    """Per predictor, one point per pair: its prediction (and interval where it has one),
    the true online lift and, for OPE, the truth on the logged requests."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        m = r["metrics"][metric]
        true = m["online"]["true_rel_lift"] if m["online"] else None
        if not _finite(true):
            continue
        base = {"pair": f"{r['campaign']}:{r['pair']}", "true": true}
        if m["online"] and _finite(m["online"]["rel_lift"]):
            out.setdefault("online A/B", []).append({**base, "pred": m["online"]["rel_lift"], "ci": m["online"]["rel_ci"]})
        for logger in loggers:
            o = m["ope"][logger]
            for e in ESTIMATORS:
                est = o["estimates"][e]
                if _finite(est["rel_lift"]):
                    out.setdefault(f"{e.upper()} ({logger})", []).append(
                        {**base, "pred": est["rel_lift"], "ci": est["rel_ci"], "logged_truth": o["logged_truth"]})
        d = r["offline_difference"]
        if d:
            for k in OFFLINE:
                if _finite(d.get(k)):
                    # lower logloss is better: its difference enters with the sign flipped
                    out.setdefault(_offline_name(k), []).append({**base, "pred": -d[k] if k == "logloss" else d[k]})
    order = ["online A/B", *[f"{e.upper()} ({lg})" for lg in loggers for e in ESTIMATORS],
             *[_offline_name(k) for k in OFFLINE]]
    return {k: out[k] for k in order if k in out}


def _offline_name(key: str) -> str:
    return f"offline -{key} diff" if key == "logloss" else f"offline {key} diff"


def score(points: list[dict]) -> dict:
    """Spearman with the true online lift, mean bias, interval coverage of the true online
    lift and of the logged-requests truth (None where a predictor has no such thing)."""
    pred = [p["pred"] for p in points]
    true = [p["true"] for p in points]
    with_ci = [p for p in points if p.get("ci") and all(_finite(c) for c in p["ci"])]
    with_logged = [p for p in with_ci if _finite(p.get("logged_truth"))]
    offline = "logged_truth" not in points[0] and "ci" not in points[0]
    return {"n": len(points), "spearman": spearman(pred, true),
            "mean_bias": None if offline else float(np.mean(np.subtract(pred, true))),
            "mean_abs_error": None if offline else float(np.mean(np.abs(np.subtract(pred, true)))),
            "covers_online_truth": (sum(p["ci"][0] <= p["true"] <= p["ci"][1] for p in with_ci) / len(with_ci)
                                    if with_ci else None),
            "covers_logged_truth": (sum(p["ci"][0] <= p["logged_truth"] <= p["ci"][1] for p in with_logged)
                                    / len(with_logged) if with_logged else None)}


def render(summary: dict) -> str:
    """The results page of a summary (its JSON is written next to it)."""
    s = summary["settings"]
    lines = ["# Offline to online: which offline signal predicts the true online lift?", "",
             "Generated by `scripts/offline_online.py " + " ".join(summary["argv"]) + "` "
             f"({summary['wall_s'] / 60:.0f} min of OPE runs and campaigns, one process at a time with 2 campaign "
             "workers, on a loaded 2-core machine; `--resume` reuses the finished campaigns of an earlier run "
             "under `<cache>/../offline-online` when their spec is the same).", "",
             f"Worlds: the `default` preset at {s['users']:,} users, seeds {s['seeds']}"
             + (f", dials {s['dials']}" if s["dials"] else "") + f"; campaigns of {s['campaign_days']:g} day(s); "
             f"oracle blends {s['blends']} against popularity on every world; trained models "
             f"({', '.join(s['trained']) or 'none'}, {s['epochs']} epoch(s), the first the control, and popularity "
             f"against it) on the first {s['trained_worlds']} seed(s). "
             f"OPE from a pre-period logged by {', '.join(f'`{lg}`' for lg in s['loggers'])} "
             "(docs/ope.md); the online A/B estimate and the true online lift from the campaign's report, "
             "whose truth is counterfactual (each arm also serves every user alone: the policies' lift on "
             f"the campaign's users and days) ({1 - s['alpha']:.0%} intervals). {len(summary['rows'])} pairs.", ""]
    for metric in METRICS:
        for key, (what, _) in SUBSETS.items():
            lines += [f"## {metric.upper()} relative lift: {what}", "",
                      "Per predictor: Spearman rank correlation with the true online lift, mean bias and mean "
                      "absolute error (prediction - true online lift; n/a for offline metric differences, which "
                      "are not lifts), and the share of pairs whose interval covers the true online lift / the "
                      "truth on the logged requests."
                      + (" An A/A pair (blend 0: the control's slates) has every off-policy estimate exactly 0 "
                         "with a zero-width interval and a true lift of 0, so it is covered trivially."
                         if key == "all" else ""), ""]
            lines += kit.md_table(["predictor", "pairs", "Spearman", "mean bias", "mean abs error",
                                   "covers online truth", "covers logged truth"],
                                  [[k, v["n"], fmt_number(v["spearman"], "+.2f"), fmt_number(v["mean_bias"], "+.1%"),
                                    fmt_number(v["mean_abs_error"], ".1%"), fmt_number(v["covers_online_truth"], ".0%"),
                                    fmt_number(v["covers_logged_truth"], ".0%")]
                                   for k, v in summary["scores"][key][metric].items()])
            lines.append("")
    loggers = s["loggers"]
    header = ["pair", "offline AUC diff", "true online", "online A/B [CI]",
              *[f"logged truth ({lg})" for lg in loggers],
              *[f"{e.upper()} ({lg}) [CI]" for lg in loggers for e in ("ips", "dr")], "DM (uniform)"]
    lines += ["## The pairs (CTR relative lift)", ""]
    body = []
    for r in summary["rows"]:
        m = r["metrics"]["ctr"]
        o = m["online"] or {}
        ci = lambda x: f"{kit.pct(x['rel_lift'])} [{kit.pct(x['rel_ci'][0])}, {kit.pct(x['rel_ci'][1])}]"  # noqa: E731
        auc = r["offline_difference"]["auc"] if r["offline_difference"] else None
        body.append([f"{r['campaign']}: {r['pair']}", fmt_number(auc, "+.4f"), kit.pct(o.get("true_rel_lift")), ci(o) if o else "n/a",
                     *[kit.pct(m["ope"][lg]["logged_truth"]) for lg in loggers],
                     *[ci(m["ope"][lg]["estimates"][e]) for lg in loggers for e in ("ips", "dr")],
                     kit.pct(m["ope"][loggers[0]]["estimates"]["dm"]["rel_lift"])])
    lines += kit.md_table(header, body)
    lines += ["", "![predicted against true online CTR lift](offline_online.png)", ""]
    return "\n".join(lines)


def figure(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preds = predictors(summary["rows"], "ctr", summary["settings"]["loggers"])
    names = list(preds)
    cols = 4
    rows_n = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.4 * cols, 3.0 * rows_n), dpi=100, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        pts = preds[name]
        x = np.array([p["true"] for p in pts])
        y = np.array([p["pred"] for p in pts])
        if all(p.get("ci") for p in pts):
            lo = np.array([p["ci"][0] for p in pts])
            hi = np.array([p["ci"][1] for p in pts])
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o", ms=3, capsize=2, lw=0.8)
        else:
            ax.plot(x, y, "o", ms=4)
        if not name.startswith("offline"):
            span = [min(x.min(), y.min()), max(x.max(), y.max())]
            ax.plot(span, span, "k--", lw=0.8)
        rho = summary["scores"]["all"]["ctr"][name]["spearman"]
        ax.set_title(f"{name}: rho {fmt_number(rho, '+.2f')}", fontsize=8)
        ax.set_xlabel("true online CTR lift", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags (``--quick``: one world of 150 users, blends 0 and 1, DNN against DIN)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kit.add_common_args(ap, users=1500, campaign_days=1.0, users_help="world n_users (the preset has 2000)",
                        seeds_help=None)
    ap.add_argument("--worlds", type=int, default=4, help="default-world seeds of the fixed pairs (from --seed)")
    ap.add_argument("--dials", default="response.user_click_bias_sd=1.5",
                    help="extra worlds of the fixed pairs on the first seed, KEY=VALUE comma-separated")
    ap.add_argument("--blends", default="0,0.05,0.1,0.2,0.4,1", help="oracle blends against popularity")
    ap.add_argument("--trained", default="din,dnn,amen,deepfm,dcn",
                    help="trained arms (the first is the control); '' for none")
    ap.add_argument("--trained-worlds", type=int, default=2, help="worlds (the first seeds) with the trained arms")
    ap.add_argument("--loggers", default="uniform,epsilon", help="logging policies of the OPE pre-period")
    ap.add_argument("--workers", type=int, default=2, help="campaign / pre-period processes")
    ap.add_argument("--resume", action="store_true",
                    help="reuse the finished OPE runs and campaigns under <cache>/../offline-online whose spec is the same")
    return kit.apply_quick(ap.parse_args(argv), {"users": 150, "worlds": 1, "blends": "0,1", "trained": "dnn,din",
                                                    "trained_worlds": 1, "dials": "", "workers": 1})


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    root = Path(args.cache).parent / "offline-online"
    rows: list[dict] = []
    for camp in campaigns(args):
        rows += run_one(args, camp, root)
    loggers = kit.split_list(args.loggers)
    from simab.reports.json_numbers import json_safe
    from simab.spec import load_campaign

    summary = json_safe({
        "argv": argv, "wall_s": sum(r["campaign_seconds"] for r in {r["campaign"]: r for r in rows}.values()),
        "script_s": time.perf_counter() - started,
        "settings": {"users": args.users, "seeds": [w["seed"] for w in world_list(args) if not w["dial"]],
                     "dials": kit.split_list(args.dials), "campaign_days": args.campaign_days,
                     "blends": [float(b) for b in kit.split_list(args.blends)], "trained": kit.split_list(args.trained),
                     "trained_worlds": args.trained_worlds, "epochs": args.epochs, "max_steps": args.max_steps, "loggers": loggers,
                     "alpha": load_campaign(None).alpha},
        "scores": {key: {m: {k: score(v) for k, v in predictors([r for r in rows if keep(r, loggers)], m,
                                                                 loggers).items()} for m in METRICS}
                   for key, (_, keep) in SUBSETS.items()},
        "rows": rows,
    })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure(summary, out / "offline_online.png")
    page = kit.write_page(out, "offline_online", summary, kit.keep_notes(out / "offline_online.md", render(summary)))
    print(page.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
