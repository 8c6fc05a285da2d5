"""Latency is a guardrail (issue #16 item 7): outside the confirmatory family, its relative
CI respects latency > 0, shown apart and read by its direction (higher is worse)."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simab.reports import analyze, figures, write_report
from simab.reports.latency import percentile_estimate
from simab.reports.render_markdown import render_markdown

CONFIRMATORY = ("ctr", "ctcvr", "cvr", "stay_time", "exposures_per_user")
ARMS = {
    "control": {"share": 0.5, "ctr": 0.05, "cvr": 0.10, "latency": 20.0},
    "treatment": {"share": 0.5, "ctr": 0.06, "cvr": 0.10, "latency": 20.0},
}


def _set_latency(run_dir, make_latency) -> None:
    """Replace the requests' latency column (everything else in the run stays the same)."""
    path = run_dir / "requests" / "shard-00000.parquet"
    req = pq.read_table(path)
    lat = make_latency(np.asarray(req["arm"]))
    req = req.set_column(req.column_names.index("latency_ms"), "latency_ms", pa.array(lat))
    pq.write_table(req, path)


def test_latency_does_not_move_the_adjusted_p_values_of_other_metrics(make_run):
    # same seed and users; only the (wall-clock) latency differs: equal, then +30 % slower
    same = make_run("same", arms=ARMS)
    slower = make_run("slower", arms={**ARMS, "treatment": {**ARMS["treatment"], "latency": 26.0}})
    a, b = analyze(same), analyze(slower)
    la = a.metrics["latency_p99_ms"].comparisons["treatment_vs_control"]
    lb = b.metrics["latency_p99_ms"].comparisons["treatment_vs_control"]
    assert la.comparison.p_value > 0.01 and lb.comparison.p_value < 1e-6  # the setup worked
    for name in CONFIRMATORY:
        ra = a.metrics[name].comparisons["treatment_vs_control"]
        rb = b.metrics[name].comparisons["treatment_vs_control"]
        # identical inputs through the identical code path: bit-for-bit equal by determinism
        assert ra.comparison.p_value == rb.comparison.p_value
        assert ra.p_value_adjusted == rb.p_value_adjusted, name


def test_latency_relative_ci_stays_above_minus_100_percent(make_run):
    """Few users and a heavy-tailed treatment: the delta-method CI reached about -1940 %."""
    run = make_run(users=400, seed=1)
    rng = np.random.default_rng(1)
    _set_latency(
        run,
        lambda arm: np.where(
            arm == "treatment",
            rng.lognormal(2.0, 1.5, arm.size),
            rng.lognormal(3.0, 0.3, arm.size),
        ),
    )
    r = analyze(run).metrics["latency_p99_ms"].comparisons["treatment_vs_control"]
    lo, hi = r.comparison.rel_ci
    assert -1 < lo < r.comparison.rel_lift < hi
    assert r.comparison.rel_method == "delta-log"


def test_report_marks_and_separates_the_guardrail(make_run, tmp_path):
    run = make_run(arms={**ARMS, "treatment": {**ARMS["treatment"], "latency": 26.0}})
    report = analyze(run)
    write_report(report, run)
    d = json.loads((run / "report.json").read_text())
    lat = d["metrics"]["latency_p99_ms"]
    assert lat["role"] == "guardrail" and lat["higher_is_better"] is False
    assert all(d["metrics"][m]["role"] == "confirmatory" for m in CONFIRMATORY)
    # one treatment arm: a family of one, so the adjusted p is the raw p
    comp = lat["comparisons"]["treatment_vs_control"]
    assert comp["p_value_adjusted"] == comp["p_value"]  # Holm of one p is p·1: exact
    assert comp["rel_ci_method"] == "delta-log"
    md = render_markdown(report)
    lifts = md.split("## Lifts")[1].split("## Guardrails")[0]
    guard = md.split("## Guardrails")[1].split("##")[0]
    assert "latency_p99_ms" not in lifts and "latency_p99_ms" in guard
    # a significant rise of a higher-is-worse metric reads as worse, not as a win
    assert "| worse |" in guard
    assert "latency_p99_ms" not in md.split("## Significant after correction")[1].split("##")[0]
    m = report.metrics["latency_p99_ms"]
    c = m.comparisons["treatment_vs_control"]
    assert figures.lift_colour(m, c.comparison.rel_lift, c.p_value_adjusted, 0.05) == figures.SIGNIFICANT
    ctr = report.metrics["ctr"]
    assert figures.lift_colour(ctr, 0.2, 1e-6, 0.05) == figures.WIN
    assert figures.forest_plot(report)[:8] == b"\x89PNG\r\n\x1a\n"
    page = (run / "report.html").read_text()
    assert "<h2>Guardrails</h2>" in page and "confirmatory comparisons" in page


def test_percentile_at_the_sample_maximum_has_no_interval():
    """Fewer than 100 requests: p99 is the maximum, the CDF there is exactly 1 with zero
    variance; the old code returned a zero-width interval (p = 0 for any difference)."""
    rng = np.random.default_rng(2)
    user = np.repeat(np.arange(30), 2)
    est = percentile_estimate("a", rng.gamma(4, 5, user.size), user, q=0.99)
    assert math.isnan(est.unit_var) and est.flags
