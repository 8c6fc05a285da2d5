"""Sequential tests over daily looks, every parameter fixed before the data.

**mSPRT (always valid).**  For an asymptotically normal estimate θ̂_n with variance V_n at
look n, the normal-mixture SPRT with mixing distribution N(0, τ²) has likelihood ratio

    Λ_n = √(V_n / (V_n + τ²)) · exp(τ² θ̂_n² / (2 V_n (V_n + τ²)))

(Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B Tests", KDD, eq. 6; Robbins 1970).
The always-valid p-value is p_n = min(1, min_{m≤n} 1/Λ_m) and the confidence sequence is
the running intersection of θ̂_m ± √(V_m (V_m+τ²)/τ² · (2 log(1/α) + log((V_m+τ²)/V_m)))
(Howard, Ramdas, McAuliffe & Sekhon 2021, Ann. Statist., eq. 14).  τ is set from the
campaign spec (``sequential_mde``: the relative lift the test is tuned to; τ = log(1 + mde)
on the log-ratio scale), never from the data, so the p at look k uses only looks 1..k.

**Group sequential (O'Brien-Fleming spending).**  K planned looks (one per campaign day) at
information fractions t_k = k/K; the Lan-DeMets (1983) O'Brien-Fleming-type spending
function α(t) = 2 - 2Φ(z_{1-α/2}/√t) spends α(t_k) - α(t_{k-1}) at look k, and the
boundaries c_k on |Z_k| follow from the joint law of Z_k = B(t_k)/√t_k for a Brownian
motion B (Jennison & Turnbull 2000, ch. 7), computed by recursive numerical integration of
the sub-density of paths that have not crossed (Armitage, McPherson & Rowe 1969).  The test
rejects at the first look with |Z_k| ≥ c_k.  The fractions are calendar fractions of the
planned looks, fixed before data.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class SequentialLook:
    """One daily look: the cumulative estimate and the always-valid quantities so far."""

    day: int
    estimate: float
    se: float
    p_value: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class SequentialResult:
    """mSPRT over all looks; ``p_value``/``ci`` are those at the last look."""

    p_value: float
    ci: tuple[float, float]
    tau2: float
    looks: tuple[SequentialLook, ...]


def _width_factor(r: float, alpha: float) -> float:
    return (1 + r) / r * (2 * math.log(1 / alpha) + math.log1p(r))


def optimal_mixing_ratio(alpha: float) -> float:
    """r* = τ²/V that minimises the confidence-sequence half-width at variance V (a planning
    aid: with V the variance planned for the horizon, τ² = r*·V)."""
    res = optimize.minimize_scalar(
        lambda lr: _width_factor(math.exp(lr), alpha), bounds=(-10, 10), method="bounded"
    )
    return math.exp(res.x)


def msprt(
    days: Sequence[int],
    estimates: Sequence[float],
    ses: Sequence[float],
    alpha: float = 0.05,
    null: float = 0.0,
    *,
    tau2: float,
) -> SequentialResult | None:
    """Always-valid p-value and confidence sequence of θ over looks (formulas: module doc).

    ``tau2`` is the mixing variance, fixed before the data.  Looks with an undefined or zero
    standard error are skipped (no information yet); returns None when no look is usable."""
    if not tau2 > 0:
        raise ValueError(f"tau2 must be positive, got {tau2!r}")
    usable = [
        (d, e, s)
        for d, e, s in zip(days, estimates, ses, strict=True)
        if e == e and s == s and s > 0 and math.isfinite(s)
    ]
    if not usable:
        return None
    p_running, lo_running, hi_running = 1.0, -math.inf, math.inf
    looks = []
    for day, est, se in usable:
        v = se**2
        log_lambda = 0.5 * math.log(v / (v + tau2)) + tau2 * (est - null) ** 2 / (
            2 * v * (v + tau2)
        )
        p_running = min(p_running, math.exp(-log_lambda) if log_lambda > 0 else 1.0)
        half = math.sqrt(
            v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v))
        )
        lo_running, hi_running = max(lo_running, est - half), min(hi_running, est + half)
        looks.append(SequentialLook(int(day), est, se, p_running, (lo_running, hi_running)))
    return SequentialResult(p_running, (lo_running, hi_running), tau2, tuple(looks))


def obf_spent(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type alpha spent by information fraction t (two-sided)."""
    if t <= 0:
        return 0.0
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(min(t, 1.0))))


def obf_boundaries(fractions: Sequence[float], alpha: float = 0.05, grid: int = 1201) -> list[float]:
    """Two-sided boundaries c_k on |Z_k| at increasing information ``fractions`` (module doc)."""
    return list(_obf_boundaries(tuple(float(f) for f in fractions), float(alpha), int(grid)))


@functools.lru_cache(maxsize=256)
def _obf_boundaries(fractions: tuple[float, ...], alpha: float, grid: int) -> tuple[float, ...]:
    t = np.asarray(fractions, dtype=float)
    if t.size == 0 or np.any(np.diff(t) <= 0) or t[0] <= 0 or t[-1] > 1 + 1e-12:
        raise ValueError(f"fractions must increase within (0, 1], got {list(fractions)}")
    out: list[float] = []
    x = np.zeros(1)  # B-value grid of the paths still inside, with their sub-density weights
    w = np.ones(1)
    t_prev, spent_prev = 0.0, 0.0
    for tk in t:
        s = math.sqrt(tk - t_prev)
        target = obf_spent(tk, alpha) - spent_prev

        def excess(b: float, w=w, x=x, s=s, target=target) -> float:
            return float(np.sum(w * (stats.norm.cdf((-b - x) / s) + stats.norm.sf((b - x) / s)))) - target

        hi = 12.0 * math.sqrt(tk)
        b = hi if excess(hi) > 0 else optimize.brentq(excess, 1e-9, hi, xtol=1e-12)
        out.append(b / math.sqrt(tk))
        y = np.linspace(-b, b, grid)
        dy = y[1] - y[0]
        u = (y[:, None] - x[None, :]) / s
        dens = (np.exp(-0.5 * u * u) @ w) / (s * math.sqrt(2 * math.pi))
        weights = dens * dy
        weights[[0, -1]] *= 0.5  # trapezoid rule
        x, w = y, weights
        t_prev, spent_prev = tk, spent_prev + target
    return tuple(out)


@dataclass(frozen=True)
class GroupSequentialLook:
    day: int
    fraction: float
    z: float
    boundary: float
    crossed: bool


@dataclass(frozen=True)
class GroupSequentialResult:
    """O'Brien-Fleming group-sequential test; ``rejected_day`` is the first look that crossed."""

    planned_looks: int
    rejected: bool
    rejected_day: int | None
    looks: tuple[GroupSequentialLook, ...]


def group_sequential(
    days: Sequence[int], p_values: Sequence[float], estimates: Sequence[float], planned_looks: int,
    alpha: float = 0.05,
) -> GroupSequentialResult | None:
    """The O'Brien-Fleming test over daily looks: look at day index d has fraction
    (d + 1)/``planned_looks``; Z_k is the look's two-sided p turned into a normal score
    (signed by the estimate), so a small-sample t reference carries over.  Looks past the
    plan or with an undefined p are skipped; None when none is usable."""
    usable = [(int(d), p, e) for d, p, e in zip(days, p_values, estimates, strict=True)
              if p == p and e == e and 0 <= d < planned_looks]
    if not usable or planned_looks < 1:
        return None
    fractions = [(d + 1) / planned_looks for d, _, _ in usable]
    bounds = obf_boundaries(fractions, alpha)
    looks, rejected_day = [], None
    for (d, p, e), f, c in zip(usable, fractions, bounds, strict=True):
        z = float(stats.norm.isf(max(p, 1e-300) / 2)) * (1.0 if e >= 0 else -1.0)
        crossed = abs(z) >= c
        if crossed and rejected_day is None:
            rejected_day = d
        looks.append(GroupSequentialLook(d, f, z, c, crossed))
    return GroupSequentialResult(planned_looks, rejected_day is not None, rejected_day, tuple(looks))
