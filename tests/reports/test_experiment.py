"""``simab analyze`` on tables made here: each number against an independent route (scipy's
Welch test on the raw values, a by-hand CUPED, per-unit sums done with numpy), the input forms
against each other, and the data checks on planted faults."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from scipy import stats

import simab
from simab.errors import SimabError
from simab.reports.comparison import ratio_comparison
from simab.reports.experiment import analyze_summary, analyze_table, summary_moments
from simab.reports.render_experiment import render_experiment_html, render_experiment_markdown

# two float paths (bincount sums vs scipy's own) agree to rounding: 1e-9 relative leaves
# room for 1e5-row sums and the t distribution's tail evaluations
REL = 1e-9


def _units(n=4000, seed=0, lift=0.1):
    rng = np.random.default_rng(seed)
    arm = rng.choice(["control", "treatment"], size=n)
    pre = rng.gamma(2.0, 1.0, size=n)
    y = pre * 0.8 + rng.normal(0, 1, size=n) + lift * (arm == "treatment")
    clicks = rng.poisson(2 + (arm == "treatment"), size=n)
    views = clicks + rng.poisson(5, size=n) + 1
    buy = rng.random(n) < np.where(arm == "treatment", 0.12, 0.10)
    return pa.table({"arm": arm, "y": y, "pre": pre, "clicks": clicks, "views": views, "buy": buy,
                     "uid": np.arange(n), "day": rng.integers(0, 5, size=n)})


def _cmp(report, metric, key="treatment_vs_control"):
    return report.metrics[metric].comparisons[key]


def test_mean_metric_is_welch_t_on_the_raw_values():
    t = _units()
    rep = analyze_table(t, arm="arm", control="control", metrics={"y": "y", "buy": "buy"})
    arm = np.array(t["arm"].to_pylist())
    for metric, col in (("y", "y"), ("buy", "buy")):
        x = t[col].to_numpy(zero_copy_only=False).astype(float)
        res = stats.ttest_ind(x[arm == "treatment"], x[arm == "control"], equal_var=False)
        c = _cmp(rep, metric).comparison
        assert c.p_value == pytest.approx(res.pvalue, rel=REL)
        lo, hi = res.confidence_interval(0.95)
        assert c.abs_ci[0] == pytest.approx(lo, rel=REL) and c.abs_ci[1] == pytest.approx(hi, rel=REL)
        assert rep.metrics[metric].arms["control"].value == pytest.approx(x[arm == "control"].mean(), rel=1e-12)


def test_ratio_metric_equals_ratio_comparison_on_unit_sums():
    t = _units()
    rep = analyze_table(t, arm="arm", control="control", metrics=["ctr=clicks/views"])
    arm = np.array(t["arm"].to_pylist())
    c_, v_ = (t[c].to_numpy().astype(float) for c in ("clicks", "views"))
    ref = ratio_comparison(c_[arm == "control"], v_[arm == "control"], c_[arm == "treatment"],
                           v_[arm == "treatment"])
    got = _cmp(rep, "ctr").comparison
    for field in ("abs_lift", "rel_lift", "p_value", "rel_se"):
        assert getattr(got, field) == pytest.approx(getattr(ref, field), rel=REL)


def test_events_summed_per_unit_equal_the_unit_table():
    """Split each unit's counts over several event rows: the analysis by --unit --events
    equals the one-row-per-unit analysis."""
    t = _units(n=1500)
    rng = np.random.default_rng(5)
    rows = {k: [] for k in ("arm", "uid", "clicks", "views")}
    for a, u, c, v in zip(*(t[k].to_pylist() for k in ("arm", "uid", "clicks", "views")), strict=True):
        k = int(rng.integers(1, 4))
        cs = np.bincount(rng.integers(0, k, size=c), minlength=k)
        vs = np.bincount(rng.integers(0, k, size=v), minlength=k)
        for i in range(k):
            rows["arm"].append(a)
            rows["uid"].append(u)
            rows["clicks"].append(int(cs[i]))
            rows["views"].append(int(vs[i]))
    events = pa.table(rows)
    whole = analyze_table(t, arm="arm", control="control", metrics=["ctr=clicks/views", "clicks"])
    split = analyze_table(events, arm="arm", control="control", unit="uid", events=True,
                          metrics=["ctr=clicks/views", "clicks"])
    for m in ("ctr", "clicks"):
        a, b = _cmp(whole, m).comparison, _cmp(split, m).comparison
        assert (a.n_control, a.n_treatment) == (b.n_control, b.n_treatment)
        for field in ("abs_lift", "rel_lift", "p_value"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=REL)
    check = {c.check: c for c in split.data_checks}
    assert check["duplicated_units"].ok is True and "--events" in check["duplicated_units"].detail


def test_table_dataframe_and_csv_give_the_same_report(tmp_path):
    t = _units(n=800)
    csv_table = t.set_column(t.column_names.index("buy"), "buy",
                             pa.array(["TRUE" if b else "FALSE" for b in t["buy"].to_pylist()]))
    path = tmp_path / "units.csv"
    pacsv.write_csv(csv_table, path)
    kw = dict(arm="arm", control="control", metrics={"y": "y", "buy": "buy", "ctr": "clicks/views"})
    reports = [analyze_table(x, **kw) for x in (t, t.to_pandas(), str(path))]
    # 0/1 integers name the same booleans
    ints = t.set_column(t.column_names.index("buy"), "buy", pa.array(np.array(t["buy"].to_pylist(), int)))
    reports.append(analyze_table(ints, **kw))
    first = reports[0].to_json_dict()["metrics"]
    for r in reports[1:]:
        for m in first:
            for key, c in first[m]["comparisons"].items():
                other = r.to_json_dict()["metrics"][m]["comparisons"][key]
                # CSV round-trips floats through text: 1e-12 relative
                assert other["p_value"] == pytest.approx(c["p_value"], rel=1e-9)
                assert other["rel_lift"] == pytest.approx(c["rel_lift"], rel=1e-9)


def test_cuped_with_a_unit_covariate_matches_a_by_hand_fit():
    """θ pooled within arms (Deng et al. 2013); the adjusted lift and its variance reduction
    computed here with numpy; y depends on pre, so the reduction must be large."""
    t = _units(n=5000, lift=0.2)
    rep = analyze_table(t, arm="arm", control="control", metrics={"y": "y"}, covariates={"y": "pre"})
    cup = _cmp(rep, "y").cuped
    arm = np.array(t["arm"].to_pylist())
    y, x = t["y"].to_numpy(), t["pre"].to_numpy()
    groups = [arm == "control", arm == "treatment"]
    num = sum(g.sum() * np.cov(y[g], x[g])[0, 1] for g in groups)
    den = sum(g.sum() * np.var(x[g], ddof=1) for g in groups)
    theta = num / den
    adj = [y[g].mean() - theta * (x[g].mean() - x.mean()) for g in groups]
    assert cup.theta == pytest.approx(theta, rel=1e-9)
    assert cup.comparison.abs_lift == pytest.approx(adj[1] - adj[0], rel=1e-9)
    rho2 = np.corrcoef(y, x)[0, 1] ** 2
    assert cup.variance_reduction == pytest.approx(rho2, abs=0.02)  # within-arm vs pooled corr
    assert cup.variance_reduction > 0.3


def test_summary_statistics_equal_the_unit_analysis_and_looks_feed_the_sequential_test():
    """Count / mean / variance per arm and cumulative look, from the same units, give the
    same comparison and the same always-valid p as the unit table with a time column."""
    t = _units(n=3000)
    unit_rep = analyze_table(t, arm="arm", control="control", metrics={"y": "y"}, time="day")
    arm, y, day = np.array(t["arm"].to_pylist()), t["y"].to_numpy(), t["day"].to_numpy()
    rows = {"arm": [], "look": [], "count": [], "mean": [], "variance": []}
    for d in range(5):
        for a in ("control", "treatment"):
            v = y[(arm == a) & (day <= d)]
            for k, val in zip(rows, (a, d, v.size, v.mean(), v.var(ddof=1)), strict=True):
                rows[k].append(val)
    long = pa.table(rows)
    summ = analyze_summary(long, control="control", look="look", metric_name="y")
    a, b = _cmp(unit_rep, "y"), _cmp(summ, "y")
    assert b.comparison.p_value == pytest.approx(a.comparison.p_value, rel=REL)
    assert b.comparison.rel_ci[0] == pytest.approx(a.comparison.rel_ci[0], rel=REL)
    assert b.sequential.p_value == pytest.approx(a.sequential.p_value, rel=1e-8)
    assert len(b.sequential.looks) == len(a.sequential.looks) == 5
    # the wide layout (ASOS's count_c, count_t, ...) is the same table
    c, tr = long.filter(pa.compute.equal(long["arm"], "control")), long.filter(
        pa.compute.equal(long["arm"], "treatment"))
    wide = pa.table({"look": c["look"], **{f"{s}_c": c[s] for s in ("count", "mean", "variance")},
                     **{f"{s}_t": tr[s] for s in ("count", "mean", "variance")}})
    w = analyze_summary(wide, control="c", wide=["c", "t"], look="look", metric_name="y")
    assert _cmp(w, "y", "t_vs_c").comparison.p_value == pytest.approx(b.comparison.p_value, rel=1e-12)


def test_summary_moments_match_scipy_from_stats():
    m_c, m_t = summary_moments(200, 1.0, 4.0), summary_moments(180, 1.4, 5.0)
    rep = analyze_summary(pa.table({"arm": ["a", "b"], "count": [200, 180], "mean": [1.0, 1.4],
                                    "variance": [4.0, 5.0]}), control="a")
    ref = stats.ttest_ind_from_stats(1.4, 5.0**0.5, 180, 1.0, 4.0**0.5, 200, equal_var=False)
    assert _cmp(rep, "metric", "b_vs_a").comparison.p_value == pytest.approx(ref.pvalue, rel=REL)
    assert m_c.var("x") == pytest.approx(4.0) and m_t.n == 180


def _planted():
    """Units 0-99 clean; unit 100 in both arms; unit 101 twice in one arm; a missing value,
    a non-numeric value and an unknown arm value on units 102-104."""
    arm = ["c", "t"] * 50 + ["c", "t", "t", "t", "c", "t", None]
    uid = list(range(100)) + [100, 100, 101, 101, 102, 103, 104]
    y = [str(float(i % 7)) for i in range(100)] + ["1", "0", "1", "1", "", "abc", "1"]
    return pa.table({"arm": arm, "uid": uid, "y": y})


def test_data_checks_find_planted_faults_and_drop_invalid_counts_them():
    t = _planted()
    rep = analyze_table(t, arm="arm", control="c", metrics={"y": "y"}, unit="uid")
    checks = {c.check: c for c in rep.data_checks}
    assert [c.check for c in rep.data_checks] == ["arm_values", "missing_values", "non_numeric_values",
                                                  "units_in_several_arms", "duplicated_units",
                                                  "sample_ratio"]
    assert not checks["arm_values"].ok and checks["arm_values"].rows == 1
    assert not checks["missing_values"].ok and checks["missing_values"].rows == 1
    assert not checks["non_numeric_values"].ok and "'abc'" in checks["non_numeric_values"].detail
    assert not checks["units_in_several_arms"].ok and checks["units_in_several_arms"].units == 1
    assert not checks["duplicated_units"].ok and checks["duplicated_units"].units == 2
    # without --drop-invalid: unusable rows left out; unit 100 counts in both arms
    assert rep.data["left_out"] == {"rows": 3, "units": 3}
    assert rep.arms["c"].users == 51 and rep.arms["t"].users == 52
    dropped = analyze_table(t, arm="arm", control="c", metrics={"y": "y"}, unit="uid", drop_invalid=True)
    assert dropped.data["left_out"] == {"rows": 7, "units": 5}
    assert dropped.arms["c"].users == 50 and dropped.arms["t"].users == 50


def test_srm_against_stated_shares():
    t = _units(n=4000)
    ok = analyze_table(t, arm="arm", control="control", metrics={"y": "y"})
    assert {c.check: c for c in ok.data_checks}["sample_ratio"].ok
    skewed = analyze_table(t, arm="arm", control="control", metrics={"y": "y"},
                           shares={"control": 0.3, "treatment": 0.7})
    srm = {c.check: c for c in skewed.data_checks}["sample_ratio"]
    assert srm.ok is False and "stated shares" in srm.detail
    assert skewed.to_json_dict()["srm"]["ok"] is False


def test_report_json_is_the_campaign_contract_without_truth(tmp_path):
    t = _units(n=1000)
    rep = simab.analyze(t, arm="arm", control="control", metrics={"y": "y", "ctr": "clicks/views"},
                        time="day", out=tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["truth"]["kind"] == "none"
    assert isinstance(data["data_checks"], list) and set(data["data_checks"][0]) >= {"check", "ok", "detail"}
    for m in ("y", "ctr"):
        assert set(data["metrics"][m]["arms"]) == {"control", "treatment"}
        assert data["metrics"][m]["arms"]["treatment"]["value"] == pytest.approx(
            rep.metrics[m].arms["treatment"].value)
        c = data["metrics"][m]["comparisons"]["treatment_vs_control"]
        for key in ("p_value", "p_value_adjusted", "rel_lift", "rel_ci", "abs_lift", "abs_ci"):
            assert c[key] is not None
        assert c["true_rel_lift"] is None and c["ci_covers_truth"] is None
        assert len(c["sequential"]["looks"]) == 5
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Data checks") < md.index("## Lifts") and "| true lift" not in md
    html = (tmp_path / "report.html").read_text()
    assert html.index("Data checks") < html.index("<h2>Lifts")
    # simab check reads it like a campaign's report
    from simab.reports.expectations import check_run

    ok, lines = check_run(tmp_path, ["y.treatment_vs_control.p_value >= 0"])
    assert ok, lines


def test_render_marks_failed_checks():
    rep = analyze_table(_planted(), arm="arm", control="c", metrics={"y": "y"}, unit="uid")
    md = render_experiment_markdown(rep)
    assert "| units_in_several_arms | FAILED |" in md
    assert "class=sig" in render_experiment_html(rep)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(metrics={"y": "nope"}), "no column 'nope'"),
    (dict(metrics={"y": "y"}, control="x"), "unknown control value 'x'"),
    (dict(metrics={"y": "arm"}), "not numeric"),
    (dict(metrics={"y": "y"}, arm="missing"), "no column 'missing'"),
    (dict(metrics={"y": "y"}, alpha=1.5), "must be in (0, 1)"),
    (dict(metrics="y=a/"), "expected NAME=COLUMN"),
])
def test_bad_input_is_one_simab_error(kwargs, needle):
    t = _units(n=50)
    args = dict(arm="arm", control="control") | kwargs
    with pytest.raises(SimabError) as err:
        analyze_table(t, **args)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_one_arm_is_refused():
    t = _units(n=50).filter(pa.compute.equal(_units(n=50)["arm"], "control"))
    with pytest.raises(SimabError, match="only one arm"):
        analyze_table(t, arm="arm", control="control", metrics={"y": "y"})
