"""LCN variants on the dose page's worlds (docs/results/dose_lcn.md, its notes): each variant
trains under the page's rule (early stopping on validation logloss, patience 2, cap 12 epochs),
cached like the page's trainings, and prints its validation AUC / GAUC and what its
complete-scope attention selected (``dose_response.csa_probe``).

    SIMAB_CACHE=... USERS=1000 .venv/bin/python scripts/lcn_variants.py nocrp:0.0:7 noprior:1.0:8

Each argument is ``variant:dial value:model seed``; ``residual:V:S`` prints instead what the
oracle's tag features add to the page's SIM of seed S (``oracle_lcn.residual``).  Variants: ``base`` (the page's LCN),
``nocrp`` (``crp_weight = 0``), ``nomatch`` (``csa_match_weight = 0``), ``noprior`` (``csa_prior =
"none"``: CSA scored by its learned similarity alone, the page's LCN before the exact-match prior
became the default; that prior was the variant ``prior`` here, measured on the 1,000-user page),
``simlike`` (MSA off, FSA over CSA's top 50: SIM's search then one multi-head attention over 50
events, as SIM is built), ``csaonly`` (MSA and FSA off), ``nomsa`` (MSA off), ``noaux`` (neither
CRP nor the CSA match loss), ``notagcount`` (``tag_counts = false``: without the tag's count
features beside SIM's category counts, the page's LCN before they became the default; they were
the variant ``tagcount`` here), ``notags`` (LCN built as on a
world without tag ids), ``simtag`` (SIM itself plus those tag counts: is the oracle's tag
information learnable over what SIM learns at all).  The variants are registered here only
(policies ``lcn_notags``, ``sim_tagcount``): experiments, not policies of the package.
"""

import argparse
import json
import os
import sys

import dose_response as dr
import experiment_kit as kit
import numpy as np
import oracle_lcn
import torch
from torch import nn

from simab.policies.base import register_policy
from simab.policies.layers import MLP
from simab.policies.lcn import LCN, tag_counts
from simab.policies.sim import SIM


class _WithExtra(nn.Module):
    """An MLP that reads its input with ``extra`` (set before each forward) appended."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp, self.extra = mlp, None

    def forward(self, x):
        return self.mlp(torch.cat([x, self.extra], dim=-1))


class SIMTagCounts(SIM):
    """SIM plus LCN's tag count features (``simab.policies.lcn.tag_counts``): whether the oracle's tag
    information is learnable on top of what SIM learns, at all."""
    name = "sim_tagcount"
    feature_groups = SIM.feature_groups + ("tags",)

    def __init__(self, params, feature_spec):
        super().__init__(params, feature_spec)
        first = next(m for m in self.mlp.modules() if isinstance(m, nn.Linear))
        p = self.params
        self.mlp = _WithExtra(MLP(first.in_features + 4, p["mlp_units"], out_dim=1, activation=p["activation"],
                                  dropout=p["dropout"]))

    def forward(self, batch):
        self.mlp.extra = tag_counts(batch)
        return super().forward(batch)


register_policy("sim_tagcount", SIMTagCounts, SIMTagCounts.load)


class LCNNoTags(LCN):
    """LCN built as on a world without tags (item ⊕ category keys, category positives)."""
    name = "lcn_notags"

    def __init__(self, params, feature_spec):
        import dataclasses
        super().__init__(params, dataclasses.replace(feature_spec, n_tags=1))
        self.feature_spec = feature_spec  # the world's, so its checkpoint loads against the world's spec


register_policy("lcn_notags", LCNNoTags, LCNNoTags.load)


VARIANTS = {"base": ("lcn", {}), "nocrp": ("lcn", {"crp_weight": 0.0}), "nomatch": ("lcn", {"csa_match_weight": 0.0}),
            "noprior": ("lcn", {"csa_prior": "none"}), "simlike": ("lcn", {"use_msa": False, "k2": 50}),
            "csaonly": ("lcn", {"use_msa": False, "use_fsa": False}),
            "nomsa": ("lcn", {"use_msa": False}), "noaux": ("lcn", {"crp_weight": 0.0, "csa_match_weight": 0.0}),
            "simtag": ("sim_tagcount", {}), "notagcount": ("lcn", {"tag_counts": False}), "notags": ("lcn_notags", {})}


def main(argv: list[str]) -> int:
    cfg, users = dr.SEEDS["lcn"], int(os.environ.get("USERS", "1000"))
    rule = argparse.Namespace(**dr.study_defaults())  # the dose page's trainer flags, one thread
    cache = os.environ.get("SIMAB_CACHE") or str(kit.cache_root())
    for spec in argv:
        name, value, seed = spec.split(":")
        data = kit.load_world(dr.world_table(cfg, users, float(value)), 7, cache)
        if name == "residual":  # the tag features over the page's SIM (scripts/oracle_lcn.py residual)
            sim = kit.Model("SIM", "sim")
            pol, met, _ = kit.checkpoint_trainer(data, cache)(sim, {"embedding_dim": 8}, int(seed),
                                                              kit.trainer_config(rule, int(seed)))
            logits = np.concatenate([pol.score(b)[:, 0].numpy()
                                     for b in data.val.batches(4096, groups=pol.feature_groups)])
            print(json.dumps({"variant": name, "value": float(value), "seed": int(seed), "sim_auc": met["auc"],
                              **oracle_lcn.residual(data, logits)}), flush=True)
            continue
        policy, params = VARIANTS[name]
        model = kit.Model(f"LCN {name}", policy, params)
        pol, met, _ = kit.checkpoint_trainer(data, cache)(model, {"embedding_dim": 8, **params}, int(seed),
                                                          kit.trainer_config(rule, int(seed)))
        print(json.dumps({"variant": name, "value": float(value), "seed": int(seed), "auc": met["auc"], "gauc": met["gauc"],
                          "logloss": met["logloss"], "epochs": met["train"]["epochs_run"],
                          "best_epoch": met["train"]["best_epoch"],
                          "csa": dr.csa_probe(pol, data) if hasattr(pol, "csa") else None}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
