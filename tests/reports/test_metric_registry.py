"""One home per metric: every consumer reads reports/metric_registry.py."""

import re
from pathlib import Path

import pyarrow as pa
import pytest

from simab import spec
from simab.reports import analysis, figures
from simab.reports import calibration as calibration_stats
from simab.reports.metric_registry import REGISTRY, TruthSums, truth_values
from simab.run.truth import oracle_truth

ROOT = Path(__file__).resolve().parents[2]


def test_consumers_read_the_registry():
    names = tuple(REGISTRY)
    assert spec.METRICS == names == analysis.METRICS
    assert set(analysis.UNIT_METRICS) == {n for n, m in REGISTRY.items() if m.unit == "user"}
    for n, f in analysis.UNIT_METRICS.items():
        assert (f.num, f.den) == (REGISTRY[n].num, REGISTRY[n].den)
    for n, f in analysis.PRE_PERIOD.items():
        assert (f.num, f.den) == (REGISTRY[n].pre_num, REGISTRY[n].pre_den)
    assert calibration_stats.USER_METRICS == tuple(analysis.UNIT_METRICS)
    assert calibration_stats.NAIVE_COUNTS == {"ctr": ("clicks", "exposures"),
                                              "ctcvr": ("conversions", "exposures"),
                                              "cvr": ("conversions", "clicks")}
    assert set(figures.TREND_METRICS) <= set(names) and set(figures.RATIO_METRICS) <= set(names)
    assert [n for n, m in REGISTRY.items() if not m.confirmatory] == ["latency_p99_ms"]


@pytest.mark.parametrize(
    "path",
    [
        "simab/spec.py",
        "reports/calibration.py",
        "simab/run/runner.py",
        "reports/analysis.py",
        "reports/figures.py",
        "reports/render_markdown.py",
        "reports/render_html.py",
        "reports/summary.py",
    ],
)
def test_no_metric_is_defined_outside_the_registry(path):
    """Metric names as string literals were the five scattered definitions of issue #15."""
    text = (ROOT / path).read_text()
    pattern = r"[\"'](" + "|".join(REGISTRY) + r")[\"']"
    assert re.findall(pattern, text) == []


def test_oracle_truth_formulas():
    """Two arms of hand-sized exposures; the expected values worked out by hand below."""
    exposures = pa.table({
        "arm": ["a", "a", "a", "a", "b", "b"],
        "p_click": [0.1, 0.2, 0.3, 0.4, 0.5, 0.5],
        "p_convert": [0.5, 0.5, 0.0, 0.25, 0.2, 0.4],
        "expected_dwell_s": [10.0, 20.0, 30.0, 40.0, 8.0, 8.0],
    })
    rows = oracle_truth(exposures, {"a": 2, "b": 4})
    got = {(r["arm"], r["metric"]): r["value"] for r in rows}
    # arm a: Σp_click = 1.0 over 4 exposures; Σp_click·p_convert = 0.05+0.1+0+0.1 = 0.25;
    # Σp_click·dwell = 1+4+9+16 = 30 over 2 users.  arm b: 1.0/2, 0.1+0.2 = 0.3, 8/4 users
    expected = {
        ("a", "ctr"): 0.25, ("a", "ctcvr"): 0.0625, ("a", "cvr"): 0.25, ("a", "stay_time"): 15.0,
        ("b", "ctr"): 0.5, ("b", "ctcvr"): 0.15, ("b", "cvr"): 0.3, ("b", "stay_time"): 2.0,
    }
    assert got.keys() == expected.keys()  # exposures per user only from a counterfactual
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k  # float sums of the inputs above
    cf = oracle_truth(exposures, {"a": 2, "b": 4}, source="counterfactual")
    assert {(r["arm"], r["metric"]): r["value"] for r in cf}[("b", "exposures_per_user")] == 0.5


def test_truth_values_follow_the_sources():
    sums = TruthSums(exposures=10, users=5, p_click=2.0, p_click_convert=0.5, p_click_dwell=30.0)
    assert "exposures_per_user" not in truth_values(sums, "oracle")
    assert truth_values(sums, "counterfactual")["exposures_per_user"] == 2.0
    assert "latency_p99_ms" not in truth_values(sums, "counterfactual")
    assert truth_values(sums, "oracle")["cvr"] == 0.25  # 0.5 / 2.0 is exact in binary
