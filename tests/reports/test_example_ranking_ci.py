"""Example regression test a ranking team can copy into its own CI.

The ``simab_campaign`` fixture comes with simab (pytest11 entry point): it runs a
simulated A/B campaign and returns its report.json as a dict.  Copy this file, point it
at your own campaign TOML, and the test fails — printing the numbers — when your
treatment stops beating control.
"""

import pytest

from simab.pytest_plugin import assert_lift


@pytest.mark.slow
def test_treatment_lifts_ctr_on_the_default_campaign(simab_campaign):
    report = simab_campaign()  # or simab_campaign("campaigns/my_ranker.toml", seed=3)

    assert report["srm"]["ok"], "traffic split does not match the allocation"
    assert_lift(report, "ctr", min_rel=0.0, ci_excludes_zero=True)
    ctr = report["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]
    if ctr["true_rel_lift"] is not None:  # the simulator knows the truth: check the CI too
        assert ctr["ci_covers_truth"], ctr
