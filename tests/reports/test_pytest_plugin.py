import pytest

from simab.pytest_plugin import assert_lift, report_of

pytest_plugins = ["pytester"]

REPORT = {
    "alpha": 0.05,
    "metrics": {
        "ctr": {
            "comparisons": {
                "t_vs_c": {
                    "rel_lift": 0.03,
                    "rel_ci": [0.01, 0.05],
                    "p_value": 0.002,
                    "true_rel_lift": 0.025,
                    "flags": [],
                }
            }
        }
    },
}


def test_assert_lift_passes_and_fails_with_numbers():
    assert assert_lift(REPORT, "ctr", min_rel=0.02, ci_excludes_zero=True)["p_value"] == 0.002
    with pytest.raises(
        AssertionError, match=r"rel lift \+3.000%.*CI \[\+1.000%, \+5.000%\].*>= \+5.000%"
    ):
        assert_lift(REPORT, "ctr", min_rel=0.05)
    with pytest.raises(AssertionError, match="include 0"):
        assert_lift(REPORT, "ctr", ci_excludes_zero=False)
    with pytest.raises(AssertionError, match="no comparison 'x_vs_c'"):
        assert_lift(REPORT, "ctr", comparison="x_vs_c")
    with pytest.raises(AssertionError, match="not in the report"):
        assert_lift(REPORT, "cvr")


def test_report_of_reads_a_run_folder(synthetic_run):
    assert report_of(synthetic_run)["campaign"] == "synthetic"
    assert report_of(REPORT) is REPORT


def test_fixture_is_registered_by_the_entry_point(pytester, synthetic_run, monkeypatch):
    import simab

    calls = []

    def fake_load_campaign(path=None, *, overrides=None):
        return ("spec", path, overrides)

    def fake_run_campaign(spec, *, out):
        calls.append(spec)
        return type("RunResult", (), {"run_dir": synthetic_run, "report": None})()

    monkeypatch.setattr(simab, "load_campaign", fake_load_campaign)
    monkeypatch.setattr(simab, "run_campaign", fake_run_campaign)
    pytester.makepyfile(
        """
        from simab.pytest_plugin import assert_lift

        def test_ranker(simab_campaign):
            report = simab_campaign("spec.toml", seed=3)
            assert_lift(report, "ctr", min_rel=0.0, ci_excludes_zero=True)
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert calls == [("spec", "spec.toml", {"seed": 3})]
