"""The feature contract: standalone (no torch), and the layer widths models size from."""

import subprocess
import sys

from simab.policies.features import FeatureSpec
from simab.policies.world_features import feature_spec_of
from simab.simulators.population import PROFILE_SIZES
from simab.simulators.spec import world_spec

SPEC = FeatureSpec(n_users=11, n_items=21, n_categories=6, n_shops=4, n_price_buckets=6, n_scenarios=2,
                   n_scene_types=8, n_gap_buckets=6, n_actions=3, profile_sizes=(3, 4, 5),
                   scenario_names=("a", "b"))


def test_field_counts_and_widths():
    # 3 profile fields + scenario + the target's id/category/shop/price (+ item ⊕ category of the short sequence)
    assert SPEC.n_profile_fields == 3
    assert SPEC.n_fields() == 3 + 1 + 4
    assert SPEC.n_fields(short_seq=True) == 3 + 1 + 4 + 2
    assert SPEC.n_fields(scenario=False) == 3 + 4
    assert SPEC.n_fields(target=False) == 3 + 1
    d = 16
    assert SPEC.input_width(d) == 8 * d + 1  # + the popularity prior
    assert SPEC.input_width(d, scenario=False, short_seq=True) == 9 * d + 1
    assert SPEC.input_width(d, item_pop=False) == 8 * d


def test_widths_are_not_stored_in_checkpoints():
    assert FeatureSpec.from_dict(SPEC.to_dict()) == SPEC
    assert "n_profile_fields" not in SPEC.to_dict()


def test_a_world_spec_gives_its_vocabularies():
    ws = world_spec({"preset": "default", "n_users": 30})
    fs = feature_spec_of(ws)
    assert fs.n_users == 31 and fs.n_items == ws.n_shop_items + ws.n_content_items + 1
    assert fs.n_profile_fields == len(PROFILE_SIZES)
    assert fs.scenario_names == ws.scenario_names


def test_the_contract_imports_no_torch():
    code = "import sys, simab.policies.features; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
