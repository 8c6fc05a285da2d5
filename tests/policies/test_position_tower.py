"""The position tower (``position_tower``, policies/neural.py; issue #19): a bias per slate
position added to the training logits and left out at serving.  It must learn the
position curve of the logged clicks (what it is for) and must not change serving scores."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from simab.policies.base import build_policy
from simab.policies.neural import POSITION_SCALE
from simab.policies.world_features import feature_spec_of


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The dense default world with every scenario's position decay 0.8, 200 users x 1 day."""
    from simab.run.preperiod import pre_period, training_data
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    sc = {k: {"position_decay": 0.8} for k in ("home_feed", "search_results", "shop_page", "marketing_channel")}
    world = World.build(world_spec({"preset": "default", "calibration": "dense", "n_users": 200,
                                    "pre_period_days": 1.0, "scenarios": sc}), seed=0)
    folder = pre_period(world, tmp_path_factory.mktemp("pos"))
    train, val = training_data(world, folder)
    e = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("exposures-*.parquet"))])
    return world, train, val, e


def test_position_tower_learns_the_logged_position_curve(logged):
    """With the other features not knowing the position, a logistic term per position fits
    the log's click logit by position: logit CTR(p) - logit CTR(0) over all logged rows.
    That curve includes both the examination decay and the logging policy's order (popular
    items on top), so it is steeper than the examination alone (-0.8 log(1 + p)).  Learned
    within 0.35 logit of it at positions 1-6, where each position has ~120+ clicks (the
    target's own sampling SE is ~0.1 logit there; measured within 0.12 at 200 users, one
    epoch); beyond them clicks are few and one epoch has not converged (measured -2.0 vs -2.5
    at position 8), so there only the decline is checked."""
    world, train, val, e = logged
    pol = build_policy("dnn", {"position_tower": True}, feature_spec_of(world.spec), seed=0)
    pol.fit(train, val, epochs=1, batch_size=128, progress=False)
    b = POSITION_SCALE * pol.position_bias.weight.detach().numpy()[:10, 0]
    learned = b - b[0]
    pos, clicked = e.column("position").to_numpy(), e.column("clicked").to_numpy()
    ctr = np.array([clicked[pos == p].mean() for p in range(10)])
    target = np.log(ctr / (1 - ctr))
    target = target - target[0]
    assert learned[9] < learned[5] < learned[1] < -0.3  # it learned a declining curve, not its zero start
    np.testing.assert_allclose(learned[1:7], target[1:7], atol=0.35)


def test_position_tower_is_left_out_of_serving_scores(logged):
    world, train, _, _ = logged
    fs = feature_spec_of(world.spec)
    with_tower = build_policy("dnn", {"position_tower": True}, fs, seed=0)
    without = build_policy("dnn", {}, fs, seed=0)
    assert without.position_bias is None
    with torch.no_grad():
        with_tower.position_bias.weight.fill_(0.1)  # a non-zero tower
    batch = train.batch(np.arange(64))
    # the same initial weights for the shared parts (the tower is created after them)
    without.load_state_dict({k: v for k, v in with_tower.state_dict().items() if not k.startswith("position_bias")})
    # exact: the tower is not used at all when scoring
    torch.testing.assert_close(with_tower.score(batch), without.score(batch), rtol=0, atol=0)
    # and it is in the training loss: the loss differs
    logits = with_tower(batch)
    assert not torch.isclose(with_tower.loss(batch, logits)[0], without.loss(batch, logits)[0])
