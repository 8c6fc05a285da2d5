"""Packing (simab.policies.packing): cutting padding and grouping rows by history length
changes no row's score beyond float32 rounding, for every served seed model; the cuts
drop only columns that are padding in every row; bucketed training batches cover the
epoch once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from simab.policies.base import build_policy
from simab.policies.features import FEATURE_GROUPS
from simab.policies.packing import SEQUENCES, bucketed_batches, length_order, packed_batches, trim
from simab.policies.synthetic import random_request_batch, synthetic_spec

#: Sequence lengths of the test spec: short, AISeq, moveline, lifelong, target-domain lifelong.
LENGTHS = {"seq": 10, "ais": 12, "ml": 16, "ll": 64, "tl": 20}


@pytest.fixture(scope="module")
def fs():
    return dataclasses.replace(synthetic_spec(), aiseq_len=LENGTHS["ais"], moveline_len=LENGTHS["ml"],
                               n_scene_types=8, provides=tuple(FEATURE_GROUPS))


def right_aligned(lengths: np.ndarray, width: int) -> torch.Tensor:
    return torch.from_numpy(np.arange(width)[None, :] >= (width - lengths)[:, None])


def request_batch(fs, b: int, c: int, seed: int = 0) -> dict:
    """Random requests with every sequence right-aligned (padding first, as the feature
    builder lays them out), lengths from empty to full, ids 0 on padding."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    batch = random_request_batch(fs, b, c, g)
    vocab = {"item": fs.n_items, "cat": fs.n_categories, "scene": fs.n_scene_types, "shop": fs.n_shops,
             "gap": fs.n_gap_buckets, "action": fs.n_actions, "tag": max(fs.n_tags, 2)}
    for mask_key, keys in SEQUENCES.items():
        width = LENGTHS[mask_key.split("_")[0]]
        n = rng.integers(0, width + 1, b)
        n[:2] = (0, width)  # an empty history and a full one
        mask = right_aligned(n, width)
        batch[mask_key] = mask
        for k in keys:
            ids = torch.randint(1, vocab[k.split("_")[1]], (b, width), generator=g)
            batch[k] = ids * mask
    return batch


def test_trim_cuts_the_columns_that_are_padding_in_every_row(fs):
    batch = request_batch(fs, 9, 3)
    batch["ll_mask"][:, :] = right_aligned(np.array([0, 5, 3, 1, 0, 2, 5, 4, 1]), LENGTHS["ll"])
    out = trim(batch)
    assert out["ll_mask"].shape[1] == 5 and out["ll_item"].shape[1] == 5
    assert torch.equal(out["ll_item"], batch["ll_item"][:, -5:])
    assert out["ll_mask"].sum() == batch["ll_mask"].sum()  # no real entry dropped
    assert out["item"] is batch["item"]  # other keys untouched
    # a left-aligned sequence (the synthetic sources lay theirs out that way) keeps every real entry
    left = torch.from_numpy(np.arange(LENGTHS["seq"])[None, :] < np.array([[3], [6]]))
    cut = trim({"seq_mask": left, "seq_item": torch.arange(20).view(2, 10), "seq_cat": torch.zeros(2, 10)})
    assert cut["seq_mask"].shape[1] == 6 and torch.equal(cut["seq_item"], torch.arange(20).view(2, 10)[:, :6])
    # no real entry at all: one padding column stays
    empty = trim({"ll_mask": torch.zeros(4, 64, dtype=torch.bool), "ll_item": torch.zeros(4, 64, dtype=torch.long)})
    assert empty["ll_mask"].shape == (4, 1)


def test_packed_batches_cover_every_row_once_in_length_order(fs):
    batch = request_batch(fs, 37, 2)
    seen = []
    for rows, part in packed_batches(batch, 8):
        assert len(rows) <= 8 and part["item"].shape[0] == len(rows)
        assert torch.equal(part["item"], batch["item"][torch.from_numpy(rows)])
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(37))
    ll = batch["ll_mask"].sum(1).numpy()[length_order(batch)]
    assert (np.diff(ll) >= 0).all()  # the lifelong history (the longest cap) sorts first


SERVED = {
    "din": {},
    "amen": {"attention_dim": 8},
    "lcn": {"fsa_dim": 8, "k1": 12, "k2": 4},
    "ssim": {},
    "sim": {"top_k": 8},
}


@pytest.mark.parametrize("name", list(SERVED))
def test_packed_scores_equal_each_row_scored_alone(fs, name):
    """Scores of 40 requests in packed parts of 8 (sorted, cut) against each request scored
    alone at full width: equal up to float32 rounding.  The weights are redrawn at unit scale
    (the initial embeddings' 1e-2 would make every score alike) so that differences show."""
    policy = build_policy(name, {"embedding_dim": 8, "mlp_units": [16], **SERVED[name]}, fs, seed=3)
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for p in policy.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    policy.eval()
    batch = request_batch(fs, 40, 6, seed=1)
    packed = np.empty((40, 6), np.float32)
    for rows, part in packed_batches(batch, 8):
        packed[rows] = policy.score(part).numpy()
    alone = np.concatenate([policy.score({k: v[i:i + 1] for k, v in batch.items()}).numpy() for i in range(40)])
    assert np.abs(alone).max() > 1.0  # scores that differ, not a constant
    # float32 sums in another order: ~1e-7 relative per operation; 1e-4 of the scale leaves room
    # for a few dozen layers and is far below the gaps between candidates' scores
    assert np.abs(packed - alone).max() <= 1e-4 * np.abs(alone).max()


def test_bucketed_batches_cover_the_epoch_and_sort_within_windows():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 500, 1000)
    order = rng.permutation(1000)
    batches = bucketed_batches(order, lengths, 32, seed=1, window=5)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert sum(len(b) < 32 for b in batches) <= 1
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.25 * np.ptp(lengths)  # similar lengths together (random batches: ~0.9)
    again = bucketed_batches(order, lengths, 32, seed=1, window=5)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))  # the seed fixes them
