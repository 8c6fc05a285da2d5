"""The reproduction scripts still render the recorded results pages: each page under
docs/results is its script's ``render`` of the JSON next to it, followed only by the
hand-written notes the script keeps (the output format is a contract of the scripts)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"reproduce_{name}", ROOT / "scripts" / f"reproduce_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# SSIM's pre-#19 pages (ssim, ssim_nospecific) were removed in issue #30: docs/results/dose_ssim.md
@pytest.mark.parametrize("script, stem", [("amen", "amen"), ("lcn", "lcn")])
def test_recorded_page_is_the_render_of_its_json(script, stem):
    module = _script(script)
    summary = json.loads((ROOT / "docs" / "results" / f"{stem}.json").read_text())
    page = (ROOT / "docs" / "results" / f"{stem}.md").read_text()
    text = module.render(summary) if script == "lcn" else module.render(summary, argparse.Namespace())
    assert page.startswith(text)
    rest = page[len(text):]
    # what follows is the hand-written notes
    assert rest.lstrip("\n").startswith(("<!-- notes start -->", "## Notes"))
