"""Every page under docs/results is a script's render of the JSON next to it, followed only
by the hand-written notes the script keeps; a page no test renders is a page that can go stale
unnoticed, so each one must belong to a family a test checks.

(The pre-#19 reproduction pages amen.md, lcn.md, ssim.md and ssim_nospecific.md were removed in
issue #30; scripts/reproduce_*.py write them again when run.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
sys.path.insert(0, str(ROOT / "scripts"))

import dose_response as dose  # noqa: E402
import experiment_kit as kit  # noqa: E402

#: page stem (or prefix) -> the test that checks it is its JSON's render
CHECKED = {"dose_": "tests/scripts/test_dose_response.py", "gate_": "this file",
           "interference": "tests/scripts/test_interference.py",
           "offline_online": "tests/scripts/test_offline_online.py",
           "real_experiments": "tests/scripts/test_real_experiments_page.py"}


def test_every_recorded_page_has_its_json_and_a_render_check():
    pages = sorted(p for p in RESULTS.rglob("*.md") if p.name != "README.md")  # subfolders too (preset/)
    assert pages
    for page in pages:
        assert page.with_suffix(".json").exists(), f"{page.name} has no JSON beside it"
        assert any(page.stem == k or (k.endswith("_") and page.stem.startswith(k)) for k in CHECKED), \
            f"{page.name}: no test checks that it is its script's render"


@pytest.mark.parametrize("stem", sorted(str(p.relative_to(RESULTS).with_suffix("")) for p in RESULTS.rglob("gate_*.json")))
def test_recorded_gate_page_is_the_render_of_its_json(stem):
    report = json.loads((RESULTS / f"{stem}.json").read_text())
    page = (RESULTS / f"{stem}.md").read_text()
    text = dose.render_gate(report)
    assert page.startswith(text)
    assert page[len(text):].lstrip("\n").startswith(kit.NOTES_START)  # only the kept notes follow
