"""A run where CUPED could not be applied says so in report.md and report.json."""

import json

import numpy as np

from simab.reports import analyze, messages, write_report
from simab.reports.estimates import Functional, cuped_fit, estimate
from simab.reports.moments import Moments


def test_no_covariates_is_reported(make_run):
    run = make_run(users=600, covariates=False)
    write_report(analyze(run), run)
    d = json.loads((run / "report.json").read_text())
    for name in ("ctr", "stay_time", "latency_p99_ms"):
        comp = d["metrics"][name]["comparisons"]["treatment_vs_control"]
        assert comp["cuped_applied"] is False and "cuped" not in comp
        assert comp["cuped_reason"]
    ctr = d["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]
    assert ctr["cuped_reason"] == messages.NO_COVARIATES
    md = (run / "report.md").read_text()
    assert "CUPED not applied:" in md and messages.NO_COVARIATES in md


def test_applied_cuped_is_marked(synthetic_run):
    d = analyze(synthetic_run).to_json_dict()
    ctr = d["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]
    assert ctr["cuped_applied"] is True and ctr["cuped_reason"] is None and "cuped" in ctr
    lat = d["metrics"]["latency_p99_ms"]["comparisons"]["treatment_vs_control"]
    assert lat["cuped_applied"] is False
    assert lat["cuped_reason"] == messages.CUPED_NO_COVARIATE


def test_cuped_fit_says_why_it_was_not_applied():
    rng = np.random.default_rng(0)
    one_each = {a: Moments.from_columns({"y": rng.normal(size=1), "pre": rng.normal(size=1)})
                for a in ("c", "t")}
    fit = cuped_fit(one_each, Functional("y"), Functional("pre"))
    assert fit.reason == messages.CUPED_TOO_FEW and not fit.adjusted
    flat = {a: Moments.from_columns({"y": rng.normal(size=50), "pre": np.ones(50)})
            for a in ("c", "t")}
    fit = cuped_fit(flat, Functional("y"), Functional("pre"))
    assert fit.reason == messages.CUPED_NO_VARIANCE and fit.theta == 0.0
    # the plain estimates are kept where CUPED is not applied
    assert fit.estimates["c"] == estimate("c", flat["c"], Functional("y"))
