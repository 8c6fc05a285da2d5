"""docs/results/real_experiments.md is the script's render of the JSON beside it, and the
JSON's Cookie Cats figures are what ``simab analyze`` computes from the data now."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "scripts"))


def _script():
    spec = importlib.util.spec_from_file_location("real_experiments", ROOT / "scripts" / "real_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary() -> dict:
    return json.loads((ROOT / "docs" / "results" / "real_experiments.json").read_text())


def test_page_is_the_render_of_its_json():
    page = (ROOT / "docs" / "results" / "real_experiments.md").read_text()
    assert page == _script().render(_summary())


@pytest.mark.skipif(not (DATA / "cookie_cats.parquet").exists(), reason=f"no shared data at {DATA}")
def test_recorded_cookie_cats_figures_are_current():
    """Recomputed from the data (a few seconds): a change to the statistics that moves a
    recorded number must regenerate the page."""
    fresh = _script().cookie_cats(DATA)
    recorded = _summary()["cookie_cats"]
    for metric, m in recorded["metrics"].items():
        now = fresh["metrics"][metric]
        for key, c in m["comparisons"].items():
            for field in ("rel_lift", "p_value"):
                assert now["comparisons"][key][field] == pytest.approx(c[field], rel=1e-9), (metric, field)
        assert now["values"] == pytest.approx(m["values"], rel=1e-12)
