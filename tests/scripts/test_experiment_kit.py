"""The shared helper of the reproduction scripts (scripts/experiment_kit.py) on a tiny world:
world loading from the cached pre-period, the train grid, the A/B campaign and the page writer."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import experiment_kit as kit  # noqa: E402

#: A world small enough for a unit test (same sizes as tests/simab/conftest.py's tiny()).
TINY = {"preset": "default", "n_users": 240, "pre_period_days": 0.5, "n_shop_items": 600, "n_content_items": 400,
        "n_shops": 40}


def _args(tmp_path: Path, *argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    kit.add_common_args(ap, users=240, campaign_days=0.5)
    return kit.apply_quick(ap.parse_args(["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                                          "--max-steps", "2", "--batch-size", "256", "--seeds", "2", *argv]))


def test_common_flags_and_quick(tmp_path):
    args = _args(tmp_path, "--seed", "11")
    assert kit.model_seeds(args) == [11, 12]
    assert args.max_steps == 2 and args.campaign_days == 0.5
    cfg = kit.trainer_config(args, 12)
    assert (cfg.seed, cfg.max_steps, cfg.batch_size, cfg.progress) == (12, 2, 256, False)
    quick = _args(tmp_path, "--quick")
    assert {k: getattr(quick, k) for k in kit.QUICK} == kit.QUICK
    assert kit.split_list(" a, b,,c ") == ["a", "b", "c"]


def test_world_loading_reuses_the_cached_pre_period(tmp_path):
    first = kit.load_world(TINY, 3, tmp_path / "cache")
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert first.train.n_rows > 0 and first.val.n_rows > 0
    again = kit.load_world(TINY, 3, tmp_path / "cache")
    # the second load reads the same folder instead of simulating a new one
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached
    assert again.fingerprint == first.fingerprint
    assert again.train.n_rows == first.train.n_rows
    np.testing.assert_array_equal(again.train.label, first.train.label)
    assert kit.load_world(TINY, 4, tmp_path / "cache").fingerprint != first.fingerprint


def test_train_grid_rows_per_model_and_seed_and_checkpoint_reuse(tmp_path):
    args = _args(tmp_path)
    data = kit.load_world(TINY, args.seed, args.cache)
    models = [kit.Model("DNN", "dnn"), kit.Model("DNN small", "dnn", {"embedding_dim": 4}, first_seed_only=True)]
    lines: list[str] = []
    grid = kit.train_grid(models, kit.model_seeds(args), kit.checkpoint_trainer(data, args.cache),
                          lambda seed: kit.trainer_config(args, seed), keep_policies=True, log=lines.append)
    assert [r["seed"] for r in grid.rows["DNN"]] == [7, 8]
    assert [r["seed"] for r in grid.rows["DNN small"]] == [7]  # first seed only
    assert not any(r["cached"] for rows in grid.rows.values() for r in rows)
    assert set(grid.policies) == {("DNN", 7), ("DNN", 8), ("DNN small", 7)}
    assert len(lines) == 3 and lines[0].startswith("seed 7 DNN")
    # two model seeds give two different models
    assert grid.rows["DNN"][0]["logloss"] != grid.rows["DNN"][1]["logloss"]

    # experiments as a function of the seed; the same settings load the checkpoints
    again = kit.train_grid(lambda seed: models[:1], [7], kit.checkpoint_trainer(data, args.cache),
                           lambda seed: kit.trainer_config(args, seed), log=lambda _: None)
    (row,) = again.rows["DNN"]
    assert row["cached"]
    # the checkpoint stores the metrics computed when it was trained: the same numbers come back
    assert {k: row[k] for k in ("auc", "gauc", "logloss")} == {k: grid.rows["DNN"][0][k]
                                                               for k in ("auc", "gauc", "logloss")}


def test_ab_campaign_returns_the_report(tmp_path):
    from simab.reports.report import Report

    args = _args(tmp_path, "--seed", "5")
    c = kit.ab_campaign(args, "kit_ab", TINY, ("random", {}), ("popularity", {}), shards=2)
    assert isinstance(c.report, Report)
    assert c.run_dir == tmp_path / "kit_ab"
    assert c.exposures > 0 and c.seconds > 0
    assert c.report.seed == 5 and c.report.control == "control"
    on_disk = json.loads((c.run_dir / "report.json").read_text())
    assert on_disk["arms"]["control"]["policy"] == "random"
    assert on_disk["arms"]["treatment"]["policy"] == "popularity"
    keys = ("rel_lift", "rel_ci", "p_value_adjusted", "control_value", "treatment_value")
    fields = kit.comparison_fields(c.report, "ctr", keys)
    expected = {k: on_disk["metrics"]["ctr"]["comparisons"]["treatment_vs_control"][k] for k in keys}
    # report.json is the same dict serialised; floats survive a JSON round trip up to repr, so
    # approx only guards against a changed serialisation, not a different computation
    assert fields.pop("rel_ci") == pytest.approx(expected.pop("rel_ci"), rel=1e-15)
    assert fields == pytest.approx(expected, rel=1e-15)
    assert fields["treatment_value"] == pytest.approx(c.report.metrics["ctr"].arms["treatment"].value, rel=1e-12)


def test_page_writer_and_notes(tmp_path):
    out = tmp_path / "pages"
    page = kit.write_page(out, "x", {"a": [1.5, math.inf]}, "# X\n", indent=1)
    assert page == out / "x.md" and page.read_text() == "# X\n"
    assert json.loads((out / "x.json").read_text()) == {"a": [1.5, math.inf]}

    # marker notes: an empty block on a new page, the hand-written block kept on regeneration
    fresh = kit.keep_notes(out / "x.md", "# X\n")
    assert fresh == "# X\n\n<!-- notes start -->\n(no notes yet)\n<!-- notes end -->\n"
    page.write_text("# old\n\n<!-- notes start -->\nmine\n<!-- notes end -->\n")
    assert kit.keep_notes(page, "# new\n") == "# new\n\n<!-- notes start -->\nmine\n<!-- notes end -->\n"
    # heading notes: everything from the heading on, nothing when the page has none
    page.write_text("# old\n\n## Notes\n\nmine\n")
    assert kit.keep_notes(page, "# new\n", heading="## Notes") == "# new\n\n## Notes\n\nmine\n"
    assert kit.keep_notes(out / "missing.md", "# new\n", heading="## Notes") == "# new\n"


def test_table_and_number_formatting():
    assert kit.md_table(("a", "b"), [(1, "x"), (2, "y")]) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | y |"]
    # mean 2, sample std of (1, 2, 3) = 1
    assert kit.mean_std([1.0, 2.0, 3.0]) == "2.0000 ± 1.0000"
    assert kit.mean_std([0.5], digits=2) == "0.50 ± 0.00"
    diff, spread = kit.seed_spread([1.0, 3.0], [0.0, 0.0, 3.0])
    # 2 - 1 = 1; sample stds sqrt(2) and sqrt(3): the larger is sqrt(3)
    assert diff == pytest.approx(1.0, rel=1e-12)  # means of two arrays: rounding only
    assert spread == pytest.approx(math.sqrt(3.0), rel=1e-12)
    assert kit.pct(0.0123) == "+1.23%" and kit.pct(None) == "n/a" and kit.pct(math.nan) == "n/a"
