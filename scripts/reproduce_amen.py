"""Reproduce AMEN (seed 000) on the ``moveline`` world: offline AUC/GAUC/logloss of
AMEN, DNN, DIN and the ablations over several seeds, the TSP reward-distribution figure,
and a simulated campaign DIN (control) vs AMEN (treatment).  Writes
``<out>/amen.md``, ``<out>/amen.json`` and ``<out>/amen_tsp_reward.png``.

    .venv/bin/python scripts/reproduce_amen.py --users 1000 --epochs 1 --seeds 3 --campaign-days 1

Models are trained through ``load_or_train`` with the campaign's trainer settings, so
the campaign reuses the checkpoints of the first seed (the campaign seed).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

#: label -> (policy, params beyond the shared ones); the ablations of issue 7.
MODELS: dict[str, tuple[str, dict]] = {
    "DNN": ("dnn", {}),
    "DIN": ("din", {}),
    "AMEN": ("amen", {}),
    "AMEN w/o TSP": ("amen", {"tsp_weight": 0.0}),
    "AMEN w/o scene pathway": ("amen", {"use_scene_pathway": False}),
    "AMEN w/o item pathway": ("amen", {"use_item_pathway": False}),
    "AMEN global TSP": ("amen", {"tsp_same_scenario": False}),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1000, help="world n_users (the preset has 5000)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--embedding-dim", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3, help="model seeds: seed, seed+1, ...")
    ap.add_argument("--seed", type=int, default=7, help="world and campaign seed (first model seed)")
    ap.add_argument("--campaign-days", type=float, default=1.0, help="0 skips the campaign")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated labels of MODELS")
    ap.add_argument("--cache", default=str(ROOT / "runs" / ".cache"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from simab.policies.checkpoint import load_or_train
    from simab.policies.trainer import TrainerConfig
    from simab.policies.world_features import feature_spec_of
    from simab.preperiod import pre_period, training_data
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world_table = {"preset": "moveline", "n_users": args.users}
    world = World.build(world_spec(world_table), args.seed)
    t0 = time.perf_counter()
    train, val = training_data(world, pre_period(world, Path(args.cache)))
    print(f"world: {args.users} users, fingerprint {world.fingerprint()}, train {train.n_rows:,} rows, "
          f"val {val.n_rows:,} rows, CTR {train.label.mean():.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    shared = {"embedding_dim": args.embedding_dim}
    labels = [m.strip() for m in args.models.split(",")]
    seeds = [args.seed + i for i in range(args.seeds)]
    results: dict[str, list[dict]] = {m: [] for m in labels}
    policies: dict[tuple[str, int], object] = {}
    for seed in seeds:
        cfg = TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps,
                            seed=seed, progress=False)
        for label in labels:
            name, extra = MODELS[label]
            params = {**shared, **extra}
            t = time.perf_counter()
            policy, m, cached = load_or_train(args.cache, world.spec_dict(), name, params, feature_spec_of(world.spec),
                                              seed, train, val, cfg)
            policies[(label, seed)] = policy
            mc = m["per_scenario"].get("marketing_channel", {})
            row = {"seed": seed, "auc": m["auc"], "gauc": m["gauc"], "logloss": m["logloss"],
                   "mc_auc": mc.get("auc", math.nan), "mc_gauc": mc.get("gauc", math.nan),
                   "seconds": m.get("train", {}).get("seconds", math.nan), "cached": cached}
            results[label].append(row)
            print(f"seed {seed} {label:24s} auc {row['auc']:.4f} gauc {row['gauc']:.4f} "
                  f"logloss {row['logloss']:.4f} mc_auc {row['mc_auc']:.4f} "
                  f"({'cached' if cached else f'{time.perf_counter() - t:.0f}s'})", flush=True)

    tsp = tsp_figure(policies, val, seeds[0], out) if {"AMEN", "AMEN w/o TSP"} <= set(labels) else None
    campaign = None
    if args.campaign_days > 0:
        campaign = run_campaign(args, world_table, shared)
    summary = {
        "size": {"users": args.users, "epochs": args.epochs, "max_steps": args.max_steps,
                 "batch_size": args.batch_size, "lr": args.lr, "embedding_dim": args.embedding_dim,
                 "seeds": seeds, "train_rows": int(train.n_rows), "val_rows": int(val.n_rows),
                 "world_fingerprint": world.fingerprint(), "campaign_days": args.campaign_days},
        "offline": results, "tsp": tsp, "campaign": campaign,
    }
    (out / "amen.json").write_text(json.dumps(summary, indent=2, default=float))
    (out / "amen.md").write_text(keep_notes(out / "amen.md", render(summary, args)))
    print(f"wrote {out / 'amen.md'}")


def tsp_figure(policies: dict, val, seed: int, out: Path) -> dict:
    """Histogram of the moveline reward on validation rows, clicked vs unclicked, with
    and without TSP (the paper's TSP figure, sec. 3.4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simab.policies.metrics import offline_metrics

    stats = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, label in zip(axes, ("AMEN w/o TSP", "AMEN"), strict=True):
        policy = policies[(label, seed)]
        r, y = [], []
        for batch in val.batches(4096, groups=policy.feature_groups):
            r.append(policy.moveline_reward(batch)[:, 0].numpy())
            y.append(batch["label"][:, 0].numpy())
        r, y = np.concatenate(r).astype(np.float64), np.concatenate(y).astype(bool)
        lo, hi = np.percentile(r, [1, 99])
        auc = offline_metrics(y.astype(float), r, np.zeros(len(r), np.int64), None)["auc"]
        stats[label] = {"mean_clicked": float(r[y].mean()), "mean_unclicked": float(r[~y].mean()),
                        "gap": float(r[y].mean() - r[~y].mean()), "std": float(r.std()),
                        "range_p1_p99": float(hi - lo), "reward_auc": float(auc)}
        bins = np.linspace(r.min(), r.max(), 60)
        ax.hist(r[~y], bins=bins, density=True, alpha=0.6, label="unclicked")
        ax.hist(r[y], bins=bins, density=True, alpha=0.6, label="clicked")
        ax.set_title(f"{label}: gap {stats[label]['gap']:.3f}, p1-p99 {hi - lo:.2f}")
        ax.set_xlabel("moveline reward (logit units)")
        ax.legend()
    axes[0].set_ylabel("density")
    fig.tight_layout()
    fig.savefig(out / "amen_tsp_reward.png", dpi=110)
    plt.close(fig)
    return stats


def run_campaign(args: argparse.Namespace, world_table: dict, shared: dict) -> dict:
    """DIN (control) vs AMEN (treatment) on the same world, seed and trainer settings."""
    import simab

    overrides = {
        "name": "amen_vs_din", "seed": args.seed, "duration_days": args.campaign_days, "world": world_table,
        "control": "control", "shards": 4,
        "arms": {"control": {"policy": "din", "share": 0.5, "params": dict(shared)},
                 "treatment": {"policy": "amen", "share": 0.5, "params": dict(shared)}},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                     "max_steps": args.max_steps, "cache_dir": args.cache},
    }
    if args.max_steps is None:
        overrides["training"].pop("max_steps")
    spec = simab.load_campaign(None, overrides=overrides)
    t = time.perf_counter()
    result = simab.run_campaign(spec, out=Path(args.cache).parent / "amen_vs_din")
    report = json.loads((Path(result.run_dir) / "report.json").read_text())
    out = {"seconds": time.perf_counter() - t, "run_dir": str(result.run_dir)}
    for metric in ("ctr", "ctcvr"):
        comp = report["metrics"][metric]["comparisons"]
        c = comp.get("treatment_vs_control") or next(iter(comp.values()))
        out[metric] = {k: c.get(k) for k in ("rel_lift", "rel_ci", "true_rel_lift", "p_value", "p_value_adjusted")}
    print(f"campaign: {json.dumps(out)}", flush=True)
    return out


def _ms(rows: list[dict], key: str) -> str:
    v = np.array([r[key] for r in rows], dtype=float)
    return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f}"


def render(s: dict, args: argparse.Namespace) -> str:
    size = s["size"]
    cmd = (f".venv/bin/python scripts/reproduce_amen.py --users {size['users']} --epochs {size['epochs']} "
           f"--seeds {len(size['seeds'])} --seed {size['seeds'][0]} --campaign-days {size['campaign_days']} "
           f"--embedding-dim {size['embedding_dim']} --batch-size {size['batch_size']} --lr {size['lr']}"
           + (f" --max-steps {size['max_steps']}" if size["max_steps"] else ""))
    lines = [
        "# AMEN on the `moveline` world (seed 000)",
        "",
        "Generated by `scripts/reproduce_amen.py`; regenerate with",
        "",
        f"    {cmd}",
        "",
        f"**Size run:** world `moveline` with n_users = {size['users']} (the preset has 5000), world seed "
        f"{size['seeds'][0]}, world fingerprint `{size['world_fingerprint']}`; {size['train_rows']:,} training and "
        f"{size['val_rows']:,} validation exposures (last 20% of the 4-day pre-period by time); "
        f"{size['epochs']} epoch(s), batch {size['batch_size']}, lr {size['lr']}, embedding_dim "
        f"{size['embedding_dim']}, model seeds {size['seeds']}; CPU, 1 thread.",
        "",
        "## Offline (validation), mean ± sample std over seeds",
        "",
        "| model | AUC | GAUC | logloss | AUC marketing_channel |",
        "|---|---|---|---|---|",
    ]
    for label, rows in s["offline"].items():
        lines.append(f"| {label} | {_ms(rows, 'auc')} | {_ms(rows, 'gauc')} | {_ms(rows, 'logloss')} | "
                     f"{_ms(rows, 'mc_auc')} |")
    if s["tsp"]:
        lines += ["", "## TSP: moveline reward, clicked vs unclicked (validation, seed "
                  f"{size['seeds'][0]})", "", "![TSP reward distribution](amen_tsp_reward.png)", "",
                  "| model | mean reward clicked | unclicked | gap | std | p1–p99 range | AUC of reward alone |",
                  "|---|---|---|---|---|---|---|"]
        for label, st in s["tsp"].items():
            lines.append(f"| {label} | {st['mean_clicked']:.4f} | {st['mean_unclicked']:.4f} | {st['gap']:.4f} | "
                         f"{st['std']:.4f} | {st['range_p1_p99']:.4f} | {st['reward_auc']:.4f} |")
    if s["campaign"]:
        c = s["campaign"]
        lines += ["", f"## Simulated campaign: DIN (control) vs AMEN (treatment), {size['campaign_days']} day(s)",
                  "", "| metric | rel. lift | 95% CI | true rel. lift | p (adjusted) |", "|---|---|---|---|---|"]
        for metric in ("ctr", "ctcvr"):
            m = c[metric]
            ci = m["rel_ci"] or [math.nan, math.nan]
            lines.append(f"| {metric.upper()} | {_pct(m['rel_lift'])} | [{_pct(ci[0])}, {_pct(ci[1])}] | "
                         f"{_pct(m['true_rel_lift'])} | {m['p_value_adjusted']} |")
    lines += ["", "## Verdict (computed)", ""] + verdict(s) + [""]
    return "\n".join(lines) + "\n"


def verdict(s: dict) -> list[str]:
    out = []
    off = s["offline"]
    if "AMEN" in off and "DIN" in off:
        for key in ("auc", "gauc"):
            a = np.array([r[key] for r in off["AMEN"]])
            d = np.array([r[key] for r in off["DIN"]])
            spread = max(a.std(ddof=1) if len(a) > 1 else 0.0, d.std(ddof=1) if len(d) > 1 else 0.0)
            beyond = a.mean() - d.mean() > spread
            out.append(f"- {key.upper()}: AMEN - DIN = {a.mean() - d.mean():+.4f} (larger seed std {spread:.4f}): "
                       f"{'AMEN better beyond the spread' if beyond else 'not beyond the spread'}.")
    c = s.get("campaign")
    if c:
        lo, hi = c["ctcvr"]["rel_ci"] or (math.nan, math.nan)
        out.append(f"- Campaign CTCVR lift CI [{_pct(lo)}, {_pct(hi)}] "
                   f"{'excludes' if lo > 0 or hi < 0 else 'includes'} 0.")
    return out


NOTES_START, NOTES_END = "<!-- notes start -->", "<!-- notes end -->"


def keep_notes(path: Path, text: str) -> str:
    """Carry the hand-written notes block of an existing page over to the new one."""
    if path.exists():
        old = path.read_text()
        if NOTES_START in old and NOTES_END in old:
            block = old[old.index(NOTES_START): old.index(NOTES_END) + len(NOTES_END)]
            return text + "\n" + block + "\n"
    return text + "\n" + NOTES_START + "\n(no notes yet)\n" + NOTES_END + "\n"


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}%"


if __name__ == "__main__":
    main()
