"""The campaign's [training] early-stopping rule: default dumps unchanged, set values reach the trainer."""

from __future__ import annotations

import pytest

import simab
from simab.errors import SimabError


def test_default_rule_leaves_the_spec_dump_unchanged():
    training = simab.load_campaign(None, overrides={"name": "x"}).model_dump()["training"]
    assert "monitor" not in training and "patience" not in training


def test_a_set_rule_is_dumped_and_validated():
    spec = simab.load_campaign(None, overrides={"name": "x", "training": {"monitor": "logloss", "patience": 3}})
    assert spec.model_dump()["training"]["monitor"] == "logloss"
    assert spec.model_dump()["training"]["patience"] == 3
    with pytest.raises(SimabError, match="monitor"):
        simab.load_campaign(None, overrides={"name": "x", "training": {"monitor": "accuracy"}})
