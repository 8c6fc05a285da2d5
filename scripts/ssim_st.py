"""Is the focus scenario data-starved, and who feeds it? (issue #30, item 7's evidence for SSIM.)
For each dial value and model seed of an SSIM dose-response page: the page's backbone (DNN,
no scenario towers) trained on the focus scenario's training rows alone (ST-Backbone), under
the page's training rule, scored on the focus scenario's validation rows, beside the page's
MT-Backbone on the same rows.  ST far below MT means the scenario is data-starved and the
multi-task backbone already feeds it the other scenarios' rows through its shared bottom
(implicit sharing); what explicit instance sharing can add is on top of MT, not of ST.

    .venv/bin/python scripts/ssim_st.py docs/results/dose_ssim-starved.json [--json OUT]

The worlds and pre-periods come from the cache (``SIMAB_CACHE``); the ST models are trained
here (the focus scenario's rows only: about a minute each at 5,000 users) and not cached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dose_response as dose
import experiment_kit as kit
import numpy as np


def probe(page: dict, cache: Path, threads: int) -> list[dict]:
    """One row per (dial value, model seed): ST's and MT's AUC on the focus scenario."""
    from simab.policies.ssim import RowSource
    from simab.policies.trainer import build_policy, evaluate, fit
    from simab.policies.world_features import feature_spec_of

    cfg = dose.SEEDS[page["seed_model"]]
    focus = page["focus"]
    backbone = next(m for m in cfg["models"] if m.label == "MT-Backbone")
    # the page's training rule (pages written before pages recorded lr and embedding_dim ran at
    # the study's defaults)
    defaults = dose.study_defaults()
    rule = argparse.Namespace(**{k: page.get(k, defaults[k]) for k in
                                 ("epochs", "batch_size", "lr", "max_steps", "monitor", "patience", "embedding_dim")},
                              threads=threads)
    rows = []
    for r in page["results"]:
        data = dose.page_world(page, r["value"], cache)
        index = list(data.world.spec.scenarios).index(focus)
        train = RowSource(data.train, np.flatnonzero(data.train.scenario == index))
        val = RowSource(data.val, np.flatnonzero(data.val.scenario == index))
        params = {k: v for k, v in backbone.params.items() if k != "scenario_heads"}
        for mt in r["rows"]["MT-Backbone"]:
            policy = build_policy(backbone.policy, {"embedding_dim": rule.embedding_dim, **params},
                                  feature_spec_of(data.world.spec), mt["seed"])
            metrics = fit(policy, train, val, kit.trainer_config(rule, mt["seed"]))
            st = evaluate(policy, val)["auc"]
            rows.append({"value": r["value"], "seed": mt["seed"], "focus": focus,
                         "focus_train_rows": train.n_rows, "st_auc": st, "mt_auc": mt[f"auc_{focus}"],
                         "mt_minus_st": mt[f"auc_{focus}"] - st, "st_steps": metrics.get("train", {}).get("steps")})
            print(f"{r['value']:g} seed {mt['seed']}: ST {st:.4f}  MT {mt[f'auc_{focus}']:.4f} "
                  f"({train.n_rows:,} {focus} training rows)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", help="an SSIM dose-response page's JSON (dose_ssim*.json)")
    ap.add_argument("--cache", default=None, help="pre-period cache (default: $SIMAB_CACHE or ~/.cache/simab)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    try:
        page = json.loads(Path(args.page).read_text())
    except (OSError, ValueError) as e:
        print(f"error: {args.page}: cannot read the page's JSON ({e})", file=sys.stderr)
        return 2
    allowed = [k for k, v in dose.SEEDS.items() if any(m.label == "MT-Backbone" for m in v["models"])]
    if not isinstance(page, dict) or page.get("seed_model") not in allowed or "focus" not in page:
        print(f"error: {args.page}: seed_model: not an SSIM dose-response page with an MT-Backbone row "
              f"(allowed: {', '.join(allowed)})", file=sys.stderr)
        return 2
    rows = probe(page, Path(args.cache or kit.cache_root()), args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"page": args.page, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
