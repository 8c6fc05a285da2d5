import json
import math

import pytest

from simab.errors import SimabError
from simab.reports import analyze, ratio_comparison, summary_table, write_report
from simab.reports.run_data import read_run
from tests.reports.approx import assert_records_close

CONTRACT_COMPARISON = {
    "abs_lift",
    "abs_ci",
    "rel_lift",
    "rel_ci",
    "p_value",
    "p_value_adjusted",
    "true_rel_lift",
    "ci_covers_truth",
    "sequential",
}


def _no_nan(obj, path="$"):
    if isinstance(obj, float):
        assert math.isfinite(obj), path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _no_nan(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_nan(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def report(synthetic_run):
    return analyze(synthetic_run)


def test_contract_keys_and_no_nan(report):
    d = report.to_json_dict()
    assert {"schema", "campaign", "seed", "alpha", "arms", "srm", "metrics", "runtime"} <= set(d)
    assert d["schema"] == 1 and d["alpha"] == 0.05
    assert set(d["arms"]["control"]) >= {"users", "exposures", "clicks", "conversions"}
    assert set(d["srm"]) >= {"p_value", "ok"}
    assert set(d["metrics"]) == {
        "ctr",
        "ctcvr",
        "cvr",
        "stay_time",
        "exposures_per_user",
        "latency_p99_ms",
    }
    for m in d["metrics"].values():
        assert set(m["arms"]["treatment"]) >= {"value", "true_value"}
        assert CONTRACT_COMPARISON <= set(m["comparisons"]["treatment_vs_control"])
    seq = d["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]["sequential"]
    assert set(seq) >= {"p_value", "rel_ci"}
    _no_nan(d)
    json.dumps(d, allow_nan=False)


def test_report_uses_the_public_function_on_the_same_users(report, synthetic_run):
    import pyarrow.compute as pc

    from simab.reports.aggregation import user_totals

    run = read_run(synthetic_run)
    totals = user_totals(run.cells, assignments=run.assignments)
    arm = {a: totals.filter(pc.equal(totals["arm"], a)) for a in ("control", "treatment")}
    direct = ratio_comparison(
        arm["control"]["clicks"].to_numpy(),
        arm["control"]["exposures"].to_numpy(),
        arm["treatment"]["clicks"].to_numpy(),
        arm["treatment"]["exposures"].to_numpy(),
        small_sample="hc2",  # the report's small-sample corrections
        permute=True,
    )
    # two code paths (moments over every column vs over 2 columns): equal to rounding, field by
    # field; rel 1e-12 is ~1e4 ulps, far below any statistical difference
    assert_records_close(
        report.metrics["ctr"].comparisons["treatment_vs_control"].comparison, direct, rel=1e-12
    )


def test_truth_effect_found_and_covered(report):
    ctr = report.metrics["ctr"].comparisons["treatment_vs_control"]
    # 4,000 users: the permutation reference (999 re-randomisations), whose smallest p is 1/1000
    assert ctr.comparison.p_value == pytest.approx(1 / 1000) and ctr.ci_covers_truth is True
    assert ctr.comparison.abs_p_value < 1e-4
    assert ctr.true_rel_lift == pytest.approx(0.2, abs=0.06)
    assert ctr.p_value_adjusted >= ctr.comparison.p_value
    assert report.srm.ok
    assert ctr.sequential.ci[0] <= ctr.comparison.rel_ci[0]  # always-valid is wider
    assert abs(ctr.cross_check.rel_se_difference) < 1e-3
    assert ctr.cuped.variance_reduction > 0
    stay = report.metrics["stay_time"].comparisons["treatment_vs_control"]
    assert stay.cuped.variance_reduction > 0.1  # pre_dwell shares the user's z
    assert stay.true_rel_lift is None and stay.ci_covers_truth is None


def test_traffic_totals_match_the_log(report, synthetic_run):
    import pyarrow.dataset as ds

    exposures = ds.dataset(synthetic_run / "exposures").to_table(columns=["clicked"])
    assert sum(a.exposures for a in report.arms.values()) == exposures.num_rows
    assert sum(a.clicks for a in report.arms.values()) == sum(exposures["clicked"].to_pylist())
    assert set(report.metrics["ctr"].per_scenario) == {"home_feed", "search_results", "shop_page"}
    assert list(report.metrics["ctr"].per_day) == ["0", "1", "2", "3", "4"]


def test_write_report_and_summary(report, synthetic_run, tmp_path):
    paths = write_report(report, tmp_path)
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert json.loads(paths[0].read_text())["campaign"] == "synthetic"
    assert not list(tmp_path.glob(".*tmp"))
    table = summary_table(report)
    assert "treatment_vs_control" in table and "SRM" in table


def test_three_arms_an_empty_arm_and_bh(make_run):
    arms = {
        "control": {"share": 0.4, "ctr": 0.05, "cvr": 0.1, "latency": 20.0},
        "b": {"share": 0.6, "ctr": 0.05, "cvr": 0.1, "latency": 20.0},
        "empty": {"share": 0.0, "ctr": 0.05, "cvr": 0.1, "latency": 20.0},
    }
    r = analyze(make_run(users=600, arms=arms, truth=False, covariates=False), correction="bh")
    d = r.to_json_dict()
    _no_nan(d)
    assert d["arms"]["empty"]["users"] == 0
    empty = d["metrics"]["ctr"]["comparisons"]["empty_vs_control"]
    assert empty["rel_lift"] is None and any("no units" in f for f in empty["flags"])
    b = d["metrics"]["ctr"]["comparisons"]["b_vs_control"]
    assert b["p_value"] <= b["p_value_adjusted"] <= 1  # an adjustment never lowers a p-value
    assert empty["true_rel_lift"] is None and empty["ci_covers_truth"] is None


def test_zero_clicks_everywhere_gives_flags_not_nan(make_run):
    arms = {a: {"share": 0.5, "ctr": 1e-9, "cvr": 0.1, "latency": 20.0} for a in ("c", "t")}
    d = analyze(make_run(users=200, arms=arms)).to_json_dict()
    _no_nan(d)
    cvr = d["metrics"]["cvr"]["comparisons"]["t_vs_c"]
    assert cvr["abs_lift"] is None and cvr["flags"]


def test_bad_run_folder_is_a_user_error(tmp_path, synthetic_run):
    with pytest.raises(SimabError, match="not a run folder"):
        analyze(tmp_path)
    with pytest.raises(SimabError, match="does not exist"):
        analyze(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text(
        json.dumps({"campaign": "x", "seed": 1, "alpha": 0.05, "control": "z", "arms": {"a": {}}})
    )
    with pytest.raises(SimabError, match="control arm 'z'"):
        analyze(bad)


def test_html_is_self_contained_with_every_figure(report, tmp_path):
    html = write_report(report, tmp_path)[2].read_text()
    for alt in (
        "forest plot of relative lifts",
        "cumulative lift over days",
        "per-scenario breakdown",
        "daily metric per arm",
        "traffic and SRM",
    ):
        assert f'alt="{alt}" src="data:image/png;base64,' in html, alt
    assert "http://" not in html and "https://" not in html


def test_segments_count_every_assigned_user(report):
    # intent to treat: a user inactive on a day or in a scenario counts with zero there
    for m in ("ctr", "stay_time"):
        metric = report.metrics[m]
        for segments in (metric.per_day, metric.per_scenario):
            for by_key in segments.values():
                c = by_key["treatment_vs_control"].comparison
                assert c.n_control == report.arms["control"].users
                assert c.n_treatment == report.arms["treatment"].users
    stay = report.metrics["stay_time"]
    per_day = sum(s["treatment_vs_control"].values["treatment"] for s in stay.per_day.values())
    # ITT means over the same users add up over days to the whole campaign's mean
    assert per_day == pytest.approx(stay.arms["treatment"].value, rel=1e-9)
