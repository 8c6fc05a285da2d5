"""Checkpoints refuse what they are not, and the cache reuses trained policies."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from simab.errors import SimabError
from simab.policies.base import build_policy
from simab.policies.checkpoint import cache_key, load_checkpoint, load_or_train, save_checkpoint
from simab.policies.trainer import TrainerConfig, train_policy

from .conftest import TINY

CONFIG = TrainerConfig(epochs=1, batch_size=64, max_steps=4, progress=False)


@pytest.fixture
def checkpoint(spec, tmp_path):
    policy = build_policy("din", TINY, spec, seed=0)
    save_checkpoint(policy, tmp_path / "ckpt", {"auc": 0.5})
    return tmp_path / "ckpt"


def test_files_and_spec_json(checkpoint, spec):
    assert {p.name for p in checkpoint.iterdir()} == {"weights.pt", "spec.json", "metrics.json"}
    stored = json.loads((checkpoint / "spec.json").read_text())
    assert stored["format"] == 1 and stored["policy"] == "din"
    assert stored["params"]["embedding_dim"] == TINY["embedding_dim"]
    assert stored["feature_spec"] == spec.to_dict()
    # weights load without executing code
    torch.load(checkpoint / "weights.pt", weights_only=True)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"name": "dnn"}, "policy"),
        ({"params": {**TINY, "embedding_dim": 4}}, "params.embedding_dim"),
        ({"params": {"embedding_dim": 8}}, "params.mlp_units"),  # defaults are merged first
    ],
)
def test_mismatch_is_refused_with_one_line(checkpoint, kwargs, key):
    with pytest.raises(SimabError) as err:
        load_checkpoint(checkpoint, **kwargs)
    assert err.value.key == key
    assert str(checkpoint / "spec.json") in str(err.value)
    assert "\n" not in str(err.value)


def test_other_world_is_refused(checkpoint, spec):
    other = dataclasses.replace(spec, n_items=spec.n_items + 1)
    with pytest.raises(SimabError, match="n_items") as err:
        load_checkpoint(checkpoint, feature_spec=other)
    assert err.value.key == "feature_spec.n_items"


def test_groups_the_policy_does_not_read_do_not_count(checkpoint, spec):
    """A world that provides a group more (one added since the checkpoint was written: the
    stored spec lacks it) or less, where the policy (DIN) reads neither, loads the checkpoint;
    a world that lacks a group the policy reads does not."""
    stored = json.loads((checkpoint / "spec.json").read_text())
    stored["feature_spec"]["provides"] = [g for g in spec.provides if g != "lifelong"]  # DIN does not read it
    (checkpoint / "spec.json").write_text(json.dumps(stored))
    load_checkpoint(checkpoint, feature_spec=spec)
    load_checkpoint(checkpoint, feature_spec=dataclasses.replace(spec, provides=spec.provides + ("target_lifelong",)))
    lacking = dataclasses.replace(spec, provides=tuple(g for g in spec.provides if g != "short_seq"))
    with pytest.raises(SimabError, match="provides"):
        load_checkpoint(checkpoint, feature_spec=lacking)


@pytest.mark.parametrize(("field", "value"), [("format", 2), ("simab_version", "0.0.0-other")])
def test_other_format_or_version_is_refused(checkpoint, field, value):
    path = checkpoint / "spec.json"
    stored = json.loads(path.read_text())
    stored[field] = value
    path.write_text(json.dumps(stored))
    with pytest.raises(SimabError) as err:
        load_checkpoint(checkpoint)
    assert err.value.key == field


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(SimabError, match="spec.json is missing"):
        load_checkpoint(tmp_path)


def test_cache_key_is_canonical_and_sensitive():
    base = cache_key({"preset": "default", "seed": 1}, "din", {"a": 1, "b": [1, 2]}, 0)
    assert base == cache_key({"seed": 1, "preset": "default"}, "din", {"b": [1, 2], "a": 1}, 0)
    assert re.fullmatch("[0-9a-f]{64}", base), base  # a SHA-256 hex digest
    assert base != cache_key({"preset": "default", "seed": 1}, "din", {"a": 1, "b": [1, 2]}, 1)
    assert base != cache_key({"preset": "default", "seed": 2}, "din", {"a": 1, "b": [1, 2]}, 0)
    assert base != cache_key({"preset": "default", "seed": 1}, "dnn", {"a": 1, "b": [1, 2]}, 0)


def test_load_or_train_reuses_the_cached_policy(spec, small_source, tmp_path):
    world = {"preset": "synthetic", "seed": 0}
    args = (tmp_path, world, "dnn", TINY, spec, 3, small_source, small_source, CONFIG)
    first, metrics, cached = load_or_train(*args)
    assert not cached
    # an omitted default and its explicit value hit the same entry
    explicit = {**TINY, "dropout": 0.0}
    second, metrics2, cached2 = load_or_train(tmp_path, world, "dnn", explicit, spec, 3, small_source,
                                              small_source, CONFIG)
    assert cached2 and metrics2["auc"] == pytest.approx(metrics["auc"])
    batch = next(small_source.batches(32, groups=first.feature_groups))
    assert torch.equal(first.score(batch), second.score(batch))
    entries = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    _, _, cached3 = load_or_train(tmp_path, world, "dnn", TINY, spec, 4, small_source, small_source, CONFIG)
    assert not cached3  # another seed is another entry


def test_train_policy_writes_metrics_json(spec, small_source, tmp_path):
    metrics = train_policy("deepfm", TINY, spec, small_source, small_source, CONFIG, tmp_path)
    stored = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("auc", "gauc", "logloss", "per_scenario"):
        assert key in stored
    for scenario in stored["per_scenario"].values():
        assert {"auc", "gauc", "logloss"} <= set(scenario)
    assert stored["auc"] == pytest.approx(metrics["auc"])
    load_checkpoint(tmp_path, name="deepfm", params=TINY, feature_spec=spec)


def test_a_log_only_field_leaves_the_key_of_a_policy_that_does_not_read_what_it_changes():
    """``LOG_ONLY_FIELDS`` (``moveline_visible``: what the moveline / AISeq show): a policy
    reading neither (DIN) has one key at every value, one reading them (AMEN) a key per value."""
    from simab.policies.checkpoint import key_world
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    # what load_or_train is given: World.spec_dict() (the spec nested under "world")
    worlds = [World.build(world_spec({"preset": "moveline", "n_users": 50, "moveline_visible": v}), 0).spec_dict()
              for v in (0.0, 0.5, 1.0)]
    din = ("profile", "scenario", "target", "short_seq")
    keys = [cache_key(key_world(w, din), "din", {}, 0) for w in worlds]
    assert keys[0] == keys[1] == keys[2]  # 1.0 is the default, which the spec dump leaves out
    assert "moveline_visible" not in key_world(worlds[0], din)["world"]
    amen = din + ("aiseq", "moveline", "pairs")
    assert len({cache_key(key_world(w, amen), "amen", {}, 0) for w in worlds}) == 3
    flat = {"preset": "moveline", "moveline_visible": 0.5}  # a plain world table works the same way
    assert key_world(flat, din) == {"preset": "moveline"} and key_world(flat, amen) == flat


@pytest.mark.parametrize("field", sorted(__import__("simab.simulators.spec", fromlist=["x"]).LOG_ONLY_FIELDS))
def test_each_log_only_declaration_holds_on_the_training_batches(field, tmp_path):
    """The declaration behind the key rule: at two values of the field every feature group it
    does not name gives the same training and validation batches (so a model reading only
    those trains on the same data), and one it names does differ."""
    from simab.policies.features import FEATURE_GROUPS
    from simab.run.preperiod import pre_period, training_data
    from simab.simulators.spec import LOG_ONLY_FIELDS, world_spec
    from simab.simulators.world import World

    data = {}
    for v in (0.0, 1.0):
        world = World.build(world_spec({"preset": "moveline", "n_users": 40, "pre_period_days": 1.0, field: v}), seed=0)
        data[v] = training_data(world, pre_period(world, tmp_path / str(v)))
    shown = set(LOG_ONLY_FIELDS[field])
    # every other group (``tags``: this world has no topics, so none; ``oracle``: the true
    # click probability, a policy input only for the oracle, which has no weights)
    unread = tuple(g for g in FEATURE_GROUPS if g not in shown and g not in ("oracle", "tags"))
    for part in (0, 1):
        a, b = data[0.0][part], data[1.0][part]
        assert a.n_rows == b.n_rows > 100
        for x, y in zip(a.batches(64, groups=unread), b.batches(64, groups=unread), strict=True):
            assert x.keys() == y.keys()
            for k in x:
                assert torch.equal(x[k], y[k]), (field, k)
    x = next(data[0.0][0].batches(512, groups=tuple(shown)))
    y = next(data[1.0][0].batches(512, groups=tuple(shown)))
    assert any(not torch.equal(x[k], y[k]) for k in x if k in y)


def test_a_parameter_at_its_neutral_value_stays_out_of_the_key():
    """``KEY_NEUTRAL`` (LCN's ``target_lifelong``, added after LCN checkpoints existed): at
    False the key holds the parameters as they were before it, so the cache still finds those
    checkpoints; at True it is in the key."""
    from simab.policies.checkpoint import key_params
    from simab.policies.synthetic import synthetic_spec

    spec = synthetic_spec()
    off = build_policy("lcn", {"embedding_dim": 4}, spec, seed=0)
    on = build_policy("lcn", {"embedding_dim": 4, "target_lifelong": True}, dataclasses.replace(
        spec, provides=spec.provides + ("target_lifelong",)), seed=0)
    assert "target_lifelong" not in key_params(off)
    assert {**key_params(off), "target_lifelong": False} == off.params
    assert key_params(on)["target_lifelong"] is True
    assert cache_key({}, "lcn", key_params(off), 0) != cache_key({}, "lcn", key_params(on), 0)
