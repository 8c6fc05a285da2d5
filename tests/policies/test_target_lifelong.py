"""The ``target_lifelong`` feature group (issue #30: LCN over both domains' lifelong
histories): what a lifelong world's training batches and served batches carry in it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simab.policies.base import make_policy
from simab.policies.world_features import FeatureBuilder
from simab.run.preperiod import pre_period, training_data
from simab.simulators.spec import world_spec
from simab.simulators.world import World

GROUPS = ("profile", "scenario", "target", "short_seq", "lifelong", "target_lifelong")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    world = World.build(world_spec({"preset": "lifelong", "n_users": 40, "pre_period_days": 1.0}), seed=3)
    train, _ = training_data(world, pre_period(world, tmp_path_factory.mktemp("pre")))
    return world, train


def test_training_batches_carry_each_users_target_domain_history(data):
    """The group holds the user's target-domain (shop) history before the period: shop items
    only (source events are content items), oldest first, as the world generates it for that
    user (ids: compared exactly), up to ``lifelong.target_length`` events."""
    world, train = data
    batch = next(train.batches(64, groups=GROUPS))
    assert {"tl_item", "tl_cat", "tl_action", "tl_gap", "tl_mask"} <= batch.keys()
    mask = batch["tl_mask"]
    assert mask.any() and mask.shape[1] <= world.spec.lifelong.target_length
    n_shop = world.spec.n_shop_items
    assert (batch["tl_item"][mask] <= n_shop).all() and (batch["ll_item"][batch["ll_mask"]] > n_shop).all()
    assert (batch["tl_item"][~mask] == 0).all() and (batch["tl_gap"][mask] > 0).all()
    users = world.population.users(train.user[:64])
    expected = world.histories.target(users, max_len=world.spec.lifelong.target_length)
    for r in range(8):
        real = batch["tl_item"][r][mask[r]].numpy() - 1
        assert np.array_equal(real, expected.item[r][expected.mask[r]])


def test_lcn_with_both_histories_scores_and_trains_on_the_world(data):
    """LCN with ``target_lifelong`` declares the group, scores the world's batches and one
    training step's gradient reaches its target-domain pyramid."""
    world, train = data
    spec = FeatureBuilder(world).fs
    assert "target_lifelong" in spec.provides
    torch.manual_seed(0)
    policy = make_policy("lcn", {"embedding_dim": 4, "mlp_units": [8], "fsa_dim": 4, "attention_units": [4],
                                 "target_lifelong": True}, spec)
    assert "target_lifelong" in policy.feature_groups
    batch = next(train.batches(64, shuffle=True, groups=policy.feature_groups))
    assert torch.isfinite(policy.score(batch)).all()
    policy.train()
    loss, _ = policy.loss(batch, policy(batch))
    loss.backward()
    grads = [p.grad for n, p in policy.named_parameters() if n.startswith(("t_msa", "t_fsa"))]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
