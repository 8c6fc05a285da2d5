"""Reproduce the shape of SSIM's tables (seed 002) on ``multiscenario3`` (AliCCP-like)
and ``multiscenario4`` (AliMama-like): per-scenario AUC / logloss of ST-Backbone,
MT-Backbone, MT-Backbone-S and SSIM for each backbone (RESULT 1), the ablations on
``multiscenario4`` with DNN (RESULT 2: random selection, no KL, no STE, share-ratio
sweep) and the transfer of DNN/DeepFM/DCN-selected instances to STAR and HMoE
(RESULT 3).  Writes ``<out>/ssim.md`` and ``<out>/ssim.json``.

    .venv/bin/python scripts/reproduce_ssim.py --users 300 --epochs 1 --seeds 3

Every number is the mean and standard deviation over ``--seeds`` model seeds on one
world (world seed ``--seed``); the size actually run is printed in the page header.  ``--quick`` runs every part at
the smallest settings (a smoke test; pass ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import experiment_kit as kit
import numpy as np
import torch

from simab.policies.world_features import feature_spec_of
from simab.reports.formatting import fmt_number

BACKBONES = ("dnn", "deepfm", "dcn", "star", "hmoe")
LABEL = {"dnn": "DNN", "deepfm": "DeepFM", "dcn": "DCN", "star": "STAR", "hmoe": "HMoE"}
#: The MLP of every model here (on top of the common embedding size).
MLP = [64, 32]
#: --quick: the two cheapest backbones, one extra share ratio, a short campaign.
QUICK_SSIM = {"backbones": "dnn,deepfm", "sweep": "0.5"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kit.add_common_args(ap, users=300, campaign_days=1.0, users_help="world n_users (the presets have 5000)",
                        seed_help="world seed and first model seed", seeds_help=None,
                        campaign_help="online campaign MT-Backbone (DNN) vs SSIM (DNN) on multiscenario4; 0 skips it")
    ap.add_argument("--worlds", default="multiscenario3,multiscenario4")
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    ap.add_argument("--share-ratio", type=float, default=0.2)
    ap.add_argument("--sweep", default="0.1,0.3,0.5", help="extra share ratios for the ablation ('' skips)")
    ap.add_argument("--skip-st", action="store_true", help="skip the ST-Backbone rows (one model per scenario)")
    ap.add_argument("--skip-ablations", action="store_true")
    ap.add_argument("--skip-transfer", action="store_true")
    ap.add_argument("--world-override", default="{}",
                    help='JSON merged into each world table, e.g. \'{"scenario_specific": false}\'')
    ap.add_argument("--tag", default="", help="write ssim_<tag>.md/json instead of ssim.md/json")
    ap.add_argument("--render-only", action="store_true", help="re-render <out>/ssim.md from <out>/ssim.json")
    ap.add_argument("--campaign-only", action="store_true",
                    help="run only the campaign and merge it into an existing <out>/ssim.json")
    return kit.apply_quick(ap.parse_args(), QUICK_SSIM)


def world_table(args: argparse.Namespace, preset: str) -> dict:
    return {"preset": preset, "n_users": args.users, **json.loads(args.world_override)}


def experiments(args: argparse.Namespace, preset: str, backbones: list[str], shared_path) -> list[kit.Model]:
    """The rows of one seed, in training order, labelled ``"<row>|<backbone>"``: per backbone
    ST-Backbone (policy ``st``: one backbone per scenario), MT-Backbone, MT-Backbone-S (random
    sharing) and SSIM; on multiscenario4 the DNN ablations and the transfer of the instances
    DNN/DeepFM/DCN selected (``shared_path(backbone)``) to STAR and HMoE."""
    r = args.share_ratio
    out: list[kit.Model] = []
    for bb in backbones:
        if not args.skip_st:
            out.append(kit.Model(f"ST-Backbone|{bb}", "st", {"backbone": bb}))
        # MT-Backbone: the same backbone as SSIM's, with its per-scenario towers where the
        # backbone has the option (dnn / deepfm / dcn: ``scenario_heads``; star / hmoe have towers)
        mt = {"scenario_heads": True} if bb in ("dnn", "deepfm", "dcn") else {}
        out += [kit.Model(f"MT-Backbone|{bb}", bb, mt),
                kit.Model(f"MT-Backbone-S|{bb}", "ssim", {"backbone": bb, "selection": "random", "share_ratio": r}),
                kit.Model(f"SSIM|{bb}", "ssim", {"backbone": bb, "share_ratio": r, "shared_out": shared_path(bb)})]
    if preset == "multiscenario4" and not args.skip_ablations and "dnn" in backbones:
        out += [kit.Model("SSIM-NK (no KL)|dnn", "ssim", {"kl_weight": 0.0, "share_ratio": r}),
                kit.Model("SSIM-NS (no STE, soft mask)|dnn", "ssim", {"ste": False, "share_ratio": r}),
                kit.Model("SSIM global ratio scope|dnn", "ssim", {"ratio_scope": "global", "share_ratio": r})]
        out += [kit.Model(f"SSIM share {x:.2f}|dnn", "ssim", {"share_ratio": x}) for x in
                [float(v) for v in kit.split_list(args.sweep)]]
    if preset == "multiscenario4" and not args.skip_transfer:
        # a source's instances exist once its SSIM row of this seed has been trained
        out += [kit.Model(f"{LABEL[src]} -> {LABEL[tgt]}|{tgt}", "ssim", {"backbone": tgt, "shared_in": shared_path(src)})
                for src in ("dnn", "deepfm", "dcn") if src in backbones for tgt in ("star", "hmoe")]
    return out


def composition(shared_dir: Path, fp: str, backbones: list[str], seeds: list[int], names: list[str]) -> dict:
    """Per backbone: scenario shares of the SSIM-selected instances and the mean selector
    logit per scenario, averaged over the seeds whose Parquet exists."""
    import pyarrow.parquet as pq

    out = {}
    for bb in backbones:
        share, logit = [], []
        for seed in seeds:
            path = shared_dir / f"{fp}-{bb}-{seed}.parquet"
            if not path.exists():
                continue
            t = pq.read_table(path)
            sc = t.column("scenario").to_numpy()
            sh = t.column("shared").to_numpy(zero_copy_only=False)
            lg = t.column("logit").to_numpy()
            share.append([float(sh[sc == i].mean()) for i in range(len(names))])
            logit.append([float(lg[sc == i].mean()) for i in range(len(names))])
        if share:
            out[bb] = {"shared_frac": dict(zip(names, np.mean(share, 0).tolist(), strict=True)),
                       "mean_logit": dict(zip(names, np.mean(logit, 0).tolist(), strict=True))}
    return out


def per_scenario(metrics: dict, names: tuple[str, ...]) -> dict:
    return {n: {"auc": metrics["per_scenario"][n]["auc"], "logloss": metrics["per_scenario"][n]["logloss"]}
            for n in names if n in metrics["per_scenario"]}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from simab.policies.ssim import RowSource
    from simab.policies.trainer import build_policy, evaluate, fit

    out = Path(args.out)
    stem = f"ssim_{args.tag}" if args.tag else "ssim"
    if args.render_only:
        results = json.loads((out / f"{stem}.json").read_text())
        a = results["args"]
        for w in results["worlds"].values():
            if "composition" not in w:
                w["composition"] = composition(Path(a["cache"]) / "ssim_shared", w["info"]["fingerprint"],
                                               a["backbones"].split(","),
                                               [a["seed"] + i for i in range(a["seeds"])], w["scenarios"])
        page = kit.write_page(out, stem, results, render(results, args), indent=1)
        print(f"rendered {page}")
        return
    if args.campaign_only:
        results = json.loads((out / f"{stem}.json").read_text())
        a = argparse.Namespace(**{**vars(args), **results["args"], "campaign_days": args.campaign_days,
                                   "cache": args.cache})
        results["campaign"] = run_campaign(a)
        results["args"]["campaign_days"] = args.campaign_days
        page = kit.write_page(out, stem, results, render(results, args), indent=1)
        print(f"rendered {page}")
        return
    shared_dir = Path(args.cache) / "ssim_shared"
    shared_dir.mkdir(parents=True, exist_ok=True)
    common = {"embedding_dim": args.embedding_dim, "mlp_units": MLP}
    backbones = kit.split_list(args.backbones)
    seeds = kit.model_seeds(args)
    results: dict = {"args": vars(args), "worlds": {}}
    t_start = time.perf_counter()

    for preset in kit.split_list(args.worlds):
        data = kit.load_world(world_table(args, preset), args.seed, args.cache)
        train, val, fs, fp = data.train, data.val, feature_spec_of(data.world.spec), data.fingerprint
        names = tuple(data.world.scenario_names)
        info = {"fingerprint": fp, "train_rows": int(train.n_rows), "val_rows": int(val.n_rows),
                "train_rows_per_scenario": {n: int((train.scenario == i).sum()) for i, n in enumerate(names)},
                "ctr_per_scenario": {n: float(train.label[train.scenario == i].mean()) for i, n in enumerate(names)}}
        print(f"{preset}: {info}", flush=True)
        # the selector's temperature anneals over the whole search phase
        search_steps = int(np.ceil(train.n_rows / args.batch_size)) * args.epochs
        if args.max_steps:
            search_steps = min(search_steps, args.max_steps)

        def train_one(model: kit.Model, params: dict, seed: int, cfg, train=train, val=val, fs=fs, names=names,
                      search_steps=search_steps) -> tuple[None, dict, bool]:
            if model.policy == "st":  # one backbone per scenario, each on its own rows only
                st: dict = {"per_scenario": {}}
                for i, n in enumerate(names):
                    pol = build_policy(params["backbone"], common, fs, seed)
                    fit(pol, RowSource(train, np.flatnonzero(train.scenario == i)), None, cfg)
                    st["per_scenario"][n] = evaluate(pol, RowSource(val, np.flatnonzero(val.scenario == i)))[
                        "per_scenario"][n]
                return None, st, False
            if model.policy == "ssim":
                pol = build_policy("ssim", {**common, "anneal_steps": search_steps, **params}, fs, seed)
                options = {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "max_steps", "seed", "progress")}
                return None, pol.fit(train, val, **options), False
            return None, fit(build_policy(model.policy, common, fs, seed), train, val, cfg), False

        def row(seed: int, m: dict, cached: bool, names=names) -> dict:
            return per_scenario(m, names)

        def seed_models(seed: int, preset=preset, fp=fp) -> list[kit.Model]:
            return experiments(args, preset, backbones, lambda bb: str(shared_dir / f"{fp}-{bb}-{seed}.parquet"))

        def log(line: str, preset=preset) -> None:
            print(f"  {preset} {line} ({time.perf_counter() - t_start:.0f}s total)", flush=True)

        grid = kit.train_grid(seed_models, seeds, train_one, lambda seed: kit.trainer_config(args, seed), row=row,
                              describe=lambda r: " ".join(f"{n}={v['auc']:.4f}" for n, v in r.items()), log=log)
        results["worlds"][preset] = {"info": info, "scenarios": list(names), "rows": grid.rows,
                                     "composition": composition(shared_dir, fp, backbones, seeds, list(names))}

    results["seconds"] = time.perf_counter() - t_start
    if args.campaign_days > 0:
        results["campaign"] = run_campaign(args)
    page = kit.write_page(out, stem, results, render(results, args), indent=1)
    print(f"wrote {page} ({results['seconds']:.0f}s)")


NOTES = """## Notes

* Outcome at the size recorded above: **SSIM does not beat MT-Backbone** in these
  worlds; see the verdict lines.  Random sharing (MT-Backbone-S) also loses to
  MT-Backbone, and the share-ratio sweep on multiscenario4 gets monotonically worse as
  the ratio grows, so what hurts is *sharing instance labels across scenario towers*
  itself, not (only) the selector.  The loss concentrates in the scenarios whose CTR
  is furthest from the pooled one (multiscenario3 s3, CTR ~0.20 vs ~0.07; multiscenario4
  s4 ~0.18 and s3 ~0.12 vs ~0.07): a shared instance trains every other tower on a
  label drawn at its own scenario's rate and, for the `specific` part of the world's
  label function, on another scenario's preference.  A diagnostic run with the
  scenario-specific label part switched off (`scenario_specific = false`,
  its page ssim_nospecific.md, which this script writes) still shows the loss, which points at the
  base-rate/surface differences rather than the specific part alone.  The seed's
  datasets have near-equal per-scenario loglosses (similar CTRs), where sharing has
  far less to distort.  What would test/change it: a world with near-equal base rates
  across scenarios and data-starved small scenarios (ST-Backbone far below MT), or a
  tower that keeps a per-scenario calibration term out of the shared loss.
* The selector's per-scenario head biases track traffic (see the logit table: the KL
  term raises each head in proportion to its rows), which is why the retrain selects
  per scenario (`ratio_scope`); with a global ranking almost all shared rows came from
  s1 (multiscenario3: 99-100 % for DNN/DeepFM in a first run).
* Training is short (1 epoch, 500 users, 145k training rows): small-scenario
  ST-Backbone rows are far below MT, i.e. the small scenarios are data-starved, the
  regime where the seed expects sharing to help most.

* The online campaign trains both arms through `load_or_train`, which calls `SSIM.fit`
  (search, select, retrain); the treatment serves the retrained DNN backbone.  Its
  campaign uses the same world size and trainer settings as the offline rows, so it
  inherits their finding: the campaign shows whether the offline ranking carries over
  online, at a size where a few-percent lift is within the CI.  It was run on world
  version 2 (the pre-period draws from its own random streams); the offline rows above
  come from version 1, whose pre-period has the same distribution.  Online, SSIM is
  truly worse than MT-Backbone in every scenario (true CTR lift -2 % to -6 %), the
  same direction as offline.
* Not reproduced: the seed's "Finetune", DFFM, SSIM-P and SSIM-ND rows (undefined in the
  seed's text).  Our ablations are the issue's: random selection (= MT-Backbone-S),
  no KL, no STE (soft mask), global vs per-scenario ratio, and a share-ratio sweep.
* Tower of scenario s = the backbone with the scenario id replaced by s (see
  docs/models.md); the serving model is the retrained backbone.
"""


def run_campaign(args: argparse.Namespace) -> dict:
    """MT-Backbone (control: the plain DNN over all scenarios) vs SSIM (treatment: DNN
    backbone, retrained with the selected shared instances) on ``multiscenario4``, same
    world size, seed and trainer settings as the offline rows.  Per-scenario CTR lifts
    come from the report's per-scenario segments; their p-values are Holm-adjusted across
    the scenarios here (statsmodels ``multipletests``); the true per-scenario CTR of an
    arm is the mean logged true P(click) of its exposures in that scenario."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from statsmodels.stats.multitest import multipletests

    common = {"embedding_dim": args.embedding_dim, "mlp_units": MLP}
    campaign = kit.ab_campaign(args, "ssim_vs_mt", world_table(args, "multiscenario4"), ("dnn", common),
                               ("ssim", {**common, "backbone": "dnn", "share_ratio": args.share_ratio}))
    run_dir = campaign.run_dir
    report = campaign.report.to_json_dict()
    ex = pq.read_table(run_dir / "exposures", columns=["arm", "scenario", "p_click"])
    seg = report["metrics"]["ctr"].get("per_scenario", {})
    rows = []
    for key, comps in seg.items():
        c = comps["treatment_vs_control"]
        true = {}
        for arm in ("control", "treatment"):
            m = pc.and_(pc.equal(ex["arm"], arm), pc.equal(ex["scenario"], key))
            true[arm] = pc.mean(pc.filter(ex["p_click"], m)).as_py()
        # None when an arm has no exposure in the scenario (short campaigns)
        has_both = true["control"] and true["treatment"] is not None
        true_rel = true["treatment"] / true["control"] - 1 if has_both else None
        cmp_ = c["comparison"] if "comparison" in c else c
        rows.append({"scenario": key, "values": c.get("values"),
                     "rel_lift": cmp_["rel_lift"], "rel_ci": cmp_["rel_ci"], "p_value": cmp_["p_value"],
                     "true_rel_lift": true_rel})
    # Holm over the scenarios with a p-value (a short campaign can leave one undefined)
    tested = [r for r in rows if r["p_value"] is not None]
    if tested:
        adj = multipletests([r["p_value"] for r in tested], method="holm")[1]
        for r, a in zip(tested, adj, strict=True):
            r["p_value_holm"] = float(a)
    overall = {m: {k: report["metrics"][m]["comparisons"]["treatment_vs_control"].get(k)
                   for k in ("rel_lift", "rel_ci", "true_rel_lift", "p_value", "p_value_adjusted")}
               for m in ("ctr", "ctcvr")}
    out = {"seconds": campaign.seconds, "days": args.campaign_days, "per_scenario": rows,
           "overall": overall, "exposures": campaign.exposures}
    print(f"campaign: {json.dumps(out, default=float)}", flush=True)
    return out


def render_campaign(c: dict) -> list[str]:
    lines = [f"## Online: MT-Backbone (DNN, control) vs SSIM (DNN, treatment) on multiscenario4, "
             f"{c['days']} day(s)", "",
             f"{c['exposures']:,} exposures; users split 50/50 by hash. Per-scenario p-values are Holm-adjusted "
             "across the four scenarios; the true lift is from the logged true P(click).", ""]
    nan = float("nan")

    def ci(r: dict) -> str:
        return f"[{kit.pct(r['rel_ci'][0])}, {kit.pct(r['rel_ci'][1])}]"

    lines += kit.md_table(
        ("scenario", "CTR control", "CTR treatment", "rel. lift", "95% CI", "true rel. lift", "p", "p (Holm)"),
        ([r["scenario"], fmt_number((r.get("values") or {}).get("control", nan), ".4f"),
          fmt_number((r.get("values") or {}).get("treatment", nan), ".4f"), kit.pct(r["rel_lift"]), ci(r),
          kit.pct(r["true_rel_lift"]), fmt_number(r["p_value"], ".4g"), fmt_number(r.get("p_value_holm"), ".4g")]
         for r in c["per_scenario"]))
    lines += [""] + kit.md_table(
        ("metric (all scenarios)", "rel. lift", "95% CI", "true rel. lift", "p (report's Holm over metrics)"),
        ([m, kit.pct(o["rel_lift"]), ci(o), kit.pct(o["true_rel_lift"]), fmt_number(o["p_value_adjusted"], ".4g")]
         for m, o in c["overall"].items()))
    return lines + [""]


def render(results: dict, args: argparse.Namespace) -> str:
    a = results["args"]
    lines = [
        "# SSIM (seed 002): reproduction on multiscenario3 / multiscenario4",
        "",
        "Generated by:",
        "",
        "```",
        f".venv/bin/python scripts/reproduce_ssim.py --worlds {a['worlds']} --users {a['users']} "
        f"--epochs {a['epochs']} --seeds {a['seeds']} --seed {a['seed']} --backbones {a['backbones']} "
        f"--share-ratio {a['share_ratio']} --sweep '{a['sweep']}'"
        + (f" --max-steps {a['max_steps']}" if a["max_steps"] else "")
        + (" --skip-st" if a["skip_st"] else "") + (" --skip-ablations" if a["skip_ablations"] else "")
        + (" --skip-transfer" if a["skip_transfer"] else "")
        + (f" --world-override '{a['world_override']}'" if a.get("world_override", "{}") != "{}" else "")
        + (f" --tag {a['tag']}" if a.get("tag") else ""),
        "```",
        "",
        f"Size run: n_users = {a['users']} (the presets have 5000), {a['epochs']} epoch(s), batch {a['batch_size']}, "
        f"lr {a['lr']}, embedding_dim {a['embedding_dim']}, MLP [64, 32], {a['seeds']} model seeds "
        f"({a['seed']}..{a['seed'] + a['seeds'] - 1}), world seed {a['seed']}; total {results['seconds']:.0f} s on CPU.",
        "Cells: mean ± sample std over the seeds, per scenario, on the time-split validation set "
        "(last 20 % of the pre-period). Best mean AUC per backbone and scenario in **bold**.",
        "",
    ]
    for preset, w in results["worlds"].items():
        info, names = w["info"], w["scenarios"]
        lines += [f"## {preset}", "",
                  f"train rows {info['train_rows']:,} (per scenario {info['train_rows_per_scenario']}), "
                  f"val rows {info['val_rows']:,}; train CTR per scenario "
                  + ", ".join(f"{n} {c:.4f}" for n, c in info["ctr_per_scenario"].items()), ""]
        header = "| backbone | row | " + " | ".join(f"AUC {n}" for n in names) + " | " + \
                 " | ".join(f"logloss {n}" for n in names) + " |"
        lines += [header, "|" + "---|" * (2 + 2 * len(names))]
        by_bb: dict[str, list[tuple[str, list]]] = {}
        for key, runs in w["rows"].items():
            label, bb = key.split("|")
            by_bb.setdefault(bb, []).append((label, runs))
        for bb, entries in by_bb.items():
            best = {n: max(np.mean([r[n]["auc"] for r in runs]) for _, runs in entries) for n in names}
            for label, runs in entries:
                cells = []
                for n in names:
                    c = kit.mean_std([r[n]["auc"] for r in runs])
                    cells.append(f"**{c}**" if np.isclose(np.mean([r[n]["auc"] for r in runs]), best[n]) else c)
                cells += [kit.mean_std([r[n]["logloss"] for r in runs]) for n in names]
                lines.append(f"| {LABEL.get(bb, bb)} | {label} | " + " | ".join(cells) + " |")
        lines += ["", verdict(w, "MT-Backbone"), "", verdict(w, "MT-Backbone-S"), ""]
        comp = w.get("composition") or {}
        if comp:
            lines += ["Selected shared instances (SSIM rows, mean over seeds): fraction of each scenario's "
                      "training rows marked shared, and the frozen selector's mean logit per scenario.", "",
                      "| backbone | " + " | ".join(f"shared {n}" for n in names) + " | "
                      + " | ".join(f"logit {n}" for n in names) + " |", "|" + "---|" * (1 + 2 * len(names))]
            for bb, c in comp.items():
                lines.append(f"| {LABEL.get(bb, bb)} | " + " | ".join(f"{c['shared_frac'][n]:.3f}" for n in names)
                             + " | " + " | ".join(f"{c['mean_logit'][n]:.2f}" for n in names) + " |")
            lines.append("")
    if results.get("campaign"):
        lines += render_campaign(results["campaign"])
    lines += [NOTES]
    return "\n".join(lines) + "\n"


def verdict(w: dict, baseline: str) -> str:
    """Per backbone: scenarios where SSIM's mean AUC beats the baseline row's, and by more
    than the larger of the two seed standard deviations."""
    out = []
    names = w["scenarios"]
    for key in w["rows"]:
        label, bb = key.split("|")
        if label != "SSIM" or f"{baseline}|{bb}" not in w["rows"]:
            continue
        s, m = w["rows"][key], w["rows"][f"{baseline}|{bb}"]
        wins, beyond = 0, 0
        for n in names:
            d, spread = kit.seed_spread([r[n]["auc"] for r in s], [r[n]["auc"] for r in m])
            wins += d > 0
            beyond += d > spread
        out.append(f"{LABEL.get(bb, bb)}: SSIM > {baseline} on {wins}/{len(names)} scenarios "
                   f"({beyond} beyond the seed spread)")
    return f"SSIM vs {baseline} (mean AUC): " + "; ".join(out) + "." if out else ""


if __name__ == "__main__":
    main()
