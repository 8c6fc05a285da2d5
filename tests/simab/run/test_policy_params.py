"""Every bad policy parameter in a campaign spec is caught when the spec is validated:
`simab run` prints one line `error: <file>: arms.<arm>.params.<key>: ...` and exits 2."""


import pytest

from simab.cli.main import main
from simab.policies.base import make_policy
from simab.policies.world_features import feature_spec_of
from simab.simulators.spec import world_spec

from ..conftest import campaign_toml

# (policy, params, key named in the error, words of the allowed values)
CASES = {
    "choice_activation": ("dnn", 'activation = "swish"', "activation", "one of ['relu'"),
    "choice_of_a_seed_model": ("lcn", 'crp_features = "colour"', "crp_features", "one of ['item', 'item_cat']"),
    "choice_backbone": ("ssim", 'backbone = "din"', "backbone", "one of ['dnn'"),
    "closed_range_above": ("oracle", "blend = 1.5", "blend", "<= 1"),
    "closed_range_below": ("logging", "epsilon = -0.1", "epsilon", ">= 0"),
    "half_open_range": ("dnn", "dropout = 1.0", "dropout", "< 1"),
    "open_lower_bound": ("lcn", "crp_temperature = 0.0", "crp_temperature", "> 0"),
    "count_below_one": ("hmoe", "n_experts = 0", "n_experts", ">= 1"),
    "layer_sizes_non_positive": ("dnn", "mlp_units = [64, 0]", "mlp_units", "a list of integers >= 1"),
    "layer_sizes_too_short": ("din", "attention_units = []", "attention_units", "at least 1 integers >= 1"),
    "layer_sizes_not_integers": ("star", 'aux_units = ["wide"]', "aux_units", "a list of integers >= 1"),
    "heads_do_not_divide": ("sim", "n_heads = 3", "n_heads", "must divide 2 * embedding_dim = 32"),
    "wrong_type": ("dnn", 'embedding_dim = "big"', "embedding_dim", "must be int"),
    "table_expected": ("ssim", "backbone_params = 3", "backbone_params", "must be dict"),
    "nested_table": ("ssim", 'backbone_params = { structure = "diagonal" }, backbone = "dcn"',
                     "backbone_params.structure", "one of ['parallel', 'stacked']"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_policy_parameter_is_one_line_naming_the_key(case, tmp_path, capsys):
    policy, params, key, needle = CASES[case]
    path = tmp_path / "c.toml"
    path.write_text(campaign_toml(treatment=policy, params=params))
    out_dir = tmp_path / "run"
    code = main(["run", str(path), "--out", str(out_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}: arms.treatment.params.{key}: "), err[0]
    assert needle in err[0], err[0]
    assert not out_dir.exists() or not (out_dir / "run.json").exists()


@pytest.mark.parametrize("policy", ["dnn", "deepfm", "dcn", "din", "sim", "star", "hmoe", "amen", "lcn", "ssim",
                                    "random", "popularity", "oracle", "logging"])
def test_defaults_satisfy_their_own_rules(policy):
    """A policy built with no parameters passes its rules (the rules do not reject the defaults)."""
    fs = feature_spec_of(world_spec({"preset": "default"}))
    assert make_policy(policy, {}, fs).name == policy
