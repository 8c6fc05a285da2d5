"""Reproduce AMEN (seed 000) on the ``moveline`` world: offline AUC/GAUC/logloss of
AMEN, DNN, DIN and the ablations over several seeds, the TSP reward-distribution figure,
and a simulated campaign DIN (control) vs AMEN (treatment).  Writes
``<out>/amen.md``, ``<out>/amen.json`` and ``<out>/amen_tsp_reward.png``.

    .venv/bin/python scripts/reproduce_amen.py --users 1000 --epochs 1 --seeds 3 --campaign-days 1

Models are trained through ``load_or_train`` with the campaign's trainer settings, so
the campaign reuses the checkpoints of the first seed (the campaign seed).  ``--quick`` runs
every part at the smallest settings (a smoke test; pass ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import experiment_kit as kit
import numpy as np
import torch

#: The models and ablations of issue 7, trained on every seed.
MODELS: list[kit.Model] = [
    kit.Model("DNN", "dnn"),
    kit.Model("DIN", "din"),
    kit.Model("AMEN", "amen"),
    kit.Model("AMEN w/o TSP", "amen", {"tsp_weight": 0.0}),
    kit.Model("AMEN w/o scene pathway", "amen", {"use_scene_pathway": False}),
    kit.Model("AMEN w/o item pathway", "amen", {"use_item_pathway": False}),
    kit.Model("AMEN global TSP", "amen", {"tsp_same_scenario": False}),
]
BY_LABEL = {m.label: m for m in MODELS}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kit.add_common_args(ap, users=1000, campaign_days=1.0)
    ap.add_argument("--models", default=",".join(BY_LABEL), help="comma-separated labels of MODELS")
    return kit.apply_quick(ap.parse_args())


def world_table(users: int) -> dict:
    return {"preset": "moveline", "n_users": users}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = kit.load_world(world_table(args.users), args.seed, args.cache)
    train, val = data.train, data.val
    print(f"world: {args.users} users, fingerprint {data.fingerprint}, train {train.n_rows:,} rows, "
          f"val {val.n_rows:,} rows, CTR {train.label.mean():.4f}", flush=True)
    shared = {"embedding_dim": args.embedding_dim}
    labels = [m.strip() for m in args.models.split(",")]
    seeds = kit.model_seeds(args)

    def params_for(model: kit.Model) -> dict:
        return {**shared, **model.params}

    def row(seed: int, m: dict, cached: bool) -> dict:
        mc = m["per_scenario"].get("marketing_channel", {})
        return kit.offline_row(seed, m, cached, mc_auc=mc.get("auc", math.nan), mc_gauc=mc.get("gauc", math.nan))

    grid = kit.train_grid([BY_LABEL[label] for label in labels], seeds, kit.checkpoint_trainer(data, args.cache),
                          lambda seed: kit.trainer_config(args, seed), params_for=params_for, row=row, keep_policies=True)

    tsp = tsp_figure(grid.policies, val, seeds[0], out) if {"AMEN", "AMEN w/o TSP"} <= set(labels) else None
    campaign = None
    if args.campaign_days > 0:
        campaign = run_campaign(args, shared)
    summary = {
        "size": {"users": args.users, "epochs": args.epochs, "max_steps": args.max_steps,
                 "batch_size": args.batch_size, "lr": args.lr, "embedding_dim": args.embedding_dim,
                 "seeds": seeds, "train_rows": int(train.n_rows), "val_rows": int(val.n_rows),
                 "world_fingerprint": data.fingerprint, "campaign_days": args.campaign_days},
        "offline": grid.rows, "tsp": tsp, "campaign": campaign,
    }
    page = kit.write_page(out, "amen", summary, kit.keep_notes(out / "amen.md", render(summary, args)))
    print(f"wrote {page}")


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


def run_campaign(args: argparse.Namespace, shared: dict) -> dict:
    """DIN (control) vs AMEN (treatment) on the same world, seed and trainer settings."""
    c = kit.ab_campaign(args, "amen_vs_din", world_table(args.users), ("din", shared), ("amen", shared))
    out: dict = {"seconds": c.seconds, "run_dir": str(c.run_dir)}
    for metric in ("ctr", "ctcvr"):
        out[metric] = kit.comparison_fields(c.report, metric,
                                            ("rel_lift", "rel_ci", "true_rel_lift", "p_value", "p_value_adjusted"))
    print(f"campaign: {json.dumps(out)}", flush=True)
    return out


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
    ]
    lines += kit.md_table(("model", "AUC", "GAUC", "logloss", "AUC marketing_channel"),
                          ([label, *(kit.mean_std([r[k] for r in rows]) for k in ("auc", "gauc", "logloss", "mc_auc"))]
                           for label, rows in s["offline"].items()))
    if s["tsp"]:
        lines += ["", "## TSP: moveline reward, clicked vs unclicked (validation, seed "
                  f"{size['seeds'][0]})", "", "![TSP reward distribution](amen_tsp_reward.png)", ""]
        keys = ("mean_clicked", "mean_unclicked", "gap", "std", "range_p1_p99", "reward_auc")
        lines += kit.md_table(("model", "mean reward clicked", "unclicked", "gap", "std", "p1–p99 range",
                               "AUC of reward alone"),
                              ([label, *(f"{st[k]:.4f}" for k in keys)] for label, st in s["tsp"].items()))
    if s["campaign"]:
        c = s["campaign"]
        lines += ["", f"## Simulated campaign: DIN (control) vs AMEN (treatment), {size['campaign_days']} day(s)",
                  ""]
        rows = []
        for metric in ("ctr", "ctcvr"):
            m = c[metric]
            ci = m["rel_ci"] or [math.nan, math.nan]
            rows.append([metric.upper(), kit.pct(m["rel_lift"]), f"[{kit.pct(ci[0])}, {kit.pct(ci[1])}]",
                         kit.pct(m["true_rel_lift"]), m["p_value_adjusted"]])
        lines += kit.md_table(("metric", "rel. lift", "95% CI", "true rel. lift", "p (adjusted)"), rows)
    lines += ["", "## Verdict (computed)", ""] + verdict(s) + [""]
    return "\n".join(lines) + "\n"


def verdict(s: dict) -> list[str]:
    out = []
    off = s["offline"]
    if "AMEN" in off and "DIN" in off:
        for key in ("auc", "gauc"):
            diff, spread = kit.seed_spread([r[key] for r in off["AMEN"]], [r[key] for r in off["DIN"]])
            out.append(f"- {key.upper()}: AMEN - DIN = {diff:+.4f} (larger seed std {spread:.4f}): "
                       f"{'AMEN better beyond the spread' if diff > spread else 'not beyond the spread'}.")
    c = s.get("campaign")
    if c:
        lo, hi = c["ctcvr"]["rel_ci"] or (math.nan, math.nan)
        out.append(f"- Campaign CTCVR lift CI [{kit.pct(lo)}, {kit.pct(hi)}] "
                   f"{'excludes' if lo > 0 or hi < 0 else 'includes'} 0.")
    return out


if __name__ == "__main__":
    main()
