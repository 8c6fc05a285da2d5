"""Marginal propensities of the logging policy's modes (simab/ope/marginal.py): exact where
a closed form exists, the Monte-Carlo estimate within its stated error of the exact sum
over orderings, and IPS unbiased when it divides by them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from simab.ope.estimators import SlateLog, TargetPolicy, estimate
from simab.ope.marginal import epsilon_marginal, plackett_luce_marginal, popularity_rank
from simab.policies.simple import LoggingPolicy
from simab.policies.world_features import feature_spec_of
from simab.simulators.spec import world_spec

from .test_ope import synthetic_requests


def _logger(**params):
    return LoggingPolicy(params, feature_spec_of(world_spec({"preset": "default"})))


def _enumerate(C: int, K: int, step) -> np.ndarray:
    """P(item at position) [C, K] by summing every ordered prefix's probability;
    ``step(taken, item)`` is the logger's probability of ``item`` after ``taken``."""
    out = np.zeros((C, K))
    for prefix in itertools.permutations(range(C), K):
        p = 1.0
        for k, a in enumerate(prefix):
            p *= step(prefix[:k], a)
            out[a, k] += p
    # each (prefix up to k) is counted once per extension: divide by the number of them
    for k in range(K):
        out[:, k] /= math.perm(C - k - 1, K - k - 1)
    return out


def _all_items(C: int, K: int) -> np.ndarray:
    """Row b asks for candidate b at every position."""
    return np.repeat(np.arange(C)[:, None], K, axis=1)


POP = np.array([0.4, 1.2, -0.3, 1.2, 0.0])  # a tie (candidates 1 and 3): argmax takes 1 first


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
def test_epsilon_marginal_is_the_sum_over_orderings(eps):
    C, K = len(POP), 3

    def step(taken, a):
        free = [c for c in range(C) if c not in taken]
        best = max(free, key=lambda c: (POP[c], -c))
        return (1 - eps) * (a == best) + eps / len(free)

    exact = _enumerate(C, K, step)
    got = epsilon_marginal(np.tile(POP, (C, 1)), _all_items(C, K), eps)
    # the same probabilities summed in another order: approx for rounding only
    assert got == pytest.approx(exact, abs=1e-12)
    # position 0 in closed form: the most popular w.p. 1 - eps, plus eps / C for everyone
    assert got[:, 0] == pytest.approx((1 - eps) * (np.arange(C) == 1) + eps / C, abs=1e-12)
    assert np.allclose(exact.sum(axis=0), 1.0)


def test_epsilon_marginal_matches_the_loggers_slate_frequencies():
    # the chain's ranking and tie rule against the logger's own code (policies/simple.py)
    C, K, B, eps = len(POP), 3, 60_000, 0.3
    rng = np.random.default_rng(4)
    pop = np.tile(POP.astype(np.float32), (B, 1))
    idx, _ = _logger(epsilon=eps).slate({"item_pop": torch.tensor(pop)}, K, rng.random((B, 2 * C)))
    marginal = epsilon_marginal(pop[:C], _all_items(C, K), eps)
    for k in range(K):
        freq = np.bincount(idx[:, k], minlength=C) / B
        sd = np.sqrt(marginal[:, k] * (1 - marginal[:, k]) / B)
        # each frequency ~ Binomial(B, p) / B: 5 sd either side
        assert np.all(np.abs(freq - marginal[:, k]) <= 5 * sd + 1e-12), (k, freq, marginal[:, k])
    assert np.array_equal(popularity_rank(POP[None, :])[0], [2, 0, 4, 1, 3])


def test_plackett_luce_marginal_agrees_with_the_sum_over_orderings_within_its_error():
    C, K, M = 6, 4, 2000
    logits = np.array([0.0, 0.5, 1.5, -1.0, 2.0, 0.3])
    w = np.exp(logits)

    def step(taken, a):
        return w[a] / (w.sum() - w[list(taken)].sum())

    exact = _enumerate(C, K, step)
    rng = np.random.default_rng(5)
    est, se = plackett_luce_marginal(np.tile(logits, (C, 1)), _all_items(C, K), rng.random((C, M * C)))
    # position 0 is the softmax share with no Monte-Carlo error (every term is w_a / W)
    assert est[:, 0] == pytest.approx(w / w.sum(), rel=1e-12) and np.all(se[:, 0] < 1e-15)
    # positions 1..3: the mean of M i.i.d. terms, within 4.5 of its standard errors (18 cells
    # tested, so a 4.5 sd bound fails by chance with probability < 1e-4); positive everywhere
    assert np.all(np.abs(est - exact)[:, 1:] <= 4.5 * se[:, 1:]), ((est - exact) / np.maximum(se, 1e-15))[:, 1:]
    assert np.all(est > 0)
    # the stated error is the size of the Monte-Carlo error: terms' sd / sqrt(M), ~< 1% here
    assert np.all(se[:, 1:] < 0.02 * exact[:, 1:])


def test_plackett_luce_marginal_of_equal_weights_is_the_uniform_one_over_c():
    # uniform logging is Plackett-Luce with equal weights: every term is exactly 1 / C
    C, K = 7, 5
    est, se = plackett_luce_marginal(np.zeros((C, C)), _all_items(C, K), np.random.default_rng(6).random((C, 64 * C)))
    assert est == pytest.approx(np.full((C, K), 1 / C), rel=1e-12)  # rounding of the products only
    assert np.all(se < 1e-12)


def test_plackett_luce_marginal_is_positive_where_a_frequency_count_is_zero():
    # a dominant item is in almost every prefix: at position 3 its marginal is ~1e-9, which no
    # sample of 100 slates would ever show; the estimate stays positive and near the exact one
    C, K, M = 5, 4, 100
    logits = np.array([8.0, 0.0, 0.0, 0.0, 0.0])
    w = np.exp(logits)
    exact = _enumerate(C, K, lambda taken, a: w[a] / (w.sum() - w[list(taken)].sum()))
    est, se = plackett_luce_marginal(logits[None, :], np.array([[0, 0, 0, 0]]), np.random.default_rng(7).random((1, M * C)))
    assert 0 < est[0, 3] and exact[0, 3] < 1e-8
    # relative error: the others are exchangeable, so every term is the same number here
    assert est[0] == pytest.approx(exact[0], rel=1e-9)


def _logged_world(rng, mode: str, users=300, C=10, K=4, M=64):
    """The item-position model of test_ope.py's synthetic world, logged by the logging
    policy in ``mode`` (epsilon-greedy or Plackett-Luce over a per-request popularity) and
    weighted by the estimated / exact marginals; returns the log, the target, the truth."""
    req_user, attraction, exam, target = synthetic_requests(rng, users, C, K)
    R = len(req_user)
    pop = (np.log(attraction) + rng.normal(0, 0.5, size=(R, C))).astype(np.float32)  # the logger's popularity
    logger = _logger(mode=mode, epsilon=0.3, temperature=1.0)
    logged, _ = logger.slate({"item_pop": torch.tensor(pop)}, K, rng.random((R, 2 * C)))
    if mode == "epsilon":
        p0 = epsilon_marginal(pop, logged, 0.3)
    else:
        p0, _ = plackett_luce_marginal(pop.astype(np.float64), logged, rng.random((R, M * C)))
    p_logged = exam * np.take_along_axis(attraction, logged, axis=1)
    clicks = (rng.random((R, K)) < p_logged).astype(float)
    truth = float((exam * np.take_along_axis(attraction, target, axis=1)).sum() / (R * K))
    n = R * K
    log = SlateLog(np.repeat(req_user, K), np.tile(np.arange(K), R), clicks.reshape(-1), p0.reshape(-1),
                   np.full(n, 0.1))
    tgt = TargetPolicy((target == logged).astype(float).reshape(-1), np.full(n, 0.1))
    return log, tgt, truth


@pytest.mark.parametrize("mode", ["epsilon", "plackett_luce"])
def test_ips_with_the_loggers_marginals_is_unbiased(mode):
    rng = np.random.default_rng(21)
    runs = 200
    z, covered = [], 0
    for _ in range(runs):
        log, tgt, truth = _logged_world(rng, mode)
        est = estimate(log, tgt, "ips")
        z.append((est.value - truth) / est.se)
        covered += est.ci[0] <= truth <= est.ci[1]
    z = np.array(z)
    # unbiased: the standardised errors average 0 within 3 standard errors of their mean
    # (under plackett_luce the 1 / p0 of a 64-draw estimate adds a bias of about its
    # squared relative error, ~1e-3 here, far inside that)
    assert abs(z.mean()) <= 3 * z.std(ddof=1) / math.sqrt(runs), (mode, z.mean())
    # coverage of a 95% interval: with the heavier weights of these loggers the normal
    # interval under-covers a little (skewed weighted sums); at least 3 binomial sd below 0.95
    assert covered / runs >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / runs), (mode, covered / runs)
