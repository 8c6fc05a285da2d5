"""``key=value`` overrides: one parser for ``--set`` (run, sweep, train) and ``--grid``."""

import pytest

from simab.batteries.sweep import parse_grid
from simab.errors import SimabError
from simab.overrides import nest, parse_overrides, parse_value, split_assignment


def test_values_are_toml_else_the_raw_string():
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value('["ctr", "cvr"]') == ["ctr", "cvr"]
    assert parse_value("relu") == "relu"
    assert parse_value('"quoted"') == "quoted"


def test_dotted_keys_nest_and_merge():
    assert nest({"world.n_users": 5, "seed": 1}) == {"world": {"n_users": 5}, "seed": 1}
    got = parse_overrides(["arms.treatment.share=0.4", "arms.treatment.policy=din", "seed=3"])
    assert got == {"arms": {"treatment": {"share": 0.4, "policy": "din"}}, "seed": 3}


@pytest.mark.parametrize("item", ["world.n_users", "=1", "a..b=1", ".a=1"])
def test_malformed_items_name_the_flag(item):
    with pytest.raises(SimabError, match="--set"):
        parse_overrides([item], source="--set")


def test_set_and_grid_read_a_value_the_same_way():
    """A grid with one value per key is the same override as ``--set``."""
    items = ["world.n_users=200", "arms.treatment.params.units=[8, 4]", "name=x"]
    grid = parse_grid(items)
    assert nest({k: v[0] for k, v in grid.items()}) == parse_overrides(items)
    assert split_assignment(" a.b = 1 ", source="--set") == ("a.b", "1")
