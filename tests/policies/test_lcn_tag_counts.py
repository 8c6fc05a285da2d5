"""LCN's tag counts (``tag_counts``, issue #30): the MLP learns from how many of the history's
events share the candidate's tag, on the tag world of ``test_lcn_tags_learns`` where only
the tag matters (the best possible AUC is 0.829, derived there; without the tag 0.5).

Every attention level is off here, so nothing but the count features can carry the tag: the
test isolates what the counts are for.  A tag-world user has half of its ``N`` = 100 events
on its interest tag (about 50 + 50/4 of the target's tag when it is the interest, 12.5
otherwise): the counts separate the two cases almost surely, so a model given them can
reach the best AUC, and one without them (only SIM's category counts, uninformative here:
the target's category holds 1/8 of any history) cannot beat a coin.
"""

from __future__ import annotations

import torch

from simab.policies.base import make_policy
from simab.policies.lcn import category_counts, tag_counts
from simab.policies.metrics import auc

from .test_lcn_learns import adam_steps
from .test_lcn_tags_learns import fspec, tag_world_batch

# no attention level, no auxiliary loss: the MLP reads the profile, target, short-sequence
# and count features only
PARAMS = {"embedding_dim": 8, "mlp_units": [32, 16], "use_csa": False, "use_msa": False, "use_fsa": False,
          "crp_weight": 0.0, "csa_match_weight": 0.0, "attention_units": [16]}
STEPS, BATCH = 150, 256  # ~38k rows; measured: 0.828 with the counts (0.825 at 80 steps), 0.497 without


def test_tag_counts_count_the_candidates_tag_in_all_and_other_categories():
    """On a hand-made history the four features are log(1 + n), n / N for the tag's events,
    then the same for those of another category; tag 0 (padding) never matches."""
    batch = {"ll_tag": torch.tensor([[1, 1, 2, 1, 0]]), "ll_cat": torch.tensor([[3, 4, 3, 5, 3]]),
             "ll_mask": torch.tensor([[True, True, True, True, False]]),
             "item_tag": torch.tensor([[1, 0]]), "item_cat": torch.tensor([[3, 3]])}
    got = tag_counts(batch)
    # candidate 0 (tag 1, category 3): events 0, 1, 3 of tag 1 (3 of 4 real), 1 and 3 elsewhere
    assert torch.allclose(got[0, 0], torch.tensor([torch.log1p(torch.tensor(3.0)), 0.75,
                                                   torch.log1p(torch.tensor(2.0)), 0.5]))
    assert torch.equal(got[0, 1], torch.zeros(4))  # tag 0: no tag
    cats = category_counts(batch)  # category 3: events 0 and 2 (event 4 is padding)
    assert torch.allclose(cats[0, 0], torch.tensor([torch.log1p(torch.tensor(2.0)), 0.5]))


def _trained_auc(tag_counts_on: bool) -> float:
    fs = fspec(True)
    torch.manual_seed(0)
    policy = make_policy("lcn", {**PARAMS, "tag_counts": tag_counts_on}, fs)
    adam_steps(policy, tag_world_batch, fs, STEPS, BATCH)
    batch = tag_world_batch(fs, 4096, torch.Generator().manual_seed(99))
    policy.eval()
    with torch.no_grad():
        return auc(batch["label"][:, 0].numpy(), policy(batch)[:, 0].numpy())


def test_lcn_learns_the_tag_from_its_counts():
    """With the tag counts the model gets most of the way to the best AUC (0.829); bar 0.78 =
    85% of the way from 0.5, leaving ~5 sd of 4,096 validation rows' AUC noise (~0.009).
    Without them it stays near 0.5: bar 0.6 (as test_lcn_tags_learns' model without tags)."""
    with_counts = _trained_auc(True)
    without = _trained_auc(False)
    assert with_counts > 0.78, with_counts
    assert without < 0.6, without
