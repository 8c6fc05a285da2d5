"""The offline-vs-online study (scripts/offline_online.py): its scoring on hand-made points,
a ``--quick`` smoke run end to end, and the recorded page being the render of its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


def _script():
    spec = importlib.util.spec_from_file_location("offline_online", ROOT / "scripts" / "offline_online.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_score_on_hand_made_points():
    oo = _script()
    pts = [{"pair": "a", "true": 0.1, "pred": 0.2, "ci": [0.0, 0.3], "logged_truth": 0.4},
           {"pair": "b", "true": 0.5, "pred": 0.3, "ci": [0.25, 0.35], "logged_truth": 0.3},
           {"pair": "c", "true": 0.9, "pred": 1.0, "ci": [0.8, 1.2], "logged_truth": 0.85}]
    s = oo.score(pts)
    assert s["n"] == 3
    assert s["spearman"] == pytest.approx(1.0)  # the predictions are in the truths' order
    # bias: mean of (0.1, -0.2, 0.1); abs error: mean of (0.1, 0.2, 0.1); approx: float sums
    assert s["mean_bias"] == pytest.approx(0.0, abs=1e-12)
    assert s["mean_abs_error"] == pytest.approx(0.4 / 3)
    assert s["covers_online_truth"] == pytest.approx(2 / 3)  # b's interval misses 0.5
    assert s["covers_logged_truth"] == pytest.approx(2 / 3)  # a's interval misses 0.4
    # an offline metric difference is not a lift: no bias, no interval
    off = oo.score([{"pair": p["pair"], "true": p["true"], "pred": -p["pred"]} for p in pts])
    assert off["spearman"] == pytest.approx(-1.0) and off["mean_bias"] is None and off["covers_online_truth"] is None
    assert oo.spearman([1.0, 2.0], [1.0, 2.0]) is None  # fewer than 3 pairs


def test_quick_run_writes_the_page_and_the_pairs(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")
    oo = _script()
    out = tmp_path / "out"
    assert oo.main(["--quick", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    summary = json.loads((out / "offline_online.json").read_text())
    assert (out / "offline_online.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pairs = {r["pair"]: r for r in summary["rows"]}
    # --quick: blends 0 and 1 against popularity, and DIN against DNN (trained)
    assert set(pairs) == {"oracle_b0_vs_popularity", "oracle_b1_vs_popularity", "din_vs_dnn", "popularity_vs_dnn"}
    assert set(pairs["din_vs_dnn"]["offline_difference"]) == {"auc", "gauc", "logloss"}
    assert pairs["oracle_b1_vs_popularity"]["offline_difference"] is None
    aa = pairs["oracle_b0_vs_popularity"]["metrics"]["ctr"]
    for logger in ("uniform", "epsilon"):
        # blend 0 scores by popularity: the same slates as the control on every logged
        # request, so the truth and every estimate of the lift are 0 (identical totals)
        assert aa["ope"][logger]["logged_truth"] == 0.0
        assert all(e["rel_lift"] == 0.0 for e in aa["ope"][logger]["estimates"].values())
    for r in summary["rows"]:
        assert set(r["metrics"]["ctr"]["online"]) == {"rel_lift", "rel_ci", "true_rel_lift", "ci_covers_truth"}
    assert "online A/B" in summary["scores"]["all"]["ctr"] and "IPS (epsilon)" in summary["scores"]["all"]["ctr"]
    assert summary["scores"]["trained"]["ctr"]["online A/B"]["n"] == 1  # din vs dnn
    assert summary["scores"]["without_aa"]["ctr"]["online A/B"]["n"] == 3
    page = (out / "offline_online.md").read_text()
    assert page.startswith(oo.render(summary))
    # --resume reuses the finished campaigns (same specs): the same rows without running them
    # again; another spec (here another seed) is not reused
    assert oo.main(["--quick", "--resume", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    again = json.loads((out / "offline_online.json").read_text())
    assert again["rows"] == summary["rows"] and again["script_s"] < summary["script_s"]
    camp = oo.campaigns(oo.parse_args(["--quick"]))[0]
    import simab

    spec = simab.load_campaign(None, overrides={"name": camp["name"], "seed": 99})
    assert oo.finished(spec, tmp_path / "offline-online" / camp["name"], ["uniform", "epsilon"]) is None


def test_recorded_page_is_the_render_of_its_json():
    oo = _script()
    summary = json.loads((ROOT / "docs" / "results" / "offline_online.json").read_text())
    page = (ROOT / "docs" / "results" / "offline_online.md").read_text()
    text = oo.render(summary)
    assert page.startswith(text)
    assert page[len(text):].lstrip("\n").startswith(("<!-- notes start -->", "## Notes"))
