"""The GPU check of issue #29: train DIN and LCN with AMP on CUDA, serve a DIN arm on CUDA,
and compare with the CPU.

    scripts/gpu_check.sh [--device cuda] [--users 2000] [--epochs 1]

On the default world (``--users`` users, seed 7; the pre-period in a temporary cache):

1. DIN and LCN trained for ``--epochs`` epochs on the CPU (float32) and on the device (AMP:
   bfloat16 where supported, else float16 with a gradient scaler), same seed and batches:
   training samples/s on each, the validation AUC of each, and the AUC gap (parity: at most
   0.002).  The CPU-trained model scored on the device gives the inference parity (the
   largest logit difference on the validation rows).
2. An A/A campaign of DIN (trained once by the campaign, then loaded from its cache), served
   on the CPU and on the device
   (``serving.device``): candidates/s of the serving calls (wall time: a GPU's work is not
   the process's CPU time) and the share of identical slates.

Prints one line per figure and ``PASS`` / ``FAIL`` per parity; exits 1 when a parity fails,
2 when the device is missing.  ``--device cpu`` runs the same steps with the CPU as the
"device" (a dry run of the script on a machine without a GPU: every parity holds exactly).
Meant for a machine with one GPU, in under 5 minutes (docs/benchmarks.md, "GPU").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SIMAB_QUIET", "1")

AUC_PARITY = 0.002


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import numpy as np
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine", file=sys.stderr)
        return 2
    import simab
    from simab.eventlog import read_table
    from simab.policies.base import build_policy
    from simab.policies.trainer import evaluate
    from simab.policies.world_features import feature_spec_of
    from simab.run.preperiod import pre_period, training_data
    from simab.simulators.world import World

    out: dict = {"device": a.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    failed = False
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        base = {"world": {"n_users": a.users}, "duration_days": a.days, "shards": 4,
                "training": {"cache_dir": str(tmp / "cache"), "epochs": a.epochs}}
        spec = simab.load_campaign(overrides=base)
        world = World.build(spec.world, spec.seed)
        train, val = training_data(world, pre_period(world, tmp / "cache"))
        fs = feature_spec_of(world.spec)
        options = {"epochs": a.epochs, "batch_size": spec.training.batch_size, "lr": spec.training.lr,
                   "seed": spec.seed, "progress": False, "patience": a.epochs, "amp": True}
        for name in ("din", "lcn"):
            row = {}
            models = {}
            for dev in ("cpu", a.device):
                model = build_policy(name, {}, fs, spec.seed)
                t0 = time.perf_counter()
                metrics = model.fit(train, val, device=dev, **options)
                wall = time.perf_counter() - t0
                models[dev] = model.to("cpu")
                row[f"{dev}_samples_per_s"] = metrics["train"]["samples_per_s"]
                row[f"{dev}_auc"] = metrics["auc"]
                row[f"{dev}_wall_s"] = wall
            row["auc_gap"] = abs(row[f"{a.device}_auc"] - row["cpu_auc"])
            cpu_model = models["cpu"]
            logits_cpu = np.concatenate([cpu_model.score(b).numpy().ravel()
                                         for b in val.batches(1024, groups=cpu_model.feature_groups)])
            logits_dev = np.concatenate([cpu_model.to(a.device).score(b).numpy().ravel()
                                         for b in val.batches(1024, groups=cpu_model.feature_groups)])
            cpu_model.to("cpu")
            row["inference_max_logit_gap"] = float(np.abs(logits_dev - logits_cpu).max())
            row["inference_auc_gap"] = abs(evaluate(cpu_model.to(a.device), val)["auc"]
                                           - evaluate(cpu_model.to("cpu"), val)["auc"])
            ok = row["auc_gap"] <= AUC_PARITY and row["inference_auc_gap"] <= AUC_PARITY
            failed |= not ok
            print(f"{name}: train samples/s cpu {row['cpu_samples_per_s']:,.0f}, {a.device} "
                  f"{row[f'{a.device}_samples_per_s']:,.0f}; val AUC cpu {row['cpu_auc']:.4f}, {a.device} "
                  f"{row[f'{a.device}_auc']:.4f} (gap {row['auc_gap']:.4f}); inference on {a.device}: max logit gap "
                  f"{row['inference_max_logit_gap']:.2e}, AUC gap {row['inference_auc_gap']:.5f} -> "
                  f"{'PASS' if ok else 'FAIL'}")
            out[name] = row
        # serving: the campaign's DIN (trained once, cached, then loaded by the second run) on each device
        serve = {}
        arms = {"control": {"policy": "din", "share": 0.5}, "treatment": {"policy": "din", "share": 0.5}}
        tables = {}
        for i, dev in enumerate(("cpu", a.device)):
            over = {**base, "arms": arms, "serving": {"device": "cuda" if dev.startswith("cuda") else "cpu"}}
            res = simab.run_campaign(simab.load_campaign(overrides=over), out=tmp / f"serve-{i}-{dev}", workers=1,
                                     report=False)
            manifest = json.loads((res.run_dir / "manifest.json").read_text())
            wall = sum(s["wall_s"] for s in manifest["shards"].values())
            req = read_table(res.run_dir, "requests")
            cands = int(np.sum(req.column("n_candidates").to_numpy()))
            serve[f"{dev}_candidates_per_s"] = cands / wall
            tables[dev] = read_table(res.run_dir, "exposures").sort_by([("request", "ascending"),
                                                                         ("position", "ascending")])
        t_cpu, t_dev = tables["cpu"], tables[a.device]
        same = float(np.mean(t_cpu.column("item").to_numpy() == t_dev.column("item").to_numpy())) \
            if t_cpu.num_rows == t_dev.num_rows else 0.0
        serve["identical_slate_items"] = same
        print(f"din arm served: cpu {serve['cpu_candidates_per_s']:,.0f} candidates/s (shard wall time), {a.device} "
              f"{serve[f'{a.device}_candidates_per_s']:,.0f} candidates/s; identical slate items {same:.4f}")
        out["serving"] = serve
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
