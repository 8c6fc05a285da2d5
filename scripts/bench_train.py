"""Training and inference throughput (samples/s) of the neural baselines, and our DIN
beside DeepCTR-Torch's DIN on the same synthetic data and dimensions.

The peer library is never a project dependency; install it in its own directory::

    python -m pip install --no-deps --target /tmp/peer_deepctr deepctr-torch \
        scikit-learn joblib threadpoolctl cloudpickle requests urllib3 idna charset-normalizer certifi
    PYTHONPATH=/tmp/peer_deepctr python scripts/bench_train.py --peer

Both DINs are driven by the same loop (same batches, Adam, BCE), so the ratio
measures the models, not the data pipelines.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from simab.policies.base import make_policy
from simab.policies.metrics import auc
from simab.policies.synthetic import SyntheticWorld, synthetic_spec

MODELS = ["dnn", "deepfm", "dcn", "din", "sim", "star", "hmoe"]


def materialise(source, batch_size, groups):
    return [b for b in source.batches(batch_size, shuffle=True, seed=0, groups=groups)]


def train_loop(forward, params, batches, device, epochs, probs=False):
    opt = torch.optim.Adam(params, lr=3e-3)
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for b in batches:
            out = forward(b)
            y = b["label"].to(device)
            loss = (torch.nn.functional.binary_cross_entropy(out, y) if probs
                    else torch.nn.functional.binary_cross_entropy_with_logits(out, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += y.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


@torch.no_grad()
def infer(forward, batches, device):
    scores, labels, n, start = [], [], 0, time.perf_counter()
    for b in batches:
        s = forward(b)
        scores.append(s.float().cpu())
        labels.append(b["label"])
        n += s.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = n / (time.perf_counter() - start)
    return rate, auc(torch.cat(labels).numpy(), torch.cat(scores).numpy())


def to(b, device):
    return {k: v.to(device) for k, v in b.items()}


def peer_din(spec, dim, device):
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN

    cols = [SparseFeat(f"profile{j}", s, dim) for j, s in enumerate(spec.profile_sizes)]
    cols += [SparseFeat("scenario", spec.n_scenarios, dim), SparseFeat("item", spec.n_items, dim),
             SparseFeat("cat", spec.n_categories, dim), SparseFeat("shop", spec.n_shops, dim),
             SparseFeat("price", spec.n_price_buckets, dim), DenseFeat("pop", 1)]
    cols += [VarLenSparseFeat(SparseFeat("hist_item", spec.n_items, dim, embedding_name="item"), spec.seq_len,
                              length_name="seq_length"),
             VarLenSparseFeat(SparseFeat("hist_cat", spec.n_categories, dim, embedding_name="cat"), spec.seq_len,
                              length_name="seq_length")]
    model = DIN(cols, ["item", "cat"], att_hidden_size=(64, 32), dnn_hidden_units=(128, 64),
                att_activation="relu", att_weight_normalization=False, device=str(device))

    def columns(b):
        parts = {f"profile{j}": b["profile"][:, j:j + 1] for j in range(len(spec.profile_sizes))}
        parts.update(scenario=b["scenario"][:, None], item=b["item"], cat=b["item_cat"], shop=b["item_shop"],
                     price=b["item_price"], pop=b["item_pop"], hist_item=b["seq_item"], hist_cat=b["seq_cat"],
                     seq_length=b["seq_mask"].sum(1, keepdim=True))
        order = sorted(model.feature_index, key=lambda k: model.feature_index[k][0])
        return torch.cat([parts[k].float() for k in order], dim=1).to(device)

    return model, lambda b: model(columns(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--peer", action="store_true", help="also run DeepCTR-Torch's DIN")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = synthetic_spec()
    world = SyntheticWorld(spec, seed=0)
    train, val = world.source(args.rows, seed=1), world.source(5_000, seed=2)
    results = {}
    for name in args.models.split(","):
        torch.manual_seed(0)
        policy = make_policy(name, {"embedding_dim": args.dim, "mlp_units": [128, 64]}, spec).to(device)
        tb = [to(b, device) for b in materialise(train, args.batch_size, policy.feature_groups)]
        vb = [to(b, device) for b in materialise(val, 1024, policy.feature_groups)]
        policy.train()
        train_rate = train_loop(policy, policy.parameters(), tb, device, args.epochs)
        policy.eval()
        infer_rate, val_auc = infer(policy, vb, device)
        results[name] = {"train_samples_per_s": round(train_rate), "infer_samples_per_s": round(infer_rate),
                         "val_auc": round(val_auc, 4)}
        print(name, results[name], flush=True)
    if args.peer:
        groups = ("profile", "scenario", "target", "short_seq")
        tb = materialise(train, args.batch_size, groups)
        vb = materialise(val, 1024, groups)
        torch.manual_seed(0)
        model, forward = peer_din(spec, args.dim, device)
        model.train()
        train_rate = train_loop(forward, model.parameters(), tb, device, args.epochs, probs=True)
        model.eval()
        infer_rate, val_auc = infer(forward, vb, device)
        results["deepctr_torch.din"] = {"train_samples_per_s": round(train_rate),
                                        "infer_samples_per_s": round(infer_rate), "val_auc": round(val_auc, 4)}
        print("deepctr_torch.din", results["deepctr_torch.din"], flush=True)
        if "din" in results:
            ours, peer = results["din"], results["deepctr_torch.din"]
            results["din_vs_peer"] = {
                "train_speed_ratio": round(ours["train_samples_per_s"] / peer["train_samples_per_s"], 2),
                "infer_speed_ratio": round(ours["infer_samples_per_s"] / peer["infer_samples_per_s"], 2),
                "auc_difference": round(ours["val_auc"] - peer["val_auc"], 4),
            }
    print(json.dumps({"device": str(device), "threads": args.threads, "rows": args.rows,
                      "epochs": args.epochs, "dim": args.dim, "results": results}, indent=2))


if __name__ == "__main__":
    main()
