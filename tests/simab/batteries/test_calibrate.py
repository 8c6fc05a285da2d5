"""simab.batteries.calibrate / simab.reports.calibration.

Fast tests pin the statistics on synthetic rows; the ``slow`` tests run every battery at a
small N and check wide bounds that a broken harness would still miss (each bound's reason
is next to it).
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from simab.batteries.calibrate import calibrate, calibration_markdown, summarise
from simab.cli.main import main
from simab.reports.calibration import (
    Rate,
    coverage,
    false_positives,
    naive_exposure_p,
    naive_vs_user,
    peeking,
)


def test_clopper_pearson_matches_closed_forms_and_scipy():
    # k = 0: upper bound solves (1 - p)^n = alpha/2
    assert Rate(0, 10).ci == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9))
    # k = n: lower bound solves p^n = alpha/2
    assert Rate(10, 10).ci == (pytest.approx(0.025 ** (1 / 10), rel=1e-9), 1.0)
    ref = stats.binomtest(20, 400).proportion_ci(0.95, method="exact")
    assert Rate(20, 400).ci == (pytest.approx(ref.low, rel=1e-9), pytest.approx(ref.high, rel=1e-9))
    assert Rate(20, 400).contains(0.05) and not Rate(60, 400).contains(0.05)
    assert math.isnan(Rate(0, 0).value)


def _rows(metric, p_values, **extra):
    return [{"metric": metric, "p_value": p, "alpha": 0.05, **extra} for p in p_values]


def test_false_positives_and_ks_on_uniform_and_skewed_p_values():
    rng = np.random.default_rng(1)
    fp, ks = false_positives(_rows("ctr", rng.uniform(size=400)), 0.05)
    assert fp.n == 400 and fp.contains(0.05)
    assert ks > 0.01  # uniform draws: KS rejects at 1 % only by 1 % chance (fixed seed)
    fp, ks = false_positives(_rows("ctr", rng.uniform(size=400) ** 2), 0.05)
    assert fp.value > 0.15 and ks < 1e-6  # P(U^2 < 0.05) = sqrt(0.05) = 0.22


def test_coverage_bias_and_power():
    rows = [
        {"metric": "ctr", "rel_lift": 0.12, "true_rel_lift": 0.10, "ci_covers_truth": True,
         "rel_ci_lo": 0.02, "rel_ci_hi": 0.22, "p_value": 0.01, "alpha": 0.05},
        {"metric": "ctr", "rel_lift": 0.04, "true_rel_lift": 0.10, "ci_covers_truth": True,
         "rel_ci_lo": -0.06, "rel_ci_hi": 0.14, "p_value": 0.4, "alpha": 0.05},
        {"metric": "ctr", "rel_lift": 0.30, "true_rel_lift": 0.10, "ci_covers_truth": False,
         "rel_ci_lo": 0.20, "rel_ci_hi": 0.40, "p_value": 0.001, "alpha": 0.05},
        {"metric": "ctr", "rel_lift": None, "true_rel_lift": None, "ci_covers_truth": None,
         "rel_ci_lo": None, "rel_ci_hi": None, "p_value": None, "alpha": 0.05},
    ]
    c = coverage(rows)
    assert (c["coverage"].k, c["coverage"].n) == (2, 3)  # the undefined run is left out
    assert c["bias"] == pytest.approx((0.02 - 0.06 + 0.20) / 3)
    assert c["bias_se"] == pytest.approx(np.std([0.02, -0.06, 0.20], ddof=1) / math.sqrt(3))
    assert (c["power"].k, c["power"].n) == (2, 3)
    assert c["mean_ci_width"] == pytest.approx(0.2)


def test_naive_exposure_p_is_the_two_proportion_wald_test():
    row = {"clicks_control": 100, "exposures_control": 1000,
           "clicks_treatment": 130, "exposures_treatment": 1000}
    p, se = naive_exposure_p(row, "ctr")
    se_ref = math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert se == pytest.approx(se_ref)
    assert p == pytest.approx(2 * stats.norm.sf(0.03 / se_ref))


def test_naive_vs_user_counts_rejections_and_design_effect():
    base = {"clicks_control": 100, "exposures_control": 1000, "clicks_treatment": 130,
            "exposures_treatment": 1000, "metric": "ctr"}
    _, se_naive = naive_exposure_p(base, "ctr")
    rows = [{**base, "p_value": 0.3, "abs_se": 3 * se_naive}]
    nv = naive_vs_user(rows, "ctr", 0.05)
    assert (nv["exposure_level"].k, nv["user_level"].k) == (1, 0)
    assert nv["design_effect"] == pytest.approx(9.0)


def test_peeking_naive_stops_early_always_valid_does_not():
    # day 1 crosses |z| = 2.5 (p 0.012), later looks do not; the always-valid p stays 0.3
    row = {"metric": "ctr", "look_rel_lift": [0.25, 0.05, 0.01], "look_rel_se": [0.1, 0.1, 0.1],
           "seq_p_value": 0.3}
    pk = peeking([row], 0.05)
    assert pk["naive_daily"].k == 1 and pk["naive_final_look"].k == 0 and pk["always_valid"].k == 0
    assert pk["looks"] == 3


def test_summarise_flags_a_missed_target_and_markdown_says_so():
    grid = np.linspace(0.0005, 0.9995, 1000)  # 1,000 evenly spread p-values: 5.0 % below 0.05
    good = [{"metric": "ctr", "p_value": p, "alpha": 0.05} for p in grid]
    entry = summarise("aa", good)
    assert entry["metrics"]["ctr"]["false_positive_rate"] == 0.05 and entry["metrics"]["ctr"]["pass"]
    bad = [{"metric": "ctr", "p_value": p, "alpha": 0.05} for p in grid**3]
    entry = summarise("aa", bad)
    assert not entry["metrics"]["ctr"]["pass"] and not entry["pass"]
    entry.update(runs=1000, wall_s=1.0, workers=1)
    assert "TARGET MISSED" in calibration_markdown({"batteries": {"aa": entry}})


def test_aa_pass_rule_binomial_margin_and_ks():
    from simab.reports.calibration import Rate, aa_verdict

    # exact binomial p of k/1000 against 5 % (scipy.stats.binomtest): 30 -> 0.003, 34 -> 0.020
    assert not aa_verdict(Rate(30, 1000), 0.5)["pass"]  # the old CI rule at 400 runs took 3.0 %
    tight = aa_verdict(Rate(34, 1000), 0.5)
    assert tight["binomial_ok"] and not tight["margin_ok"] and not tight["pass"]  # the margin adds
    assert aa_verdict(Rate(60, 1000), 0.5)["pass"]
    assert not aa_verdict(Rate(66, 1000), 0.5)["pass"]  # 6.6 % > 6.5 %
    assert not aa_verdict(Rate(50, 1000), 0.005)["pass"]  # p-values not uniform


def test_cli_calibrate_errors(tmp_path, capsys):
    assert main(["calibrate", "--battery", "aa", "--runs", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --runs: must be at least 2, got 1"
    assert main(["calibrate", "--battery", "ab", "--runs", "5"]) == 2  # unknown battery
    assert capsys.readouterr().err.startswith("error: --battery: invalid choice")


def test_unreadable_summary_stops_calibrate_before_any_campaign(tmp_path, capsys):
    """calibration.json holds the other batteries' results: one simab did not write is never
    overwritten, and one it wrote but that was changed since is an error; both are raised
    before a campaign runs."""
    from simab.record import FolderRecord

    (tmp_path / "calibration.json").write_text('{"batteries": ')
    assert main(["calibrate", "--battery", "aa", "--runs", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'calibration.json'}: not written by simab"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.json"]  # nothing ran
    assert (tmp_path / "calibration.json").read_text() == '{"batteries": '

    (tmp_path / "calibration.json").unlink()
    record = FolderRecord(tmp_path, "calibrate")
    record.write_file("calibration.json", '{"schema": 1, "batteries": {}}')
    (tmp_path / "calibration.json").write_text('{"batteries": ')  # changed after simab wrote it
    assert main(["calibrate", "--battery", "aa", "--runs", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "calibration.json does not match its digest" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration.json", "manifest.json"]  # nothing ran
    assert (tmp_path / "calibration.json").read_text() == '{"batteries": '


# --------------------------------------------------------------------------- slow
@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("calibration")


AA_RUNS = 40  # small N: P(Bin(40, 0.05) >= 9) = 1.3e-4, so a bound of 0.2 fails a calibrated
# harness only by chance ~1e-3 over 5 metrics, but catches FPR >= ~35 % (e.g. exposure-level)


@pytest.mark.slow
def test_battery_aa_small_n(calibration_dir):
    data = calibrate(["aa"], AA_RUNS, calibration_dir, workers=2)
    aa = data["batteries"]["aa"]
    assert set(aa["metrics"]) == {"ctr", "ctcvr", "cvr", "stay_time", "exposures_per_user"}
    for m, v in aa["metrics"].items():
        assert v["runs"] == AA_RUNS, m
        assert v["false_positive_rate"] <= 0.2, m
        assert v["ks_p_value"] > 1e-3, m  # a skewed p-value distribution gives ~0 at N = 40
    written = json.loads((calibration_dir / "calibration.json").read_text())
    assert written["batteries"]["aa"]["metrics"]["ctr"]["ci"][0] <= written["batteries"]["aa"]["metrics"]["ctr"]["ci"][1]
    assert (calibration_dir / "aa.png").exists() and "## aa" in (calibration_dir / "calibration.md").read_text()


@pytest.mark.slow
def test_battery_peeking_small_n(calibration_dir):
    # reuses the A/A campaigns of the aa battery (same spec and seeds in the same folder)
    pk = calibrate(["peeking"], AA_RUNS, calibration_dir, workers=2)["batteries"]["peeking"]
    total_naive = sum(v["naive_false_positive_rate"] for v in pk["metrics"].values())
    total_valid = sum(v["false_positive_rate"] for v in pk["metrics"].values())
    for m, v in pk["metrics"].items():
        assert v["looks"] >= 2.5, m  # three daily looks (a user-less day 0 would drop one)
        assert v["false_positive_rate"] <= 0.2, m  # always-valid FPR <= 5 %: same bound as A/A
        # the naive rule rejects whenever the final look does, so it can never be below it
        assert v["naive_false_positive_rate"] >= v["final_look_false_positive_rate"], m
    assert total_naive >= total_valid  # the naive daily rule is the looser one


@pytest.mark.slow
def test_battery_naive_small_n(calibration_dir):
    nv = calibrate(["naive"], AA_RUNS, calibration_dir, workers=2)["batteries"]["naive"]
    assert set(nv["metrics"]) == {"ctr", "ctcvr", "cvr"}
    # users differ in click propensity, so exposures of one user are correlated: the user-level
    # variance must exceed the independent-exposure one (design effect 1 + (m - 1) rho > 1)
    assert nv["metrics"]["ctr"]["design_effect"] > 1.2
    assert nv["metrics"]["ctr"]["exposure_level_false_positive_rate"] >= nv["metrics"]["ctr"]["false_positive_rate"]


@pytest.mark.slow
def test_battery_known_effect_small_n(calibration_dir):
    runs = 30
    ke = calibrate(["known-effect"], runs, calibration_dir, workers=2)["batteries"]["known-effect"]
    for m, v in ke["metrics"].items():
        assert v["runs"] == runs, m
        # measured coverage at this world size is ~0.9-0.95 (docs/calibration.md), and
        # P(Bin(30, 0.9) <= 20) = 5e-4; a CI that ignored the user clustering (design effect
        # ~4, i.e. half as wide: ~60 % coverage) or a truth on another scale fails
        assert v["coverage"] >= 0.7, m
        assert abs(v["bias"]) <= 4 * v["bias_se"] + 1e-9, m  # unbiased up to 4 standard errors
    assert ke["metrics"]["ctr (blend 0.5)"]["mean_true_rel_lift"] > 0.05  # the blended oracle does lift CTR
    lifts = [ke["metrics"][f"ctr (blend {b:g})"]["mean_true_rel_lift"] for b in (0.05, 0.2, 0.5)]
    assert lifts == sorted(lifts) and lifts[0] < 0.1  # three effect sizes, one small
