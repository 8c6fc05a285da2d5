"""``simab analyze`` on the four shared real experiments, against the numbers published for
them and against independent routes computed here from the raw rows (scipy's Welch test,
statsmodels' two-proportion z-test, pyarrow filters) and tea-tasting on the same tables.

The data sets live in ``../shared/data`` beside the repository (README there: sources and
licences); without them these tests skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from simab.reports.experiment import analyze_summary, analyze_table

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(
    not (DATA / "hillstrom.parquet").exists(),
    reason=f"the shared real-experiment data sets are not at {DATA}",
)
# our p-value and scipy's are the same Welch test by two float paths: 1e-8 relative
WELCH = 1e-8
# published rates are printed to 3 or 4 significant digits: half a unit of the last digit
HALF_PERMILLE = 0.0005


def _read(name: str) -> pa.Table:
    return pq.read_table(DATA / f"{name}.parquet")


def _welch(x: np.ndarray, arms: np.ndarray, control: str, treatment: str):
    return stats.ttest_ind(x[arms == treatment], x[arms == control], equal_var=False)


@pytest.fixture(scope="module")
def cookie():
    t = _read("cookie_cats")
    return t, analyze_table(t, arm="version", control="gate_30", unit="userid",
                            metrics=["retention_1", "retention_7"])


@pytest.mark.parametrize("metric, published", [
    # "Mobile Games A/B Testing with Cookie Cats": retention by gate, printed in percent
    ("retention_1", {"gate_30": 0.4482, "gate_40": 0.4423}),
    ("retention_7", {"gate_30": 0.1902, "gate_40": 0.1820}),
])
def test_cookie_cats_rates_and_tests(cookie, metric, published):
    t, rep = cookie
    m = rep.metrics[metric]
    arms = np.array(t["version"].to_pylist())
    x = np.array(t[metric].to_pylist(), dtype=float)
    for arm, rate in published.items():
        assert m.arms[arm].value == pytest.approx(rate, abs=0.00005)  # 4 decimals printed
        assert m.arms[arm].value == pytest.approx(x[arms == arm].mean(), rel=1e-12)
    c = m.comparisons["gate_40_vs_gate_30"].comparison
    assert c.p_value == pytest.approx(_welch(x, arms, "gate_30", "gate_40").pvalue, rel=WELCH)
    z_p = proportions_ztest([x[arms == "gate_40"].sum(), x[arms == "gate_30"].sum()],
                            [(arms == "gate_40").sum(), (arms == "gate_30").sum()])[1]
    # the z-test pools the variance, Welch does not: at 45,000 per arm and rates 2 points apart
    # the two p-values differ by well under 1 %
    assert c.p_value == pytest.approx(z_p, rel=0.01)
    checks = {k.check: k for k in rep.data_checks}
    assert all(checks[k].ok for k in ("units_in_several_arms", "duplicated_units", "missing_values"))
    # 44,700 vs 45,489 players: chi-square against equal shares, by scipy
    srm_p = stats.chisquare([44_700, 45_489]).pvalue
    assert rep.srm.p_value == pytest.approx(srm_p, rel=1e-12) and rep.srm.ok  # p 0.0086 > 0.001


def test_retention_7_is_significant_and_retention_1_is_not(cookie):
    """The published reading: the gate at level 40 lowers 7-day retention; the 1-day drop
    is not significant at 5 %."""
    _, rep = cookie
    assert rep.metrics["retention_7"].comparisons["gate_40_vs_gate_30"].p_value_adjusted < 0.05
    assert rep.metrics["retention_1"].comparisons["gate_40_vs_gate_30"].comparison.p_value > 0.05


def test_hillstrom_visit_rates_and_every_comparison():
    t = _read("hillstrom")
    rep = analyze_table(t, arm="segment", control="No E-Mail", metrics=["visit", "conversion", "spend"])
    # Hillstrom (2008), MineThatData challenge: visit rates 10.6% / 18.3% / 15.1%
    published = {"No E-Mail": 0.106, "Mens E-Mail": 0.183, "Womens E-Mail": 0.151}
    for arm, rate in published.items():
        assert rep.metrics["visit"].arms[arm].value == pytest.approx(rate, abs=HALF_PERMILLE)
    arms = np.array(t["segment"].to_pylist())
    assert {c.check: c.ok for c in rep.data_checks}["sample_ratio"]
    for metric in ("visit", "conversion", "spend"):
        x = t[metric].to_numpy().astype(float)
        for treat in ("Mens E-Mail", "Womens E-Mail"):
            c = rep.metrics[metric].comparisons[f"{treat}_vs_No E-Mail"].comparison
            res = _welch(x, arms, "No E-Mail", treat)
            assert c.p_value == pytest.approx(res.pvalue, rel=WELCH)
            lo, hi = res.confidence_interval(0.95)
            assert c.abs_ci[0] == pytest.approx(lo, rel=1e-8) and c.abs_ci[1] == pytest.approx(hi, rel=1e-8)
            assert c.rel_lift == pytest.approx(x[arms == treat].mean() / x[arms == "No E-Mail"].mean() - 1,
                                               rel=1e-10)


def _published_cleaning(t: pa.Table) -> pa.Table:
    aligned = pc.equal(pc.equal(t["group"], "treatment"), pc.equal(t["landing_page"], "new_page"))
    t = t.filter(aligned)
    _, first = np.unique(t["user_id"].to_numpy(), return_index=True)
    return t.take(pa.array(np.sort(first)))


@pytest.fixture(scope="module")
def udacity():
    return _read("udacity_ab_data")


def test_udacity_two_arm_and_duplicated_users_are_caught(udacity):
    t = udacity
    rep = analyze_table(t, arm="group", control="control", metrics=["converted"], unit="user_id")
    checks = {c.check: c for c in rep.data_checks}
    users = t["user_id"].to_numpy()
    groups = np.array(t["group"].to_pylist())
    # independent count: users whose rows carry both group values
    in_control = np.unique(users[groups == "control"])
    in_treatment = np.unique(users[groups == "treatment"])
    both = np.intersect1d(in_control, in_treatment).size
    values, counts = np.unique(users, return_counts=True)
    assert both > 0 and checks["units_in_several_arms"].ok is False
    assert checks["units_in_several_arms"].units == both
    assert checks["duplicated_units"].ok is False and checks["duplicated_units"].units == int((counts > 1).sum())
    # --drop-invalid: every user with more than one row goes (here that covers the two-arm users)
    dropped = analyze_table(t, arm="group", control="control", metrics=["converted"], unit="user_id",
                            drop_invalid=True)
    keep = np.isin(users, values[counts == 1])
    assert dropped.data["left_out"] == {"rows": int((~keep).sum()), "units": int((counts > 1).sum())}
    x = t["converted"].to_numpy().astype(float)[keep]
    res = _welch(x, groups[keep], "control", "treatment")
    assert dropped.metrics["converted"].comparisons["treatment_vs_control"].comparison.p_value == \
        pytest.approx(res.pvalue, rel=WELCH)


def test_udacity_published_cleaning_reproduces_the_course(udacity):
    clean = _published_cleaning(udacity)
    assert clean.num_rows == 290_584  # the course's count after cleaning
    rep = analyze_table(clean, arm="group", control="control", metrics=["converted"], unit="user_id")
    m = rep.metrics["converted"]
    # the course: 12.04% control, 11.88% treatment; two-sided z-test p 0.19
    assert m.arms["control"].value == pytest.approx(0.1204, abs=0.00005)
    assert m.arms["treatment"].value == pytest.approx(0.1188, abs=0.00005)
    x = clean["converted"].to_numpy().astype(float)
    g = np.array(clean["group"].to_pylist())
    z_p = proportions_ztest([x[g == "treatment"].sum(), x[g == "control"].sum()],
                            [(g == "treatment").sum(), (g == "control").sum()])[1]
    assert z_p == pytest.approx(0.19, abs=0.005)
    c = m.comparisons["treatment_vs_control"].comparison
    assert c.p_value == pytest.approx(z_p, rel=0.001)  # pooled vs Welch variance, 145k per arm
    assert all(k.ok for k in rep.data_checks)


def test_asos_summary_statistics_against_scipy_from_stats():
    """Every experiment pair's last look of metric 1: the summary mode's p equals scipy's Welch
    test from the same count / mean / variance."""
    t = _read("asos_experiments")
    pairs = sorted({(r["experiment_id"], r["variant_id"]) for r in
                    t.select(["experiment_id", "variant_id"]).to_pylist()})[:12]
    for exp_id, variant in pairs:
        rows = t.filter(pc.and_(pc.equal(t["experiment_id"], exp_id), pc.equal(t["variant_id"], variant)))
        rows = rows.filter(pc.equal(rows["metric_id"], 1)).sort_by("time_since_start")
        last = rows.slice(rows.num_rows - 1).to_pylist()[0]
        rep = analyze_summary(rows, control="c", wide=["c", "t"], look="time_since_start", metric_name="m1")
        c = rep.metrics["m1"].comparisons["t_vs_c"]
        if last["variance_c"] is None or last["count_c"] < 2:
            continue
        ref = stats.ttest_ind_from_stats(last["mean_t"], last["variance_t"] ** 0.5, last["count_t"],
                                         last["mean_c"], last["variance_c"] ** 0.5, last["count_c"],
                                         equal_var=False)
        assert c.comparison.p_value == pytest.approx(ref.pvalue, rel=WELCH, abs=1e-300)
        assert len(c.sequential.looks) == rows.num_rows


try:
    import tea_tasting as tea
except ImportError:  # an optional peer (the dev extra installs it)
    tea = None
needs_tea = pytest.mark.skipif(tea is None, reason="tea-tasting is not installed (pip install tea-tasting)")


def _tea_check(ours, theirs):
    """tea-tasting's Welch test and delta-method ratio on the same table: the absolute lift,
    its interval and the p-value agree to rounding; the relative interval is tea-tasting's
    log-scale one, compared when ours is on the log scale too."""
    assert ours.abs_lift == pytest.approx(theirs.effect_size, rel=1e-9)
    assert ours.abs_ci[0] == pytest.approx(theirs.effect_size_ci_lower, rel=1e-7)
    assert ours.abs_ci[1] == pytest.approx(theirs.effect_size_ci_upper, rel=1e-7)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-7)
    assert ours.rel_lift == pytest.approx(theirs.rel_effect_size, rel=1e-9)
    if ours.rel_method == "log":
        assert ours.rel_ci[0] == pytest.approx(theirs.rel_effect_size_ci_lower, rel=1e-6)
        assert ours.rel_ci[1] == pytest.approx(theirs.rel_effect_size_ci_upper, rel=1e-6)


@needs_tea
def test_tea_tasting_on_cookie_cats(cookie):
    t, rep = cookie
    df = t.to_pandas()
    for col in ("retention_1", "retention_7"):
        df[col] = df[col].astype(int)
    result = tea.Experiment(r1=tea.Mean("retention_1"), r7=tea.Mean("retention_7"),
                            variant="version").analyze(df, control="gate_30")
    for ours, theirs in (("retention_1", "r1"), ("retention_7", "r7")):
        _tea_check(rep.metrics[ours].comparisons["gate_40_vs_gate_30"].comparison, result[theirs])


@needs_tea
def test_tea_tasting_on_hillstrom_ratio_and_mean():
    t = _read("hillstrom")
    t2 = t.filter(pc.is_in(t["segment"], pa.array(["No E-Mail", "Mens E-Mail"])))
    rep = analyze_table(t2, arm="segment", control="No E-Mail",
                        metrics={"spend": "spend", "spend_per_visit": "spend/visit"})
    result = tea.Experiment(spend=tea.Mean("spend"), spv=tea.RatioOfMeans("spend", "visit"),
                            variant="segment").analyze(t2.to_pandas(), control="No E-Mail")
    key = "Mens E-Mail_vs_No E-Mail"
    _tea_check(rep.metrics["spend"].comparisons[key].comparison, result["spend"])
    _tea_check(rep.metrics["spend_per_visit"].comparisons[key].comparison, result["spv"])
