"""Time ONE model's training to convergence on a dose-response world (issue #30, item 5:
"LCN at preset size trains to convergence in under 15 minutes on one core").

Trains the model labelled ``--model`` of ``scripts/dose_response.py``'s seed config at one dial
value, under the page's rule (early stopping on validation logloss, ``--patience``, ``--epochs``
as the cap), always from scratch (checkpoints go to a fresh temporary folder; the pre-period
comes from ``--cache``), and records wall and CPU seconds (``time.process_time``: with one
torch thread, the core-seconds the training used whatever else runs on the machine), steps,
epochs, what stopped it and the per-epoch validation history.

    .venv/bin/python scripts/bench_converge.py lcn --model LCN --users 5000 --value 1.0 \
        --json runs/bench/lcn_converge.json

``--world KEY=VALUE`` overrides a key of the world table (e.g. ``lifelong.source_length=2000``
for the preset's history cap instead of the page's).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import dose_response as dr
import experiment_kit as kit

from simab.errors import SimabError
from simab.overrides import parse_strict_value, split_assignment


def override(table: dict, item: str) -> None:
    """Apply one ``a.b=value`` override to ``table``: the campaign ``--set`` rules
    (``simab.overrides``: a TOML value, or a plain word kept as a string)."""
    key, raw = split_assignment(item, source="--world", shape="KEY=VALUE, e.g. lifelong.source_length=2000")
    *path, last = key.split(".")
    node = table
    for k in path:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise SimabError(f"{k} is not a table", source="--world", key=key)
    node[last] = parse_strict_value(raw, source="--world", key=key, name=key)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seed_model", choices=sorted(dr.SEEDS))
    kit.add_common_args(ap, users=5000, campaign_days=0.0)
    ap.set_defaults(monitor="logloss", epochs=12)  # the page's rule
    ap.add_argument("--model", required=True, help="the label of one of the seed's models (e.g. LCN)")
    ap.add_argument("--value", type=float, required=True, help="the dial value")
    ap.add_argument("--world", action="append", default=[], help="KEY=VALUE override of the world table")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    cfg = dr.SEEDS[args.seed_model]
    models = {m.label: m for m in cfg["models"]}
    if args.model not in models:
        raise SimabError(f"not a model of {args.seed_model}; allowed: {', '.join(models)}", source="--model", key=args.model)
    table = dr.world_table(cfg, args.users, args.value)
    for item in args.world:
        override(table, item)
    t = time.perf_counter()
    data = kit.load_world(table, args.seed, args.cache)
    load_s = time.perf_counter() - t
    model = models[args.model]
    with tempfile.TemporaryDirectory() as fresh:
        train = kit.checkpoint_trainer(data, fresh)
        tcfg = kit.trainer_config(args, args.seed)
        w0, c0 = time.perf_counter(), time.process_time()
        _, metrics, cached = train(model, {"embedding_dim": args.embedding_dim, **model.params}, args.seed, tcfg)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    tr = metrics["train"]
    out = {"command": "scripts/bench_converge.py " + " ".join(argv), "world": table, "seed": args.seed,
           "model": model.label, "policy": model.policy, "params": model.params, "threads": args.threads,
           "train_rows": data.train.n_rows, "val_rows": data.val.n_rows, "load_s": load_s,
           "wall_s": wall, "cpu_s": cpu, "cached": cached, "steps": tr["steps"], "epochs_run": tr["epochs_run"],
           "best_epoch": tr.get("best_epoch"), "stopped_by": tr["stopped_by"], "converged": tr["converged"],
           "auc": metrics["auc"], "logloss": metrics["logloss"], "history": tr["history"],
           "goal_s": 900.0}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"{model.label}: {tr['steps']} steps, {tr['epochs_run']} epochs, stopped by {tr['stopped_by']}; "
          f"wall {wall:.0f} s, CPU {cpu:.0f} s (goal 900 s); val AUC {metrics['auc']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SimabError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
