"""scripts/ssim_selection.py finds the page's SSIM checkpoints in a cache that also holds SSIMs
of other settings (an earlier ratio grid on the same rows and seed): by their parameters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import ssim_selection  # noqa: E402


def _entry(cache: Path, name: str, params: dict, seed: int = 7, selection: str = "learned") -> Path:
    d = cache / name
    d.mkdir(parents=True)
    table = pa.table({"shared": [True, False]}).replace_schema_metadata(
        {"selection": selection, "seed": str(seed), "fingerprint": "fp"})
    pq.write_table(table, d / "shared_instances.parquet")
    (d / "cache_key.json").write_text(json.dumps({"params": params}))
    return d


def test_only_the_pages_settings_are_found(tmp_path):
    new = _entry(tmp_path, "a", {"ratio_grid": [0.0, 0.1, 0.8], "kl_weight": 0.003, "embedding_dim": 8})
    _entry(tmp_path, "b", {"ratio_grid": [0.1, 0.8], "kl_weight": 0.003, "embedding_dim": 8})  # the earlier grid
    _entry(tmp_path, "c", {"ratio_grid": [0.0, 0.1, 0.8], "kl_weight": 0.003}, selection="random")
    want = {"ratio_grid": [0.0, 0.1, 0.8], "kl_weight": 0.003}
    assert ssim_selection.checkpoints(tmp_path, want) == {("fp", 7): new}
    _entry(tmp_path, "d", {"ratio_grid": [0.0, 0.1, 0.8], "kl_weight": 0.003, "embedding_dim": 16})
    with pytest.raises(SystemExit, match="several cached SSIM checkpoints"):
        ssim_selection.checkpoints(tmp_path, want)


def test_a_parameter_the_page_leaves_at_its_default_must_match_too(tmp_path):
    # the cache of the ssim-backbones study holds SSIMs of other backbones on the same rows with
    # the page row's explicit parameters; only the one at the default backbone is the page's
    from simab.policies.ssim import SSIM

    base = {**SSIM.DEFAULTS, "ratio_grid": [0.0, 0.1, 0.8], "kl_weight": 0.003, "embedding_dim": 8}
    dnn = _entry(tmp_path, "a", dict(base))
    _entry(tmp_path, "b", {**base, "backbone": "dcn"})
    assert ssim_selection.checkpoints(tmp_path, base) == {("fp", 7): dnn}
