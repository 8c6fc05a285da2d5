import numpy as np
import pytest

from simab.reports.multiplicity import adjust_p_values

P = [0.005, 0.06, 0.007, 0.04, 0.01, 0.03]


def test_bh_tea_tasting_reference():
    # tea-tasting multiplicity docs / tests: Benjamini-Hochberg reference.
    assert adjust_p_values(P, "bh") == pytest.approx([0.02, 0.06, 0.02, 0.048, 0.02, 0.045])


def test_holm_by_hand():
    # Holm (1979): sorted p_(i) * (m - i + 1), running max, capped at 1.
    order = sorted(range(len(P)), key=P.__getitem__)
    expected, running = [0.0] * len(P), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, P[i] * (len(P) - rank)))
        expected[i] = running
    assert adjust_p_values(P, "holm") == pytest.approx(expected)


def test_undefined_p_values_stay_out_of_the_family():
    out = adjust_p_values([0.01, float("nan"), 0.02], "bonferroni")
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    assert out[1] != out[1]


def test_maxt_is_sidak_for_independent_tests_and_dunnett_for_many_to_one():
    import numpy as np
    from scipy import stats

    from simab.reports.multiplicity import maxt_adjust

    p = np.array([0.01, 0.04, 0.3])
    assert maxt_adjust(p, np.eye(3)) == pytest.approx(1 - (1 - p) ** 3, abs=1e-5)
    # Dunnett (1955): two treatments against one control with equal arms (correlation 1/2),
    # two-sided 5% critical value 2.212 at infinite df (Dunnett's tables; also
    # scipy.stats.dunnett's reference): the adjusted p at |z| = 2.2121 is 5%
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    z = 2.2121
    adj = maxt_adjust(np.array([2 * stats.norm.sf(z), 0.5]), corr)
    assert adj[0] == pytest.approx(0.05, abs=2e-4)
    # correlated tests make max-T less conservative than Holm/Bonferroni
    assert adj[0] < 2 * 2 * stats.norm.sf(z)


def test_report_states_the_family_and_the_method(synthetic_run):
    from simab.reports import analyze

    holm = analyze(synthetic_run)
    maxt = analyze(synthetic_run, correction="maxt")
    assert holm.family["correction"] == "holm" and maxt.family["correction"] == "maxt"
    assert "max-T" in maxt.family["method"] and maxt.family["comparisons"] == holm.family["comparisons"]
    d = maxt.to_json_dict()
    assert d["family"]["method"].startswith("single-step max-T")
    for name, m in maxt.metrics.items():
        if not m.confirmatory:
            continue
        for key, r in m.comparisons.items():
            h = holm.metrics[name].comparisons[key]
            assert r.p_value_adjusted >= r.comparison.p_value - 1e-12
            # max-T uses the metrics' correlation: never above Bonferroni
            assert r.p_value_adjusted <= min(1.0, h.comparison.p_value * maxt.family["comparisons"]) + 1e-6


@pytest.mark.parametrize("correction, method", [("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")])
def test_stepwise_corrections_equal_statsmodels(correction, method):
    """Our stepwise formulas against statsmodels' multipletests (the reference), over random
    families with ties and p-values near 1; rel 1e-12: the same arithmetic in another order."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    for m in (1, 2, 3, 5, 12, 40):
        for _ in range(25):
            p = rng.uniform(size=m) ** rng.choice([0.5, 1, 3])
            p[rng.uniform(size=m) < 0.2] = p[0]  # ties
            expected = multipletests(p, method=method)[1]
            assert adjust_p_values(list(p), correction) == pytest.approx(list(expected), rel=1e-12, abs=0)
