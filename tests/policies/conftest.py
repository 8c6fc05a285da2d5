"""Fixtures for policy tests: one thread, a small synthetic world with known signals."""

from __future__ import annotations

import pytest
import torch

from simab.policies.synthetic import SyntheticWorld, synthetic_spec


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine's cores are shared: keep torch on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def spec():
    return synthetic_spec()


@pytest.fixture(scope="session")
def world(spec):
    return SyntheticWorld(spec, seed=0)


@pytest.fixture(scope="session")
def train_source(world):
    return world.source(40_000, seed=1)


@pytest.fixture(scope="session")
def val_source(world):
    return world.source(5_000, seed=2)


@pytest.fixture(scope="session")
def small_source(world):
    return world.source(600, seed=3)


#: Tiny but trainable dimensions shared by the model tests.
TINY = {"embedding_dim": 8, "mlp_units": [32, 16]}
