"""LCN (seed 001): masks with short and empty histories, top-k selection, CRP alignment,
gradients through the complete-scope level."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simab.errors import SimabError
from simab.policies.base import make_policy
from simab.policies.features import FeatureSpec
from simab.policies.lcn import LCN, top_k_positions
from simab.policies.synthetic import random_request_batch

TINY = {"embedding_dim": 4, "mlp_units": [16], "fsa_dim": 8, "attention_units": [8], "k1": 6, "k2": 3}
N = 12


@pytest.fixture(scope="module")
def fspec() -> FeatureSpec:
    return FeatureSpec(
        n_users=11, n_items=41, n_categories=5, n_shops=5, n_price_buckets=4, n_scenarios=2, n_scene_types=4,
        n_gap_buckets=6, n_actions=3, profile_sizes=(3, 4), scenario_names=("channel_feed", "search_results"),
        seq_len=5, aiseq_len=1, moveline_len=1, lifelong_len=N,
    )


def make_batch(fs: FeatureSpec, b: int = 4, c: int = 3, real: int = N, seed: int = 0) -> dict:
    """A random batch whose lifelong sequences hold ``real`` events (right-aligned,
    oldest first); ``real=0`` is an empty history."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int, *shape: int) -> torch.Tensor:
        return torch.randint(1, n, shape, generator=g)

    mask = torch.arange(N)[None, :].expand(b, -1) >= N - real
    out = {**random_request_batch(fs, b, c, g, n_target_items=20), "ll_mask": mask}
    # source-domain items 20..40 never overlap target items 1..19
    out["ll_item"] = (20 + ids(fs.n_items - 20, b, N)) * mask
    for key, n in (("ll_cat", fs.n_categories), ("ll_action", fs.n_actions), ("ll_gap", fs.n_gap_buckets)):
        out[key] = ids(n, b, N) * mask
    # the target-domain lifelong history (target_lifelong): target items 1..19, as long as the source's
    out["tl_mask"], out["tl_item"] = mask, ids(20, b, N) * mask
    for key, n in (("tl_cat", fs.n_categories), ("tl_action", fs.n_actions), ("tl_gap", fs.n_gap_buckets)):
        out[key] = ids(n, b, N) * mask
    return out


def lcn(fs: FeatureSpec, **params) -> LCN:
    torch.manual_seed(0)
    return make_policy("lcn", {**TINY, **params}, fs)


ABLATIONS = [{}, {"score_mass": False}, {"use_csa": False}, {"use_msa": False}, {"use_fsa": False}, {"pyramid": False},
             {"use_csa": False, "use_msa": False}, {"short_seq": "none", "crp_features": "item_cat"}, {"csa_prior": "none"},
             {"target_lifelong": True}, {"target_lifelong": True, "pyramid": False},
             {"target_lifelong": True, "use_msa": False, "count_features": False}]


@pytest.mark.parametrize("real", [N, 4, 1, 0])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_scores_finite_and_padding_ignored(fspec, real, ablation):
    """Short (fewer real events than k1, k2) and empty histories give finite scores, and
    ids under a False mask do not change them."""
    policy = lcn(fspec, **ablation)
    batch = make_batch(fspec, real=real)
    scores = policy.score(batch)
    assert scores.shape == (4, 3)
    assert torch.isfinite(scores).all()
    histories = ("ll", "tl") if ablation.get("target_lifelong") else ("ll",)
    assert ("target_lifelong" in policy.feature_groups) == (histories == ("ll", "tl"))
    noisy = dict(batch)
    for seq in ("ll", "tl"):  # padding ids, and a target-domain history the model does not read, change nothing
        for key in (f"{seq}_item", f"{seq}_cat", f"{seq}_action", f"{seq}_gap"):
            junk = torch.randint(1, 3, batch[key].shape)  # valid in every vocabulary
            noisy[key] = torch.where(batch[f"{seq}_mask"] & (seq in histories), batch[key], junk)
    torch.testing.assert_close(policy.score(noisy), scores)
    for seq, first in ((s, 20 if s == "ll" else 1) for s in histories):
        if real:  # a real event of each history it reads does matter
            changed = dict(batch)
            changed[f"{seq}_cat"] = batch[f"{seq}_cat"].clone()
            changed[f"{seq}_cat"][:, -1] = batch[f"{seq}_cat"][:, -1] % (fspec.n_categories - 1) + 1
            changed[f"{seq}_item"] = batch[f"{seq}_item"].clone()
            changed[f"{seq}_item"][:, -1] = first + (batch[f"{seq}_item"][:, -1] - first + 1) % 19
            assert not torch.allclose(policy.score(changed), scores), seq


def test_top_k_keeps_highest_scoring_real_positions():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(5, 2, 30, generator=g)
    mask = torch.rand(5, 30, generator=g) > 0.3
    mask[0] = False  # empty history
    mask[1, :] = False
    mask[1, :2] = True  # fewer real events than k
    idx, kept = top_k_positions(scores, mask, 7)
    assert idx.shape == (5, 2, 7)
    for b in range(5):
        for c in range(2):
            real = mask[b].nonzero().squeeze(-1)
            expected = real[scores[b, c, real].argsort(descending=True)[:7]]
            got = idx[b, c][kept[b, c]]
            assert set(got.tolist()) == set(expected.tolist())
            assert kept[b, c].sum() == min(7, len(real))


def test_top_k_ties_go_to_the_recent_event_whatever_the_left_padding():
    """The same item twice in a history scores exactly alike: the more recent wins, and
    padding added on the left (a batch cut to another length) changes nothing."""
    scores = torch.tensor([[[1.0, 2.0, 2.0, 0.5, 2.0]]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    idx, _ = top_k_positions(scores, mask, 2)
    assert idx[0, 0].tolist() == [4, 2]
    padded = torch.cat([torch.full((1, 1, 3), 9.0), scores], dim=-1)  # padding scores high but is masked
    idx_padded, _ = top_k_positions(padded, torch.cat([torch.zeros(1, 3, dtype=torch.bool), mask], dim=1), 2)
    assert (idx_padded - 3).tolist() == idx.tolist()
    # k at least the length: every position kept, in time order, with the mask as it is
    every, kept = top_k_positions(scores, mask, 9)
    assert every[0, 0].tolist() == [0, 1, 2, 3, 4] and kept.all()


def test_csa_keeps_events_it_scores_highest(fspec):
    """CSA keeps its top-k1 by score (checked by making CSA
    prefer one category: only events of that category survive the first level)."""
    policy = lcn(fspec, k1=3, k2=2)
    batch = make_batch(fspec, b=2, c=1)
    with torch.no_grad():
        policy.bank.tables["cat"].weight.zero_()
        policy.bank.tables["item"].weight.zero_()
        policy.bank.tables["cat"].weight[2] = 1.0
        policy.csa.query.weight.copy_(torch.eye(8))
    batch["item_cat"][:] = 2
    batch["ll_cat"][:, -3:] = 2
    batch["ll_cat"][:, :-3] = 1
    target = policy.bank.item_key(batch["item"], batch["item_cat"])
    scores, _ = policy.csa_scores(batch, target, policy.bank.item_key(batch["ll_item"], batch["ll_cat"]))
    idx, _ = top_k_positions(scores, batch["ll_mask"], 3)
    assert set(idx[0, 0].tolist()) == {N - 3, N - 2, N - 1}


def test_csa_prior_adds_its_weight_on_exact_matches(fspec):
    """``csa_prior="exact"`` adds its learnable weight to CSA's score on the events of the
    candidate's category and nothing elsewhere; ``"none"`` has no prior (the score alone).
    Same seed, so the two models' other weights are equal; tolerance: float32 rounding."""
    batch = make_batch(fspec, b=3, c=2)
    with_prior, without = lcn(fspec), lcn(fspec, csa_prior="none")
    assert without.csa.prior is None and with_prior.csa.prior.tolist() == [3.0]
    with torch.no_grad():
        with_prior.csa.prior.fill_(1.7)
        target = with_prior.key(batch, "item", "item_cat", "item_tag")
        keys = with_prior.key(batch, "ll_item", "ll_cat", "ll_tag")
        a, _ = with_prior.csa_scores(batch, target, keys)
        b, _ = without.csa_scores(batch, target, keys)
    match = (batch["ll_cat"].unsqueeze(1) == batch["item_cat"].unsqueeze(-1)).float()
    assert 0 < match.mean() < 1  # both kinds of event are there
    torch.testing.assert_close(a - b, 1.7 * match, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="prior weight"):
        with_prior.csa(target, keys, batch["ll_mask"])


def test_gradients_reach_complete_scope_level(fspec):
    policy = lcn(fspec, crp_weight=0.0)
    batch = make_batch(fspec, c=1)
    batch["label"] = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    policy.train()
    loss, _ = policy.loss(batch, policy(batch))
    loss.backward()
    assert policy.csa.query.weight.grad is not None
    assert policy.csa.query.weight.grad.abs().sum() > 0


def _crp_alignment(policy: LCN, fs: FeatureSpec) -> float:
    """Mean cosine of each target item to the source items of its own category minus
    that to other categories' source items (categories: item id mod 4 + 1)."""
    with torch.no_grad():
        emb = F.normalize(policy.bank.tables["item"].weight, dim=-1)
        tgt, src = torch.arange(1, 20), torch.arange(20, fs.n_items)
        sim = emb[tgt] @ emb[src].T
        same = (tgt % 4)[:, None] == (src % 4)[None, :]
        return float(sim[same].mean() - sim[~same].mean())


def test_crp_loss_decreases_and_aligns_paired_items(fspec):
    """On a tiny world where each item's category is ``id mod 4 + 1``, training on the
    CRP loss alone lowers it and makes target items closer to same-category source items
    than to others (untrained embeddings are random: alignment ~ 0)."""
    policy = lcn(fspec, crp_weight=1.0)
    opt = torch.optim.Adam(policy.parameters(), lr=0.05)
    before = _crp_alignment(policy, fspec)
    losses = []
    for step in range(60):
        batch = make_batch(fspec, b=32, c=1, seed=step)
        batch["item_cat"] = batch["item"] % 4 + 1
        batch["ll_cat"] = torch.where(batch["ll_mask"], batch["ll_item"] % 4 + 1, 0)
        batch["label"] = torch.ones(32, 1)  # every row an anchor (CRP anchors are the clicked ones)
        policy.train()
        policy(batch)
        crp = policy.crp_loss(*policy.crp_pairs(batch))
        opt.zero_grad()
        crp.backward()
        opt.step()
        losses.append(float(crp.detach()))
    after = _crp_alignment(policy, fspec)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert abs(before) < 0.2  # random init: no structure
    assert after > before + 0.3  # cosine gap; a margin far above the init noise


def test_auxiliary_losses_enter_training_loss_only(fspec):
    policy = lcn(fspec, crp_weight=0.5, csa_match_weight=0.25)
    batch = make_batch(fspec, c=1)
    batch["label"] = torch.ones(4, 1)
    policy.train()
    total, parts = policy.loss(batch, policy(batch))
    assert "crp" in parts and "csa_match" in parts
    # the same sum in another order: equal up to float rounding
    torch.testing.assert_close(total.detach(), parts["bce"] + 0.5 * parts["crp"] + 0.25 * parts["csa_match"])
    policy.eval()
    total, parts = policy.loss(batch, policy(batch))
    assert "crp" not in parts and "csa_match" not in parts


def test_invalid_params_name_the_parameter(fspec):
    with pytest.raises(SimabError, match="crp_features"):
        lcn(fspec, crp_features="shop")
    with pytest.raises(SimabError):
        lcn(fspec, k1=0)
