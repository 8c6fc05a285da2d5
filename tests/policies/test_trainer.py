"""Trainer options, best-weights restore and the loss hook."""

from __future__ import annotations

import math

import pytest
import torch

from simab.errors import SimabError
from simab.policies.base import build_policy
from simab.policies.trainer import TrainerConfig, evaluate

from .conftest import TINY


def test_unknown_or_bad_options_are_user_errors():
    with pytest.raises(SimabError, match="unknown trainer option 'epoch'") as err:
        TrainerConfig.from_options({"epoch": 3})
    assert err.value.key == "trainer.epoch"
    with pytest.raises(SimabError) as err:
        TrainerConfig(batch_size=0)
    assert err.value.key == "trainer.batch_size"
    with pytest.raises(SimabError):
        TrainerConfig(device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_user_error(spec, small_source):
    policy = build_policy("dnn", TINY, spec, seed=0)
    with pytest.raises(SimabError, match="no CUDA device"):
        policy.fit(small_source, None, device="cuda", progress=False)


def test_early_stopping_keeps_the_best_epoch(spec, world, small_source):
    val = world.source(400, seed=9)
    policy = build_policy("dnn", TINY, spec, seed=0)
    # a large learning rate makes validation AUC go up and down between epochs
    metrics = policy.fit(small_source, val, epochs=8, batch_size=32, lr=0.05, patience=2, progress=False)
    history = metrics["train"]["history"]
    aucs = [h["val_auc"] for h in history]
    assert metrics["auc"] == max(aucs)
    assert metrics["train"]["best_epoch"] == aucs.index(max(aucs)) + 1
    # the stop came `patience` epochs after the best one, or at the last epoch
    assert len(history) in (8, metrics["train"]["best_epoch"] + 2)
    assert evaluate(policy, val)["auc"] == pytest.approx(max(aucs), abs=1e-12)  # best weights restored


def test_default_loss_is_weighted_bce(spec, small_source):
    policy = build_policy("dnn", TINY, spec, seed=0)
    batch = next(small_source.batches(8, groups=policy.feature_groups))
    batch["weight"] = torch.arange(1.0, 9.0)
    logits = policy(batch)
    total, parts = policy.loss(batch, logits)
    y, z, w = batch["label"][:, 0], logits[:, 0], batch["weight"]
    p = torch.sigmoid(z)
    manual = -(w * (y * torch.log(p) + (1 - y) * torch.log(1 - p))).sum() / w.sum()
    assert total.item() == pytest.approx(manual.item(), rel=1e-5)
    assert set(parts) == {"bce"}


def test_evaluate_uses_score_kind(spec, small_source):
    class Constant:
        """A non-neural policy that scores every candidate 0.3, as a probability."""

        name, feature_groups, trainable, score_kind, feature_spec = "c", ("target",), False, "probability", spec

        def score(self, batch):
            return torch.full(batch["item"].shape, 0.3)

    m = evaluate(Constant(), small_source)
    assert m["auc"] == 0.5  # all scores tie
    y = small_source.label
    expected = -(y * math.log(0.3) + (1 - y) * math.log(0.7)).mean()
    assert m["logloss"] == pytest.approx(expected)


def test_early_stopping_on_logloss_keeps_the_lowest_and_says_why_it_stopped(spec, world, small_source):
    val = world.source(400, seed=9)
    policy = build_policy("dnn", TINY, spec, seed=0)
    # the large learning rate makes validation logloss go up and down between epochs
    metrics = policy.fit(small_source, val, epochs=8, batch_size=32, lr=0.05, patience=2, monitor="logloss",
                         progress=False)
    train = metrics["train"]
    losses = [h["val_logloss"] for h in train["history"]]
    assert metrics["logloss"] == min(losses)
    assert train["best_epoch"] == losses.index(min(losses)) + 1
    # stopped `patience` epochs after the best one (converged), or ran out of epochs (not converged)
    if train["stopped_by"] == "patience":
        assert len(losses) == train["best_epoch"] + 2 and train["converged"]
    else:
        assert train["stopped_by"] == "epochs" and len(losses) == 8 and not train["converged"]
    assert evaluate(policy, val)["logloss"] == pytest.approx(min(losses), rel=1e-9)  # best weights restored


def test_min_epochs_holds_off_the_patience_rule(spec, world, small_source):
    val = world.source(400, seed=9)
    policy = build_policy("dnn", TINY, spec, seed=0)
    metrics = policy.fit(small_source, val, epochs=5, batch_size=32, lr=0.05, patience=1, min_epochs=5,
                         monitor="logloss", progress=False)
    assert metrics["train"]["epochs_run"] == 5


def test_max_steps_is_not_convergence(spec, small_source, world):
    policy = build_policy("dnn", TINY, spec, seed=0)
    metrics = policy.fit(small_source, world.source(200, seed=9), epochs=3, max_steps=2, batch_size=32, progress=False)
    assert metrics["train"]["stopped_by"] == "max_steps" and not metrics["train"]["converged"]


def test_an_unknown_monitor_is_a_user_error():
    with pytest.raises(SimabError, match="trainer.monitor|auc, logloss"):
        TrainerConfig(monitor="accuracy")


def test_default_rule_keeps_the_checkpoint_key():
    # the cache key of the default rule is what it was before monitor / min_epochs existed
    assert "monitor" not in TrainerConfig().result_relevant()
    assert TrainerConfig(monitor="logloss").result_relevant()["monitor"] == "logloss"
