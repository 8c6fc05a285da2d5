"""Counterfactual truth (the default): the population lift of the campaign's users, computed
with shared per-shard passes that reuse each user's own-arm trajectory; checked against the
full counterfactual worlds (every user forced into each arm, simulated from scratch)."""

import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from simab.run.arm_policies import build_policy
from simab.run.plan import plan_shard
from simab.run.runner import run_campaign
from simab.run.truth import N_SUMS, truth_rows, world_sums
from simab.simulators.world import World
from simab.spec import load_campaign

from ..conftest import tiny


def full_worlds(spec, policies) -> dict[str, np.ndarray]:
    """Each arm's truth sums from its whole counterfactual world, every user forced into it."""
    world = World.build(spec.world, spec.seed)
    arms = list(spec.arms)
    out = {}
    for arm in arms:
        sums = np.zeros(N_SUMS)
        for shard in range(spec.shards):
            plan, _ = plan_shard(spec, shard, force_arm=arm)  # every user of the shard, in this arm
            sums += world_sums(spec, world, plan, {a: build_policy(policies[a], world) for a in arms})[arms.index(arm)]
        out[arm] = sums
    return out


def truth_table(run_dir, source):
    t = pq.read_table(run_dir / "truth.parquet")
    t = t.filter(pc.equal(t["source"], source))
    return {(r["arm"], r["metric"]): r["value"] for r in t.to_pylist()}


CASES = {
    "ab": {},
    "ramp": {"arms": {"control": {"policy": "popularity", "share": 0.5},
                      "treatment": {"policy": "oracle", "share": 0.1}},
             "ramps": [{"at_day": 0.25, "shares": {"treatment": 0.5}}]},
    "holdout": {"arms": {"control": {"policy": "popularity", "share": 0.3},
                         "treatment": {"policy": "oracle", "share": 0.3}}},
    "session": {"unit": "session"},
    "aa": {"arms": {"control": {"policy": "popularity", "share": 0.5},
                    "treatment": {"policy": "popularity", "share": 0.5}}},
}


@pytest.mark.parametrize("case", [c if c in ("ab", "ramp") else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_counterfactual_truth_equals_the_full_worlds(tmp_path, case):
    over = tiny(tmp_path, **({"arms": {"control": {"policy": "popularity", "share": 0.5},
                                       "treatment": {"policy": "oracle", "share": 0.5}}} | CASES[case]))
    spec = load_campaign(overrides=over)
    assert spec.truth == "counterfactual"  # the default
    res = run_campaign(spec, out=tmp_path / "run", report=False)
    from simab.run.arm_policies import prepare_policies
    from simab.run.folder import cache_dir

    world = World.build(spec.world, spec.seed)
    specs = prepare_policies(spec, world, tmp_path / "p", 1, cache_dir(spec.training.cache_dir))
    expected = {}
    for row in truth_rows(full_worlds(spec, specs), "counterfactual"):
        expected[(row["arm"], row["metric"])] = row["value"]
    got = truth_table(res.run_dir, "counterfactual")
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        # the same exposures summed in another order (reused campaign parts + the rest): rounding only
        assert got[key] == pytest.approx(value, rel=1e-12), key
    if case == "aa":  # one world for both arms: the true lift is exactly zero
        assert got[("control", "ctr")] == got[("treatment", "ctr")]


def test_report_names_its_truth_and_never_covers_with_a_realised_group(tmp_path):
    over = tiny(tmp_path, truth="oracle", arms={"control": {"policy": "popularity", "share": 0.5},
                                                 "treatment": {"policy": "oracle", "share": 0.5}})
    res = run_campaign(load_campaign(overrides=over), out=tmp_path / "oracle")
    rep = json.loads((res.run_dir / "report.json").read_text())
    assert rep["truth"]["kind"] == "realised-group"
    ctr = rep["metrics"]["ctr"]
    c = ctr["comparisons"]["treatment_vs_control"]
    assert c["true_rel_lift"] is None and c["ci_covers_truth"] is None
    assert c["realised_group_rel_lift"] is not None
    assert ctr["arms"]["control"]["true_value"] is None and ctr["arms"]["control"]["realised_group_value"] > 0
    md = (res.run_dir / "report.md").read_text()
    assert "no counterfactual truth" in md

    res = run_campaign(load_campaign(overrides={**over, "truth": "counterfactual"}), out=tmp_path / "cf")
    rep = json.loads((res.run_dir / "report.json").read_text())
    assert rep["truth"]["kind"] == "counterfactual" and "all of the campaign's users" in rep["truth"]["definition"]
    c = rep["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]
    assert c["true_rel_lift"] is not None and c["ci_covers_truth"] is not None
    assert "*True lift* is the lift over all of the campaign's users" in (res.run_dir / "report.md").read_text()
    assert "the lift over all of the campaign" in (res.run_dir / "report.html").read_text()
