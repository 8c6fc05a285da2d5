"""SSIM's world dial (issue #30, docs/world.md "Dials"): ``shared_segment`` makes
shareability a property of the instance -- the users of a share of the (age, gender, city)
profile cells follow the data-starved scenario's specific label part in every scenario --
and ``specific_features`` builds that part from features a model sees."""

from __future__ import annotations

import numpy as np
import pytest

from simab.simulators.population import PROFILE_SIZES
from simab.simulators.spec import world_spec
from simab.simulators.world import World

SSIM_KEYS = {"preset": "sharing", "specific_share": 1.0, "specific_features": True, "specific_feature_sd": 1.5,
             "specific_feature_level": "category"}
N_CELLS = PROFILE_SIZES[0] * PROFILE_SIZES[1] * PROFILE_SIZES[2]


def _specific_part(w: World, users, items: np.ndarray, scenario: int) -> np.ndarray:
    """The scenario-specific part of the affinity: the affinity minus the shared part
    ``w_long <u, v>`` (no intent)."""
    o = w.oracle
    sc = np.full(len(items), scenario, np.int64)
    a = o.affinity(users.u, np.zeros_like(users.u), sc, items, users.profile)
    shared = o.w_long[scenario] * np.einsum("bd,bcd->bc", users.u, w.catalog.latent[items])
    return a - shared


def test_the_default_and_sharing_worlds_do_not_read_the_profile():
    for preset in ("default", "sharing"):
        o = World.build(world_spec(preset), 0).oracle
        assert not o.needs_profile and not o.segment_cells.any() and o.feature_tables is None


@pytest.mark.parametrize("share", [0.0, 0.27, 0.8])
def test_segment_users_follow_the_segment_scenario_everywhere(share):
    """Segment users' specific part is the segment scenario's (s3, the least traffic) in
    every scenario; the other users' is their scenario's own (tables drawn independently
    per scenario: they differ).  The segment is round(share x 48) profile cells."""
    w = World.build(world_spec({**SSIM_KEYS, "shared_segment": share}), 0)
    o = w.oracle
    assert o.segment_scenario == 2
    assert o.segment_cells.sum() == round(share * N_CELLS)
    users = w.population.users(np.arange(600))
    items = (np.arange(600 * 6).reshape(600, 6) * 7) % w.catalog.n_shop_items
    seg = o.in_segment(users.profile)
    assert seg.mean() == pytest.approx(share, abs=0.1)  # cells of unequal size: a loose check
    parts = [_specific_part(w, users, items, s) for s in range(3)]
    # float tolerance: the shared part is subtracted after the einsum (rounding ~1e-15)
    for s in (0, 1):
        np.testing.assert_allclose(parts[s][seg], parts[2][seg], atol=1e-9)
        if (~seg).any():
            assert np.abs(parts[s][~seg] - parts[2][~seg]).mean() > 0.3  # independent tables, sd 1.2 each


def test_category_level_tables_differ_within_a_parent():
    """``specific_feature_level = "category"``: two categories of one parent get their own
    columns; at "parent" they share one (the tables' draws are otherwise the same stream)."""
    cat = World.build(world_spec({**SSIM_KEYS}), 0).oracle
    par = World.build(world_spec({**SSIM_KEYS, "specific_feature_level": "parent"}), 0).oracle
    catalog = World.build(world_spec({**SSIM_KEYS}), 0).catalog
    K = catalog.n_categories
    assert cat.feature_tables[0].shape[2] == K and par.feature_tables[0].shape[2] == catalog.parent_of.max() + 1
    np.testing.assert_array_equal(cat.feature_key, catalog.category)
    np.testing.assert_array_equal(par.feature_key, catalog.parent_of[catalog.category])
    # the children of parent 0: identical columns at parent level, different at category level
    kids = np.flatnonzero(catalog.parent_of == 0)
    assert len(kids) >= 2
    assert not np.allclose(cat.feature_tables[0][:, :, kids[0]], cat.feature_tables[0][:, :, kids[1]])
