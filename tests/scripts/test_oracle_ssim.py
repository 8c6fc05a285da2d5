"""scripts/oracle_ssim.py (SSIM's gate, issue #30 item 1): no information without the
segment, and an oracle that shares the segment's rows beats both the data-starved
scenario's own rows and random rows of the other scenarios once the segment is there."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import dose_response as dose  # noqa: E402
import experiment_kit as kit  # noqa: E402
import oracle_ssim  # noqa: E402

USERS = 500


def _world(value: float, cache: Path) -> kit.WorldData:
    return kit.load_world(dose.world_table(dose.SEEDS["ssim"], USERS, value), 7, cache)


@pytest.mark.slow
def test_oracle_gain_is_zero_without_the_segment_and_positive_with_it(tmp_path):
    off = oracle_ssim.oracle_gain(_world(0.0, tmp_path))
    # nothing to share: the oracle's tower is fitted on exactly the base's rows (not a tolerance)
    assert off["shared_rows"] == 0 and off["gain"] == 0.0 and off["gain_random"] == 0.0
    data = _world(0.8, tmp_path)
    on = oracle_ssim.oracle_gain(data)
    assert on["shared_rows"] > 10 * on["own_rows"]  # s3 is 4% of traffic, the segment ~80% of the rest
    # The segment's rows follow s3's tables exactly, so the oracle's tower estimates them from
    # ~20x the rows; random rows follow s1/s2's own independent tables (noise for s3).  Bounds:
    # the gain must be positive and random sharing must be worse than the oracle's.
    assert on["gain"] > 0.0, on
    assert on["gain"] > on["gain_random"], on
    # shareable_rows marks exactly the segment's users (what the probe of dose_response reads)
    seg = oracle_ssim.shareable_rows(data.world, data.train)
    assert seg.dtype == bool and 0.6 < seg.mean() < 0.95
    prof = oracle_ssim._profile(data.world, data.train.user)
    np.testing.assert_array_equal(seg, data.world.oracle.in_segment(prof))
