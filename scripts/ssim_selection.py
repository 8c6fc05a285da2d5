"""What SSIM's learned selector selected against the rows that are truly worth sharing
(issue #30, item 7's evidence), read from a dose-response study's cached models: for each
dial value and model seed, the share ratio the validation grid chose, each ratio's
validation AUC on the focus scenario, and how well the frozen selector's logit ranks the
shareable rows (the shared segment's users, ``oracle_ssim.shareable_rows``) within each
scenario -- an AUC of 0.5 is a selector that does not tell them apart, whatever the ratio.

    .venv/bin/python scripts/ssim_selection.py docs/results/dose_ssim.json [--json OUT]

Nothing is trained: the page's worlds and pre-periods and the SSIM checkpoints come from the
cache (``SIMAB_CACHE``), each checkpoint found by its saved selection's fingerprint and seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dose_response as dose
import experiment_kit as kit
import oracle_ssim
import pyarrow.parquet as pq


def checkpoints(cache: Path, params: dict) -> dict[tuple[str, int], Path]:
    """(training rows' fingerprint, seed) -> checkpoint folder, for every cached learned SSIM
    trained with ``params`` (the page's SSIM row: a cache also holds SSIMs of other settings,
    e.g. an earlier ratio grid, trained on the same rows with the same seed)."""
    out: dict[tuple[str, int], list[Path]] = {}
    for f in cache.glob("*/shared_instances.parquet"):
        meta = pq.read_schema(f).metadata or {}
        if meta.get(b"selection") != b"learned" or b"seed" not in meta:
            continue
        key_file = f.parent / "cache_key.json"
        trained = json.loads(key_file.read_text()).get("params", {}) if key_file.exists() else {}
        if all(trained.get(k) == v for k, v in params.items()):
            out.setdefault((meta[b"fingerprint"].decode(), int(meta[b"seed"])), []).append(f.parent)
    many = {k: v for k, v in out.items() if len(v) > 1}
    if many:
        sys.exit(f"error: {cache}: several cached SSIM checkpoints match one page row: "
                 f"{', '.join(str(p) for v in many.values() for p in v)}")
    return {k: v[0] for k, v in out.items()}


def probe(page: dict, cache: Path) -> list[dict]:
    """One row per (dial value, SSIM model seed)."""
    from simab.policies.metrics import auc
    from simab.policies.ssim import SSIM, source_fingerprint

    cfg = dose.SEEDS[page["seed_model"]]
    ssim = next(m for m in cfg["models"] if m.label == "SSIM")
    # the page's SSIM row, every parameter with the policy's defaults merged (a parameter the row
    # leaves at its default, e.g. the backbone, must match too: the cache may hold SSIMs of the
    # other backbones on the same rows); its selections_dir is a path under the cache it was trained in
    params = {**SSIM.DEFAULTS, "embedding_dim": page.get("embedding_dim", dose.study_defaults()["embedding_dim"]), **ssim.params}
    found = checkpoints(cache, {k: v for k, v in params.items() if k != "selections_dir"})
    rows = []
    for r in page["results"]:
        data = dose.page_world(page, r["value"], cache)
        fp = source_fingerprint(data.train)
        shareable = oracle_ssim.shareable_rows(data.world, data.train)
        scen = data.train.scenario
        for seed in page["seeds"]:
            ckpt = found.get((fp, seed))
            if ckpt is None:
                continue
            table = pq.read_table(ckpt / "shared_instances.parquet")
            logit = table.column("logit").to_numpy()
            shared = table.column("shared").to_numpy(zero_copy_only=False)
            metrics = json.loads((ckpt / "metrics.json").read_text())
            row = {"value": r["value"], "seed": seed, "share_ratio": metrics.get("share_ratio"),
                   "ratio_search": [{"ratio": t["ratio"], "logloss": t["logloss"],
                                     f"auc_{cfg['focus']}": t["per_scenario_auc"].get(cfg["focus"])}
                                    for t in metrics.get("ratio_search", [])]}
            for s, name in enumerate(data.world.scenario_names):
                m = scen == s
                y = shareable[m]
                row[f"selector_auc_{name}"] = float(auc(y, logit[m])) if 0 < y.sum() < len(y) else None
                row[f"shareable_among_shared_{name}"] = float(y[shared[m]].mean()) if shared[m].any() else None
                row[f"shareable_among_all_{name}"] = float(y.mean())
            rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", help="a dose-response page's JSON (docs/results/dose_ssim.json)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    page = json.loads(Path(args.page).read_text())
    rows = probe(page, Path(kit.cache_root()))
    names = ["s1", "s2", "s3"]
    print("| dial | seed | ratio | " + " | ".join(f"selector AUC {n}" for n in names)
          + " | shareable among shared s1 / s2 (of all) | per-ratio focus AUC |")
    print("|---" * 8 + "|")
    for r in rows:
        aucs = " | ".join("n/a" if r[f"selector_auc_{n}"] is None else f"{r[f'selector_auc_{n}']:.3f}" for n in names)
        among = " / ".join("n/a" if r[f"shareable_among_shared_{n}"] is None else
                           f"{r[f'shareable_among_shared_{n}']:.3f} ({r[f'shareable_among_all_{n}']:.3f})"
                           for n in names[:2])
        per = ", ".join(f"{t['ratio']:g}: {t[next(k for k in t if k.startswith('auc_'))]:.4f}" for t in r["ratio_search"])
        print(f"| {r['value']:g} | {r['seed']} | {r['share_ratio']} | {aucs} | {among} | {per} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"page": args.page, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
