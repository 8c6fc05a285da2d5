"""Offline metrics against brute-force derivations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simab.policies.metrics import auc, gauc, logloss


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(s+ > s-) + P(s+ = s-)/2 by counting every (positive, negative) pair."""
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60).astype(float)  # few distinct values: many ties
    assert auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)


def test_auc_known_values():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert math.isnan(auc([1, 1], [0.1, 0.2]))


def test_gauc_matches_per_user_brute_force():
    rng = np.random.default_rng(7)
    users = rng.integers(0, 8, 200)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 5, 200).astype(float)
    users[users == 3] = 3
    y[users == 3] = 1  # user 3 has a single class and must be left out
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if y[m].min() == y[m].max():
            continue
        num += m.sum() * brute_auc(y[m], s[m])
        den += m.sum()
    assert gauc(y, s, users) == pytest.approx(num / den, abs=1e-12)


def test_gauc_weights_users_by_impressions():
    # user 1: 4 rows, perfectly ranked (AUC 1); user 2: 2 rows, inverted (AUC 0)
    users = np.array([1, 1, 1, 1, 2, 2])
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.1, 0.9])
    assert gauc(y, s, users) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)


def test_gauc_nan_when_no_user_has_both_classes():
    assert math.isnan(gauc([1, 0], [0.2, 0.3], [1, 2]))


def test_logloss_formula_and_clipping():
    y, p = np.array([1, 0]), np.array([0.8, 0.4])
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert logloss(y, p) == pytest.approx(expected)
    # a certain mistake is clipped at eps = 1e-7, so it costs -log(1e-7)
    assert logloss([1], [0.0]) == pytest.approx(-math.log(1e-7))
