import pytest
from scipy import stats

from simab.reports.srm import srm_test


def test_balanced_split_passes():
    r = srm_test({"a": 5000, "b": 5030}, {"a": 0.5, "b": 0.5})
    assert r.ok and r.p_value == pytest.approx(stats.chisquare([5000, 5030]).pvalue)


def test_mismatch_is_flagged_with_shares_normalised():
    r = srm_test({"a": 5000, "b": 5500, "c": 10000}, {"a": 1, "b": 1, "c": 2})
    assert not r.ok and r.p_value < 0.001 and "mismatch" in r.flags[0]
    assert r.expected["c"] == pytest.approx(20500 / 2)


def test_empty_arm_counts_and_single_arm_is_not_testable():
    assert not srm_test({"a": 100}, {"a": 0.5, "b": 0.5}).ok
    r = srm_test({"a": 100}, {"a": 1.0})
    assert r.ok and r.flags
