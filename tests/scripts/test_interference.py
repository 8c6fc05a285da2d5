"""scripts/interference.py: its summary arithmetic, and a tiny run end to end (page, JSON, figure)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import interference  # noqa: E402


def test_summarise_measures_bias_coverage_and_power_against_each_replicates_truth():
    truth = np.array([0.10, 0.00, -0.05, 0.20])
    est = np.array([0.12, 0.01, -0.05, 0.10])
    lo, hi = est - 0.05, est + 0.05  # covers the first three truths, not the fourth (0.10 +- 0.05 vs 0.20)
    p = np.array([0.01, 0.50, 0.20, 0.03])
    r = interference.summarise(est, lo, hi, p, inexp=truth + 0.01, truth=truth)
    err = est - truth
    assert r["bias"] == pytest.approx(err.mean()) and r["sd"] == pytest.approx(err.std(ddof=1))
    assert r["bias_mcse"] == pytest.approx(err.std(ddof=1) / 2)
    assert r["coverage"] == pytest.approx(0.75) and r["with_ci"] == 4
    assert r["power"] == pytest.approx(0.5)  # p < 0.05 with the truth's sign: replicates 1 and 4
    assert r["rejections"] == pytest.approx(0.5) and r["inexp_bias"] == pytest.approx(0.01)
    assert r["mean_se"] == pytest.approx(0.05 / 1.959963984540054)


def test_summarise_leaves_out_replicates_without_an_estimate_or_an_interval():
    nan = math.nan
    r = interference.summarise(np.array([0.1, nan, 0.2]), np.array([0.0, nan, nan]), np.array([0.2, nan, nan]),
                               np.array([0.5, nan, 0.01]), np.array([0.1, 0.1, 0.1]), np.array([0.1, 0.1, 0.1]))
    assert r["replicates"] == 2 and r["with_ci"] == 1 and r["coverage"] == 1.0


def _check_outputs(out: Path, result: dict) -> None:
    page = (out / "interference.md").read_text()
    assert "| capacity | sold out" in page and result["command"] in page
    assert (out / "interference.png").stat().st_size > 10_000
    # the hand-written findings survive a rewrite
    (out / "interference.md").write_text(page.replace("<!-- notes -->", "<!-- notes -->\nkept finding"))
    interference.write_outputs(result, out)
    assert "kept finding" in (out / "interference.md").read_text()


def test_a_tiny_study_writes_the_page_json_and_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")
    out = tmp_path / "out"
    argv = ["--markets", "4", "--users", "60", "--days", "0.25", "--capacities", "20", "--designs", "user",
            "--market-group", "2", "--market-replicates", "5", "--refresh-s", "3600", "--no-aa", "--out", str(out)]
    assert interference.main(argv) == 0
    result = json.loads((out / "interference.json").read_text())
    pt = result["points"]["20"]
    assert set(pt["designs"]) == {"user", "market"}
    assert pt["designs"]["user"]["ctr"]["replicates"] == 4  # one per market
    assert pt["designs"]["market"]["ctr"]["replicates"] == 5
    assert pt["sims"]["global-control"]["spent"] > 0
    _check_outputs(out, result)


@pytest.mark.slow
def test_the_quick_study_runs_every_part(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")
    out = tmp_path / "out"
    assert interference.main(["--quick", "--out", str(out)]) == 0
    result = json.loads((out / "interference.json").read_text())
    pts = result["points"]
    assert sorted(pts) == ["1000", "5", "5-aa"]
    assert pts["1000"]["sims"]["global-control"]["sold_out_share"] == 0.0  # slack: nothing sells out
    assert {"user", "budget_split", "item", "two_sided", "switchback_3h", "switchback_3h_washout1h",
            "market"} == set(pts["5"]["designs"])
    assert "## A/A battery" in (out / "interference.md").read_text()
    _check_outputs(out, result)


def test_the_recorded_page_is_the_render_of_its_json():
    """docs/results/interference.md is the script's page of the JSON beside it, followed only by
    the hand-written findings."""
    import argparse

    result = json.loads((ROOT / "docs" / "results" / "interference.json").read_text())
    page = (ROOT / "docs" / "results" / "interference.md").read_text()
    text = interference.page(result, argparse.Namespace(**result["settings"]), result["command"], result["wall_s"])
    head = text.split("<!-- notes -->", 1)[0]
    assert page.startswith(head) and page[len(head):].startswith("<!-- notes -->")
    assert result["settings"]["markets"] >= 200  # the issue: at least 200 replicates per point
