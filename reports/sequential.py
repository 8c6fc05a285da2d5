"""Always-valid p-values and confidence sequences over daily looks (mixture SPRT).

For an asymptotically normal estimate θ̂_n with variance V_n at look n, the normal-mixture
SPRT with mixing distribution N(0, τ²) has likelihood ratio

    Λ_n = √(V_n / (V_n + τ²)) · exp(τ² θ̂_n² / (2 V_n (V_n + τ²)))

(Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B Tests", KDD, eq. 6; Robbins 1970).
The always-valid p-value is p_n = min(1, min_{m≤n} 1/Λ_m) and the confidence sequence is
the running intersection of θ̂_m ± √(V_m (V_m+τ²)/τ² · (2 log(1/α) + log((V_m+τ²)/V_m)))
(Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist., eq. 14).

τ² is tuned so the sequence is tightest at the planned horizon: the half-width at variance
V is √(V·g(r)) with r = τ²/V, so τ² = r*·V_final with r* = argmin g — a choice that depends
on the planned sample size only, never on the observed effect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import optimize


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
    """r* = τ²/V that minimises the confidence-sequence half-width at variance V."""
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
) -> SequentialResult | None:
    """Always-valid p-value and confidence sequence of θ over looks (formulas: module doc).

    Looks with an undefined or zero standard error are skipped (no information yet);
    returns None when no look is usable.
    """
    usable = [
        (d, e, s)
        for d, e, s in zip(days, estimates, ses, strict=True)
        if e == e and s == s and s > 0 and math.isfinite(s)
    ]
    if not usable:
        return None
    tau2 = optimal_mixing_ratio(alpha) * usable[-1][2] ** 2
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
