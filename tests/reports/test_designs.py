"""Each design's estimator against a closed form on a toy market whose bias is known.

The toy (Liu et al., KDD 2021's cannibalisation, in its simplest form).  N requests arrive one
after another over a day; each shows one item: the limited item L, if the serving policy wants
it (probability q_C under control, q_T under treatment) and L still has a unit of its daily
budget B = beta * N, else an unlimited substitute S.  A shown item is clicked with probability
p_L or p_S; each click on L spends one unit.  Write D = p_L - p_S.

In the fluid limit (N large) a world in which L is wanted at rate q keeps L available for the
first tau(q) = min(1, beta / (q * p_L)) of the day, so its CTR is

    CTR(q, beta) = p_S + q * D * tau(q)                                       (1)

- global worlds (every request under one arm): CTR_C = CTR(q_C, beta), CTR_T = CTR(q_T, beta);
  GTE = CTR_T / CTR_C - 1.  When the budget binds in both, CTR = p_S + beta * D / p_L whatever
  q: the GTE is 0.
- user randomisation 50/50: the shared budget is drained at the mean rate q_bar = (q_C + q_T)/2,
  so tau = min(1, beta / (q_bar * p_L)) for both arms and CTR_a = p_S + q_a * D * tau: the
  estimate is q_T/q_C-proportional and biased away from the GTE (the cannibalisation bias).
- budget-split: each arm has half the requests and half the budget: tau_a = tau(q_a), so each
  arm's CTR is its global world's: unbiased.
- switchback with blocks much shorter than a day: the budget is drained at q_bar as under user
  randomisation, so the estimate has the user design's bias; with day-long blocks (the budget
  resets daily) each day is a global world: unbiased.
- market randomisation: each market is a whole world of one arm: unbiased.
- item side, with the items in clusters that do not interact (a request's need picks its
  cluster: a pair (L_j, S_j)), treated clusters are global-treatment worlds and control clusters
  global-control ones: unbiased.
- two-sided (Johari et al. 2022): a treated cluster serves treatment users by q_T and control
  users by q_C, drained at q_bar; the (treatment user, treated item) cell has
  CTR = p_S + q_T * D * min(1, beta / (q_bar * p_L)), the (control, control) cell
  CTR(q_C, beta): the TSR estimate is biased like user randomisation's treatment arm.

Each test draws the toy (its budget spent by expected clicks, so that the exhaustion time is the
fluid one; clicks drawn with their probabilities) and checks the estimate against the closed
form within 4 reported standard errors plus the closed form's error, and the in-experiment
truth (from the logged expected clicks) within the closed form's error alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from simab.reports import designs

P_L, P_S, Q_C, Q_T = 0.30, 0.10, 0.3, 0.7
D = P_L - P_S
N = 120_000
#: the closed forms' error in relative lift: the fluid budget's exhaustion falls within one
#: request (1/N of the day); what remains is the random order of the arms' requests, which moves
#: a pool's spend by about p_L * (q_T - q_C) / 2 * sqrt(requests) units: 0.3% of the smallest
#: pool's budget here, under 0.001 in lift; 0.003 leaves room, a seventh of the smallest bias (0.02)
FLUID = 0.003


def tau(q: float, beta: float) -> float:
    return min(1.0, beta / (q * P_L))


def ctr(q: float, beta: float) -> float:
    """Equation (1) of the module docstring."""
    return P_S + q * D * tau(q, beta)


def toy(q: np.ndarray, budget_group: np.ndarray, budget: dict, rng: np.random.Generator):
    """One day of requests in time order: ``q`` per request (the serving policy's wish for L),
    ``budget_group`` the pool each request draws on, ``budget`` units per pool.  The toy spends
    its budget by expected clicks (the fluid model: each request with L available spends
    q * p_L), so L's exhaustion time is the closed form's exactly (up to one request); each
    request is then clicked with its probability: q * p_L + (1 - q) * p_S while L is available,
    p_S after.  Returns (clicked, p_click)."""
    available = np.zeros(len(q), bool)
    for g, units in budget.items():
        idx = np.flatnonzero(budget_group == g)
        spent_before = np.cumsum(q[idx] * P_L) - q[idx] * P_L
        available[idx] = spent_before < units
    p_click = np.where(available, q * P_L + (1 - q) * P_S, P_S)
    return rng.random(len(q)) < p_click, p_click


def rows_of(clicked, p_click) -> dict:
    return designs.exposure_rows(clicked, np.zeros(len(clicked), bool), p_click, np.zeros(len(clicked)))


def check(c, inexp: float | None, expected: float) -> None:
    assert abs(c.rel_lift - expected) < 4 * c.rel_se + FLUID, (c.rel_lift, c.rel_se, expected)
    assert inexp == pytest.approx(expected, abs=FLUID)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


@pytest.mark.parametrize("beta", [0.5, 0.05])  # slack (never binds), tight (binds in every world)
def test_user_randomisation_is_biased_by_the_shared_budget(rng, beta):
    users = rng.permutation(N)  # one request per user, in arrival order
    arm = (users % 2).astype(np.int64)
    q = np.where(arm == 1, Q_T, Q_C)
    clicked, p = toy(q, np.zeros(N, np.int64), {0: beta * N}, rng)
    rows = rows_of(clicked, p)
    c = designs.one_way("ctr", users, arm, rows)
    q_bar = (Q_C + Q_T) / 2
    closed = (P_S + Q_T * D * tau(q_bar, beta)) / (P_S + Q_C * D * tau(q_bar, beta)) - 1
    gte = ctr(Q_T, beta) / ctr(Q_C, beta) - 1
    check(c, designs.expected_lift("ctr", arm, rows), closed)
    if beta == 0.5:
        assert closed == pytest.approx(gte)  # slack: no interference
    else:
        assert gte == pytest.approx(0.0) and closed == pytest.approx(2 / 9)  # tight: GTE 0; (0.1 + 0.7 * 0.2 / 3) / (0.1 + 0.3 * 0.2 / 3) - 1


def test_budget_split_is_unbiased(rng):
    beta = 0.05
    users = rng.permutation(N)
    arm = (users % 2).astype(np.int64)
    q = np.where(arm == 1, Q_T, Q_C)
    clicked, p = toy(q, arm, {0: beta * N / 2, 1: beta * N / 2}, rng)  # each arm its half of the budget
    rows = rows_of(clicked, p)
    c = designs.one_way("ctr", users, arm, rows)
    check(c, designs.expected_lift("ctr", arm, rows), ctr(Q_T, beta) / ctr(Q_C, beta) - 1)


@pytest.mark.parametrize("blocks_per_day", [48, 1])
def test_switchback_bias_falls_with_block_length(rng, blocks_per_day):
    """Blocks alternate C, T, C, ... and requests arrive evenly (the closed form's assumptions:
    random blocks and arrivals add their own noise); 50 days, the budget resets daily."""
    beta, days = 0.05, 50
    per_day = N // days  # 2,400: 50 requests per half-hour block
    t = (np.arange(per_day) + 0.5) / per_day  # arrival times within a day
    block = (np.arange(days)[:, None] * blocks_per_day + np.floor(t * blocks_per_day)[None, :]).reshape(-1)
    block = block.astype(np.int64)
    arm = block % 2
    day = np.repeat(np.arange(days), per_day)
    q = np.where(arm == 1, Q_T, Q_C)
    clicked, p = toy(q, day, {d: beta * per_day for d in range(days)}, rng)
    rows = rows_of(clicked, p)
    c = designs.one_way("ctr", block * 4 + arm, arm, rows)
    if blocks_per_day == 1:  # day-long blocks: every day is a global world
        closed = ctr(Q_T, beta) / ctr(Q_C, beta) - 1
    else:  # short blocks: drained at the mean rate, as under user randomisation
        q_bar = (Q_C + Q_T) / 2
        closed = (P_S + Q_T * D * tau(q_bar, beta)) / (P_S + Q_C * D * tau(q_bar, beta)) - 1
    check(c, designs.expected_lift("ctr", arm, rows), closed)


def test_market_randomisation_is_unbiased(rng):
    beta, markets = 0.05, 40
    market = rng.integers(0, markets, N)
    market_arm = rng.permutation(np.arange(markets) % 2)
    arm = market_arm[market]
    q = np.where(arm == 1, Q_T, Q_C)
    sizes = np.bincount(market, minlength=markets)
    clicked, p = toy(q, market, {m: beta * sizes[m] for m in range(markets)}, rng)
    rows = rows_of(clicked, p)
    c = designs.one_way("ctr", market, arm, rows)
    check(c, designs.expected_lift("ctr", arm, rows), ctr(Q_T, beta) / ctr(Q_C, beta) - 1)
    assert c.n_control + c.n_treatment == markets  # the units are the markets


def _clusters(rng, k: int):
    cluster = rng.integers(0, k, N)  # each request's need: one (L_j, S_j) pair
    cluster_arm = rng.permutation(np.arange(k) % 2)
    return cluster, cluster_arm, np.bincount(cluster, minlength=k)


def test_item_randomisation_of_non_interacting_clusters_is_unbiased(rng):
    beta, k = 0.05, 40
    cluster, cluster_arm, sizes = _clusters(rng, k)
    item_arm = cluster_arm[cluster]
    q = np.where(item_arm == 1, Q_T, Q_C)
    clicked, p = toy(q, cluster, {j: beta * sizes[j] for j in range(k)}, rng)
    rows = rows_of(clicked, p)
    c = designs.one_way("ctr", cluster, item_arm, rows)
    check(c, designs.expected_lift("ctr", item_arm, rows), ctr(Q_T, beta) / ctr(Q_C, beta) - 1)


def test_two_sided_randomisation_is_biased_in_its_treated_cell(rng):
    beta, k = 0.05, 40
    cluster, cluster_arm, sizes = _clusters(rng, k)
    users = rng.permutation(N)
    user_arm = (users % 2).astype(np.int64)
    item_arm = cluster_arm[cluster]
    q = np.where((user_arm == 1) & (item_arm == 1), Q_T, Q_C)  # treated only when both sides are
    clicked, p = toy(q, cluster, {j: beta * sizes[j] for j in range(k)}, rng)
    rows = rows_of(clicked, p)
    c = designs.two_sided("ctr", user_arm, item_arm, users, cluster, rows)
    q_bar = (Q_C + Q_T) / 2
    closed = (P_S + Q_T * D * tau(q_bar, beta)) / ctr(Q_C, beta) - 1
    cell = np.where(user_arm == item_arm, user_arm, -1)
    check(c, designs.expected_lift("ctr", cell, rows), closed)
    assert closed > ctr(Q_T, beta) / ctr(Q_C, beta) - 1 + 0.1  # biased: the GTE is 0


def test_one_way_variance_is_the_clustered_delta_method():
    """Var(R) = n/(n-1) * sum_j (y_j - R x_j)^2 / (sum_j x_j)^2 over units (module formula)."""
    rng = np.random.default_rng(1)
    units = rng.integers(0, 30, 500)
    rows = {"clicks": rng.random(500).round(), "exposures": np.ones(500)}
    arm = (units % 2).astype(np.int64)
    c = designs.one_way("ctr", units, arm, rows)
    var = 0.0
    for a in (0, 1):
        _, s = designs.unit_sums(units[arm == a], {k: v[arm == a] for k, v in rows.items()})
        y, x = s["clicks"], s["exposures"]
        R, n = y.sum() / x.sum(), len(y)
        var += n / (n - 1) * ((y - R * x) ** 2).sum() / x.sum() ** 2
    assert c.abs_se == pytest.approx(np.sqrt(var), rel=1e-9)


def test_two_way_variance_adds_the_clusterings_and_removes_their_intersection():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 25, 800), rng.integers(0, 35, 800)
    y, x = rng.random(800).round(), np.ones(800)
    est = designs.two_way_estimate("t", y, x, a, b)
    R = y.sum() / x.sum()
    e = (y - R * x) / x.sum()

    def v(g):
        ids, code = np.unique(g, return_inverse=True)
        s = np.bincount(code, weights=e)
        return len(ids) / (len(ids) - 1) * (s @ s)

    expected = v(a) + v(b) - v(a * 1000 + b)
    assert est.var == pytest.approx(expected if expected > 0 else max(v(a), v(b)), rel=1e-9)
    assert est.n == 25 and est.value == pytest.approx(R)
