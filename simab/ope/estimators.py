"""Off-policy estimators for slates under the item-position model, with user-clustered
delta-method confidence intervals.

Model (Li et al. 2018, "Offline Evaluation of Ranking Policies with Click Models", the
"item-position model"; also the position-based model of Craswell et al. 2008): the reward
``r`` of the item ``a`` shown at position ``k`` of request ``x`` depends on ``(x, a, k)``
only, not on the rest of the slate.  The value of a policy ``pi`` per exposure is then

    V(pi) = sum_j sum_k E_{a ~ pi(. at k | x_j)} q(x_j, a, k)  /  N,     N = sum_j K_j,

and only the *marginal* propensity ``p0(a at k | x)`` of the logging policy is needed.
Every estimator below is a function of per-user totals (users are the independent units;
the rows of one user are not), written over the rows of the log: one row per logged
exposure (request j, position k) with the logged item ``a_jk``, its reward ``r_jk``,
``p0_jk = p0(a_jk at k | x_j)``, the target's probability ``pe_jk = pi(a_jk at k | x_j)``
(0 or 1 for a deterministic ranking) and ``w_jk = pe_jk / p0_jk``:

- IPS (item-position IPS, Li et al. 2018 eq. 7):  sum w r / N
- SNIPS (self-normalised per position; Swaminathan & Joachims 2015):
  sum_k (n_k / N) * (sum_j w_jk r_jk) / (sum_j w_jk)
- DM (direct method): sum_jk qhat(x_j, pi's item at k, k) / N
- DR (doubly robust; Dudik et al. 2011, per position as in Kiyohara et al. 2022):
  sum_jk [qhat(x_j, pi's item at k, k) + w_jk (r_jk - qhat(x_j, a_jk, k))] / N

Confidence intervals: each estimate is a smooth function f of the means over users of a
vector of per-user totals z_u; Var f ~ grad f' Cov(z) grad f / U (the delta method with
the user as the cluster), and the interval is f +- z_{1 - alpha/2} se.  The moments of z and
the linearised variance are the campaign report's (``simab.reports.moments``,
``simab.reports.estimates.variance_form``), the interval its ``t_interval`` with infinite
degrees of freedom.  A lift between two
policies evaluated on the same log is a function of both policies' totals, so its interval
accounts for their correlation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simab.reports.comparison import t_interval
from simab.reports.estimates import variance_form
from simab.reports.moments import Moments

ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass(frozen=True)
class SlateLog:
    """The logged exposures one metric is evaluated on (one row per exposure)."""

    user: np.ndarray  # [N] the cluster (randomisation unit) of each row
    position: np.ndarray  # [N] 0-based position
    reward: np.ndarray  # [N] clicked / converted as 0/1
    propensity: np.ndarray  # [N] marginal P0(logged item at its position | request)
    q_logged: np.ndarray  # [N] reward model at (request, logged item, position)


@dataclass(frozen=True)
class TargetPolicy:
    """What a target policy does on the logged requests, row by row."""

    prob: np.ndarray  # [N] pi(logged item at its position | request): 1/0 for a deterministic ranking
    q_target: np.ndarray  # [N] E_{a ~ pi(. at k)} qhat(request, a, k) at the row's (request, position)


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class _Stats:
    """Per-user totals ``z`` [U, m] and a function of their means with its gradient."""

    z: np.ndarray
    f: object  # callable(mean [m]) -> (value, grad [m])


def _per_user(user: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per-user sums of the columns ``cols`` [N, m] (users in increasing id)."""
    _, inv = np.unique(user, return_inverse=True)
    out = np.zeros((int(inv.max()) + 1 if len(inv) else 0, cols.shape[1]))
    np.add.at(out, inv, cols)
    return out


def _ratio(mean: np.ndarray) -> tuple[float, np.ndarray]:
    a, n = mean
    return a / n, np.array([1.0 / n, -a / n**2])


def _stats(log: SlateLog, target: TargetPolicy, estimator: str) -> _Stats:
    w = target.prob / log.propensity
    ones = np.ones_like(log.reward, dtype=np.float64)
    if estimator == "ips":
        return _Stats(_per_user(log.user, np.column_stack([w * log.reward, ones])), _ratio)
    if estimator == "dm":
        return _Stats(_per_user(log.user, np.column_stack([target.q_target, ones])), _ratio)
    if estimator == "dr":
        a = target.q_target + w * (log.reward - log.q_logged)
        return _Stats(_per_user(log.user, np.column_stack([a, ones])), _ratio)
    if estimator == "snips":
        positions = np.unique(log.position)
        onehot = (log.position[:, None] == positions[None, :]).astype(np.float64)
        cols = np.column_stack([onehot * (w * log.reward)[:, None], onehot * w[:, None], onehot])
        P = len(positions)

        def f(mean: np.ndarray) -> tuple[float, np.ndarray]:
            s, wk, n = mean[:P], mean[P:2 * P], mean[2 * P:]
            N = n.sum()
            safe = np.where(wk > 0, wk, 1.0)  # a position the target never matched contributes 0
            term = np.where(wk > 0, s / safe, 0.0)
            value = float((n * term).sum() / N)
            grad = np.concatenate([np.where(wk > 0, n / (N * safe), 0.0),
                                   np.where(wk > 0, -n * s / (N * safe**2), 0.0),
                                   term / N - value / N])
            return value, grad

        return _Stats(_per_user(log.user, cols), f)
    raise ValueError(f"unknown estimator {estimator!r}; one of {ESTIMATORS}")


def _interval(value: float, grad: np.ndarray, z: np.ndarray, alpha: float) -> Estimate:
    """``value`` with its delta-method standard error over the users' totals ``z`` [U, m]
    (reports' moments and linearised variance: the campaign report's code) and the normal
    interval (the t interval with infinite df)."""
    m = Moments.from_columns({f"z{j}": z[:, j] for j in range(z.shape[1])})
    se = math.sqrt(variance_form(grad, m.cov_matrix()) / m.n) if m.n else math.nan
    ci, _ = t_interval(float(value), se, math.inf, alpha)
    return Estimate(float(value), se, ci)


def estimate(log: SlateLog, target: TargetPolicy, estimator: str, alpha: float = 0.05) -> Estimate:
    """The per-exposure value of ``target`` (e.g. CTR for click rewards) by ``estimator``
    (``ips``, ``snips``, ``dm``, ``dr``: module docstring), with a delta-method interval
    clustered by user."""
    st = _stats(log, target, estimator)
    value, grad = st.f(st.z.mean(axis=0))
    return _interval(value, grad, st.z, alpha)


def lift(log: SlateLog, control: TargetPolicy, treatment: TargetPolicy, estimator: str,
         alpha: float = 0.05) -> tuple[Estimate, Estimate]:
    """Absolute (treatment - control) and relative (treatment / control - 1) lift of two
    policies evaluated on the same log, with paired delta-method intervals (the relative
    one NaN when the control's estimate is 0)."""
    sc, stt = _stats(log, control, estimator), _stats(log, treatment, estimator)
    m = sc.z.shape[1]
    z = np.column_stack([sc.z, stt.z])
    mean = z.mean(axis=0)
    vc, gc = sc.f(mean[:m])
    vt, gt = stt.f(mean[m:])
    absolute = _interval(vt - vc, np.concatenate([-gc, gt]), z, alpha)
    if vc == 0:  # no control reward matched: the relative lift is undefined
        return absolute, Estimate(math.nan, math.nan, (math.nan, math.nan))
    relative = _interval(vt / vc - 1.0, np.concatenate([-vt * gc / vc**2, gt / vc]), z, alpha)
    return absolute, relative


def fit_reward_model(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Logistic regression of ``y`` (0/1) on the design ``x`` [N, m] by Newton's method
    with a small ridge penalty (keeps a column that never sees a positive finite);
    returns the coefficients."""
    beta = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (y - p) - ridge * beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def predict(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The reward model's probabilities for the design ``x``."""
    return 1.0 / (1.0 + np.exp(-(x @ beta)))
