"""Reproduce LCN (seed 001) on the ``lifelong`` world: offline AUC/GAUC/logloss of LCN,
DNN, DIN, SIM, LCN with full target attention and the ablations over several seeds; the
cost of the Lifelong Attention Pyramid (LAP) vs full target attention (time per 1,000
requests, peak memory, same batch, same process); AUC and cost at several lifelong
lengths; and a simulated campaign DIN (control) vs LCN (treatment).  Writes
``<out>/lcn.md``, ``<out>/lcn.json`` and ``<out>/lcn_cost.png``.

    .venv/bin/python scripts/reproduce_lcn.py --users 300 --length 1000 --epochs 1 --seeds 3 --scaling-users 100 \
        --scaling-models LCN,SIM --campaign-days 0.25

Models are trained through ``load_or_train``; the campaign reuses the checkpoints of the
first seed (the campaign seed) when its world and trainer settings match.  ``--quick`` runs
every part at the smallest settings (a smoke test; pass ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import experiment_kit as kit
import numpy as np
import torch

from simab.policies.synthetic import random_request_batch
from simab.policies.world_features import feature_spec_of

#: The comparisons of issue 8.
MODELS: list[kit.Model] = [
    kit.Model("DNN", "dnn"),
    kit.Model("DIN", "din"),
    kit.Model("SIM", "sim"),
    kit.Model("LCN", "lcn"),
    kit.Model("LCN full attention", "lcn", {"pyramid": False}),
    kit.Model("LCN w/o CSA", "lcn", {"use_csa": False}),
    kit.Model("LCN w/o MSA", "lcn", {"use_msa": False}),
    kit.Model("LCN w/o FSA", "lcn", {"use_fsa": False}),
    kit.Model("LCN w/o CRP", "lcn", {"crp_weight": 0.0}),
    kit.Model("LCN CRP weight 0.01", "lcn", {"crp_weight": 0.01}),
    kit.Model("LCN CRP projection head", "lcn", {"crp_projection": "mlp"}),
]
BY_LABEL = {m.label: m for m in MODELS}
#: --quick: one short length everywhere, a small cost batch, the two-model scaling.
QUICK_LCN = {"length": 200, "cost_lengths": "100,200", "cost_requests": 10, "scaling_lengths": "200",
             "scaling_users": 100, "scaling_models": "LCN,SIM"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kit.add_common_args(ap, users=600, campaign_days=0.5)
    ap.add_argument("--length", type=int, default=1000, help="lifelong.source_length (the preset has 2000)")
    ap.add_argument("--k1", type=int, default=100)
    ap.add_argument("--k2", type=int, default=20)
    ap.add_argument("--models", default=",".join(BY_LABEL), help="comma-separated labels of MODELS")
    ap.add_argument("--cost-lengths", default="500,1000,2000,4000", help="lengths of the cost benchmark")
    ap.add_argument("--cost-requests", type=int, default=100, help="requests per scoring batch")
    ap.add_argument("--cost-candidates", type=int, default=10, help="candidates per request")
    ap.add_argument("--scaling-lengths", default="500,1000,2000,4000",
                    help="lengths at which LCN and LCN full attention are trained ('' skips)")
    ap.add_argument("--scaling-users", type=int, default=300)
    ap.add_argument("--single-seed-models", default="LCN full attention",
                    help="comma-separated labels trained on the first seed only (slow ones)")
    ap.add_argument("--scaling-models", default="LCN,LCN full attention,SIM")
    ap.add_argument("--parts", default="offline,cost,scaling,campaign",
                    help="parts to run now; the others are kept from an existing <out>/lcn.json")
    return kit.apply_quick(ap.parse_args(), QUICK_LCN)


def world_table(users: int, length: int) -> dict:
    return {"preset": "lifelong", "n_users": users, "lifelong": {"source_length": length}}


def model_params(args: argparse.Namespace, model: kit.Model) -> dict:
    params = {"embedding_dim": args.embedding_dim, **model.params}
    if model.policy == "lcn":
        params = {"k1": args.k1, "k2": args.k2, **params}
    return params


def offline(args: argparse.Namespace) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    data = kit.load_world(world_table(args.users, args.length), args.seed, args.cache)
    train, val = data.train, data.val
    size = {"users": args.users, "length": args.length, "world_fingerprint": data.fingerprint,
            "train_rows": int(train.n_rows), "val_rows": int(val.n_rows), "ctr": float(train.label.mean())}
    print(f"world: {size} ({time.perf_counter() - t0:.0f}s)", flush=True)
    single = set(kit.split_list(args.single_seed_models))
    models = [kit.Model(m.label, m.policy, m.params, first_seed_only=m.label in single)
              for m in (BY_LABEL[label.strip()] for label in args.models.split(","))]
    grid = kit.train_grid(models, kit.model_seeds(args), kit.checkpoint_trainer(data, args.cache),
                          lambda seed: kit.trainer_config(args, seed), params_for=lambda m: model_params(args, m),
                          label_width=20)
    return size, grid.rows


def random_batch(n_requests: int, n_candidates: int, length: int, fs, seed: int = 0) -> dict:
    """A scoring batch of the right shapes with random ids (full histories)."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, n, shape, generator=g)

    b, c = n_requests, n_candidates
    out = random_request_batch(fs, b, c, g)
    out.update({
        "ll_item": ids(fs.n_items, b, length), "ll_cat": ids(fs.n_categories, b, length),
        "ll_action": ids(fs.n_actions, b, length), "ll_gap": ids(fs.n_gap_buckets, b, length),
        "ll_mask": torch.ones(b, length, dtype=torch.bool),
    })
    return out


def peak_memory_bytes(fn) -> int:
    """Peak of live CPU tensor memory during ``fn()`` from the torch profiler's
    allocation (op self memory) and free (``[memory]``) events in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    points = []
    for e in prof.events():
        if e.name == "[memory]":
            points.append((e.time_range.start, e.cpu_memory_usage))
        elif e.self_cpu_memory_usage > 0:
            points.append((e.time_range.start, e.self_cpu_memory_usage))
    points.sort()
    live = peak = 0
    for _, v in points:
        live += v
        peak = max(peak, live)
    return peak


def cost(args: argparse.Namespace, fs) -> dict:
    """Time per 1,000 requests and peak memory of LAP vs full target attention, same
    random batch, same process, at each length of ``--cost-lengths``."""
    from simab.policies.base import make_policy

    out: dict[str, dict] = {}
    for length in [int(x) for x in args.cost_lengths.split(",") if x]:
        batch = random_batch(args.cost_requests, args.cost_candidates, length, fs)
        row = {}
        for label, extra in (("LAP", {}), ("full attention", {"pyramid": False})):
            torch.manual_seed(0)
            policy = make_policy("lcn", model_params(args, kit.Model(label, "lcn", extra)), fs)
            policy.score(batch)  # warm-up
            reps = max(1, math.ceil(1000 / args.cost_requests))
            t = time.perf_counter()
            for _ in range(reps):
                policy.score(batch)
            ms = (time.perf_counter() - t) * 1000 / (reps * args.cost_requests) * 1000
            row[label] = {"ms_per_1000_requests": ms, "peak_mb": peak_memory_bytes(lambda p=policy, b=batch: p.score(b)) / 2**20}
        out[str(length)] = row
        print(f"cost N={length}: {json.dumps(row)}", flush=True)
    return out


def scaling(args: argparse.Namespace) -> dict:
    """AUC of LCN and LCN full attention on worlds whose lifelong length varies (one seed)."""
    out: dict[str, dict] = {}
    models = [BY_LABEL[label] for label in kit.split_list(args.scaling_models)]
    for length in [int(x) for x in args.scaling_lengths.split(",") if x]:
        data = kit.load_world(world_table(args.scaling_users, length), args.seed, args.cache)
        grid = kit.train_grid(models, [args.seed], kit.checkpoint_trainer(data, args.cache),
                              lambda seed: kit.trainer_config(args, seed), params_for=lambda m: model_params(args, m),
                              label_width=20, log=lambda _: None)
        row = {label: {"auc": r["auc"], "gauc": r["gauc"], "logloss": r["logloss"], "train_seconds": r["seconds"]}
               for label, (r,) in grid.rows.items()}
        out[str(length)] = row
        print(f"scaling N={length}: {json.dumps(row)}", flush=True)
    return out


CAMPAIGN_FIELDS = ("rel_lift", "rel_ci", "abs_lift", "abs_ci", "true_rel_lift", "p_value_adjusted", "control_value",
                   "treatment_value")


def run_campaign(args: argparse.Namespace) -> dict:
    """DIN (control) vs LCN (treatment) on the offline world, seed and trainer settings."""
    c = kit.ab_campaign(args, "lcn_vs_din", world_table(args.users, args.length),
                        ("din", model_params(args, BY_LABEL["DIN"])), ("lcn", model_params(args, BY_LABEL["LCN"])))
    out: dict = {"seconds": c.seconds, "run_dir": str(c.run_dir)}
    for metric in ("ctr", "stay_time", "latency_p99_ms"):
        out[metric] = kit.comparison_fields(c.report, metric, CAMPAIGN_FIELDS)
    print(f"campaign: {json.dumps(out)}", flush=True)
    return out


def cost_figure(s: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(int(n) for n in s["cost"])
    fig, axes = plt.subplots(1, 3 if s.get("scaling") else 2, figsize=(13, 3.6))
    for ax, key, title in ((axes[0], "ms_per_1000_requests", "ms per 1,000 requests"),
                           (axes[1], "peak_mb", "peak memory (MiB) per scoring batch")):
        for label in ("LAP", "full attention"):
            ax.plot(lengths, [s["cost"][str(n)][label][key] for n in lengths], "o-", label=label)
        ax.set_xlabel("lifelong length N")
        ax.set_title(title)
        ax.legend()
    if s.get("scaling"):
        sl = sorted(int(n) for n in s["scaling"])
        for label in s["scaling"][str(sl[0])]:
            axes[2].plot(sl, [s["scaling"][str(n)][label]["auc"] for n in sl], "o-", label=label)
        axes[2].set_xlabel("lifelong length N (world)")
        axes[2].set_title(f"validation AUC ({s['size']['scaling_users']} users, 1 seed)")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "lcn_cost.png", dpi=110)
    plt.close(fig)


def render(s: dict) -> str:
    size = s["size"]
    cmd = (f".venv/bin/python scripts/reproduce_lcn.py --users {size['users']} --length {size['length']} "
           f"--epochs {size['epochs']} --seeds {len(size['seeds'])} --seed {size['seeds'][0]} "
           f"--embedding-dim {size['embedding_dim']} --batch-size {size['batch_size']} --lr {size['lr']} "
           f"--k1 {size['k1']} --k2 {size['k2']} --cost-lengths {size['cost_lengths']} "
           f"--cost-requests {size['cost_requests']} --cost-candidates {size['cost_candidates']} "
           f"--scaling-lengths '{size['scaling_lengths']}' --scaling-users {size['scaling_users']} "
           f"--scaling-models '{size.get('scaling_models', '')}' "
           f"--single-seed-models '{size.get('single_seed_models', '')}' --campaign-days {size['campaign_days']}"
           + (f" --max-steps {size['max_steps']}" if size["max_steps"] else ""))
    lines = [
        "# LCN on the `lifelong` world (seed 001)", "",
        "Generated by `scripts/reproduce_lcn.py`; regenerate with", "", f"    {cmd}", "",
        f"**Size run:** world `lifelong` with n_users = {size['users']} (the preset has 5000) and "
        f"lifelong.source_length = {size['length']} (the preset has 2000), world seed {size['seeds'][0]}, "
        f"fingerprint `{size.get('world_fingerprint')}`; {size.get('train_rows', 0):,} training and "
        f"{size.get('val_rows', 0):,} validation exposures, training CTR {size.get('ctr', math.nan):.4f}; "
        f"{size['epochs']} epoch(s), batch {size['batch_size']}, lr {size['lr']}, embedding_dim "
        f"{size['embedding_dim']}, k1 = {size['k1']}, k2 = {size['k2']}, model seeds {size['seeds']}; "
        "CPU, 1 thread.", "",
    ]
    if s.get("offline"):
        lines += ["## Offline (validation), mean ± sample std over seeds", "",
                  "The paper (its data): AUC 0.7237 -> 0.7294, GAUC 0.6379 -> 0.6423, logloss 0.2330 -> 0.2223.", ""]
        lines += kit.md_table(("model", "AUC", "GAUC", "logloss", "train s"),
                              ([label, *(kit.mean_std([r[k] for r in rows]) for k in ("auc", "gauc", "logloss")),
                                f"{np.nanmean([r['seconds'] for r in rows]):.0f}"] for label, rows in s["offline"].items()))
    if s.get("cost"):
        lines += ["", "## Cost: LAP vs full target attention (same random batch, same process)", "",
                  f"Scoring batches of {size['cost_requests']} requests × {size['cost_candidates']} candidates, "
                  "all histories full, model weights of the offline size; time is wall-clock per 1,000 requests "
                  "on 1 CPU thread (shared machine: timings are noisy); peak memory is the peak of live tensor "
                  "memory during one scoring batch (torch profiler).", "",
                  "![cost and scaling](lcn_cost.png)", ""]
        lines += kit.md_table(("N", "LAP ms / 1k req", "full ms / 1k req", "LAP peak MiB", "full peak MiB"),
                              ([n, f"{row['LAP']['ms_per_1000_requests']:.0f}",
                                f"{row['full attention']['ms_per_1000_requests']:.0f}", f"{row['LAP']['peak_mb']:.1f}",
                                f"{row['full attention']['peak_mb']:.1f}"] for n, row in s["cost"].items()))
    if s.get("scaling"):
        labels = list(next(iter(s["scaling"].values())))
        lines += ["", f"## Scaling: AUC by lifelong length ({size['scaling_users']} users, seed {size['seeds'][0]}, "
                  "one model seed)", ""]
        lines += kit.md_table(["N", *(f"{m} {what}" for m in labels for what in ("AUC", "train s"))],
                              ([n, *(cell for m in labels for cell in (f"{row[m]['auc']:.4f}",
                                                                       f"{row[m]['train_seconds']:.0f}"))]
                               for n, row in s["scaling"].items()))
    if s.get("campaign"):
        c = s["campaign"]
        lines += ["", f"## Simulated campaign: DIN (control) vs LCN (treatment), {size['campaign_days']} day(s)", "",
                  "Paper: +2.93% CTR, +3.27% stay time, +3 ms latency.", ""]
        rows = []
        for metric in ("ctr", "stay_time", "latency_p99_ms"):
            m = c[metric]
            ci = m["rel_ci"] or [math.nan, math.nan]
            rows.append([metric, f"{m['control_value']:.4g}", f"{m['treatment_value']:.4g}", kit.pct(m["rel_lift"]),
                         f"[{kit.pct(ci[0])}, {kit.pct(ci[1])}]", kit.pct(m["true_rel_lift"]), m["p_value_adjusted"]])
        lines += kit.md_table(("metric", "control", "treatment", "rel. lift", "95% CI", "true rel. lift", "p (adjusted)"),
                              rows)
    lines += ["", "## Verdict (computed)", ""] + verdict(s) + [""]
    return "\n".join(lines) + "\n"


def verdict(s: dict) -> list[str]:
    out = []
    off = s.get("offline") or {}
    for base in ("DIN", "SIM", "LCN full attention"):
        if "LCN" not in off or base not in off:
            continue
        diff, spread = kit.seed_spread([r["auc"] for r in off["LCN"]], [r["auc"] for r in off[base]])
        word = "LCN better beyond the spread" if diff > spread else (
            "LCN worse beyond the spread" if -diff > spread else "within the spread")
        out.append(f"- AUC: LCN - {base} = {diff:+.4f} (larger seed std {spread:.4f}): {word}.")
    if s.get("cost"):
        for n, row in s["cost"].items():
            r = row["LAP"]["ms_per_1000_requests"] / row["full attention"]["ms_per_1000_requests"]
            m = row["LAP"]["peak_mb"] / max(row["full attention"]["peak_mb"], 1e-9)
            out.append(f"- N = {n}: LAP takes {r:.2f}× the time and {m:.2f}× the peak memory of full attention.")
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # the cost figure is written before the page
    parts = {x.strip() for x in args.parts.split(",")}
    size = {"users": args.users, "length": args.length, "epochs": args.epochs, "max_steps": args.max_steps,
            "batch_size": args.batch_size, "lr": args.lr, "embedding_dim": args.embedding_dim, "k1": args.k1,
            "k2": args.k2, "seeds": kit.model_seeds(args), "cost_lengths": args.cost_lengths,
            "cost_requests": args.cost_requests, "cost_candidates": args.cost_candidates,
            "scaling_lengths": args.scaling_lengths, "scaling_users": args.scaling_users,
            "scaling_models": args.scaling_models, "single_seed_models": args.single_seed_models,
            "campaign_days": args.campaign_days}
    new: dict = {}
    if "offline" in parts:
        world_size, new["offline"] = offline(args)
        size.update(world_size)
    if "cost" in parts:
        from simab.simulators.spec import world_spec

        # only the feature sizes matter here: a 50-user world of the same length
        fs = feature_spec_of(world_spec(world_table(50, args.length)))
        new["cost"] = cost(args, fs)
    if "scaling" in parts:
        new["scaling"] = scaling(args) if args.scaling_lengths else None
    if "campaign" in parts:
        new["campaign"] = run_campaign(args) if args.campaign_days > 0 else None
    # Parts may run in separate processes: merge into what is on disk at the end.
    path = out / "lcn.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    size = {**summary.get("size", {}), **{k: v for k, v in size.items()
                                           if "offline" in parts or k not in summary.get("size", {})}}
    summary.update(new)
    summary["size"] = size
    if summary.get("cost"):
        cost_figure(summary, out)
    page = kit.write_page(out, "lcn", summary, kit.keep_notes(out / "lcn.md", render(summary), heading="## Notes"))
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
