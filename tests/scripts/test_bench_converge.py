"""scripts/bench_converge.py: its world overrides and its one-line errors (the timing itself is a
benchmark, recorded in docs/benchmarks.md, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_converge as bench  # noqa: E402

from simab.errors import SimabError  # noqa: E402


def test_override_sets_a_nested_key_and_parses_json_values():
    table = {"preset": "lifelong", "lifelong": {"item_affinity": 0.8}}
    bench.override(table, "lifelong.source_length=2000")
    bench.override(table, "interest.n_dormant=1")
    bench.override(table, "topic_level=parent")  # not JSON: kept as text
    assert table == {"preset": "lifelong", "lifelong": {"item_affinity": 0.8, "source_length": 2000},
                     "interest": {"n_dormant": 1}, "topic_level": "parent"}


@pytest.mark.parametrize("item", ["lifelong.source_length", "=3"])
def test_override_without_a_key_or_a_value_is_a_user_error(item):
    with pytest.raises(SimabError, match="--world"):
        bench.override({}, item)


def test_an_unknown_model_label_exits_2_with_one_line(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_converge.py"), "lcn", "--model", "DIN",
                          "--value", "0", "--json", str(tmp_path / "x.json")], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("error: --model: DIN: not a model of lcn")
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()
