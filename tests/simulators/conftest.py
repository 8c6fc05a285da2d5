"""Shared, module-scoped pre-period logs of small worlds (a few seconds each)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from simab.cli.world import sample_pre_period
from simab.simulators.spec import world_spec
from simab.simulators.world import World


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")


@functools.cache
def logged_world(preset: str, users: int, days: float, overrides: str = "{}", seed: int = 0):
    """(world, sample log) for ``users`` users of ``preset`` over ``days`` days; cached so
    several tests share one simulation.  ``overrides`` is a JSON object (hashable)."""
    import json

    w = World.build(world_spec({"preset": preset, **json.loads(overrides)}), seed)
    return w, sample_pre_period(w, np.arange(users, dtype=np.int64), days)
