"""Sample ratio mismatch: are users split across arms as the allocation says?

Without ramps the expected users of each arm are N·share/Σshare.  With ramps an arm's
share grows over time and a unit that enters late has less time left to be seen (a user
counts once exposed), so the final or the first shares are both wrong.  The allocation
gives every unit an *entry cohort*: the day its bucket range opened (``run.json``
``allocation.blocks``, the bucket of each unit in ``assignments``).  Units of one cohort
entered at the same time, so within a cohort the users seen per arm are proportional to
the arms' bucket widths whatever the traffic pattern; the test is the sum over cohorts of
Pearson's χ² within each cohort, with df = Σ(arms in the cohort - 1) (a stratified
goodness-of-fit test).  A cohort in which only one arm enrolled carries no information on
the split and is left out (said in the flags).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from simab.reports import messages

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class Cohort:
    """Units that entered on ``opens_day``: users seen per arm and each arm's bucket width."""

    opens_day: float
    observed: dict[str, int]
    widths: dict[str, int]


@dataclass(frozen=True)
class SrmResult:
    """Pearson chi-square goodness of fit of user counts to the allocation."""

    p_value: float
    ok: bool
    chi2: float
    observed: dict[str, int]
    expected: dict[str, float]
    flags: tuple[str, ...] = ()
    df: int = 0
    method: str = "shares"
    cohorts: tuple[Cohort, ...] = field(default_factory=tuple)


def _verdict(chi2: float, df: int) -> tuple[float, tuple[str, ...]]:
    p = float(stats.chi2.sf(chi2, df))
    return p, ((messages.SRM_FLAGGED.format(p=p),) if p < SRM_THRESHOLD else ())


def srm_test(users: Mapping[str, int], shares: Mapping[str, float]) -> SrmResult:
    """χ² = Σ (O - E)² / E with E = N·share / Σshare, df = arms - 1 (Pearson 1900).

    Flagged at p < 0.001, the threshold of Fabijan et al. (2019), "Diagnosing Sample
    Ratio Mismatch in Online Controlled Experiments", KDD.  Arms with share 0 are left out.
    """
    arms = [a for a in shares if shares[a] > 0]
    observed = {a: int(users.get(a, 0)) for a in shares}
    total_share = sum(shares[a] for a in arms)
    n = sum(observed[a] for a in arms)
    expected = {a: n * shares[a] / total_share if total_share else 0.0 for a in shares}
    if len(arms) < 2 or n == 0:
        return SrmResult(1.0, True, 0.0, observed, expected, (messages.SRM_NOT_TESTABLE,))
    o = np.array([observed[a] for a in arms], dtype=float)
    e = np.array([expected[a] for a in arms])
    chi2 = float(((o - e) ** 2 / e).sum())
    p, flags = _verdict(chi2, len(arms) - 1)
    return SrmResult(p, p >= SRM_THRESHOLD, chi2, observed, expected, flags, len(arms) - 1)


def cohorts_of(buckets: np.ndarray, arms: Sequence[str], blocks: Sequence[dict]) -> np.ndarray:
    """The opening day of each unit's bucket range (NaN outside every block)."""
    buckets = np.asarray(buckets)
    day = np.full(buckets.shape, np.nan)
    for b in blocks:
        inside = (buckets >= b["first_bucket"]) & (buckets < b["first_bucket"] + b["buckets"])
        day[inside] = b["opens_day"]
    return day


def cohort_counts(arm: Sequence[str], opens_day: np.ndarray, blocks: Sequence[dict]) -> list[Cohort]:
    """Users seen per (cohort, arm) and each cohort's bucket widths, cohorts in time order."""
    arm = np.asarray(arm)
    out = []
    for day in sorted({float(b["opens_day"]) for b in blocks}):
        widths: dict[str, int] = {}
        for b in blocks:
            if float(b["opens_day"]) == day:
                widths[b["arm"]] = widths.get(b["arm"], 0) + int(b["buckets"])
        in_cohort = opens_day == day
        observed = {a: int(np.sum(in_cohort & (arm == a))) for a in widths}
        out.append(Cohort(day, observed, widths))
    return out


def srm_test_cohorts(cohorts: Sequence[Cohort], arms: Sequence[str]) -> SrmResult:
    """Stratified χ² over entry cohorts (module doc): the sum of each cohort's Pearson χ²
    against its arms' bucket widths, df = Σ(arms in the cohort - 1)."""
    chi2, df = 0.0, 0
    observed = {a: 0 for a in arms}
    expected = {a: 0.0 for a in arms}
    for c in cohorts:
        n = sum(c.observed.values())
        total = sum(c.widths.values())
        for a in c.widths:
            observed[a] += c.observed[a]
            if len(c.widths) < 2:  # one arm: nothing to compare, expected = observed
                expected[a] += c.observed[a]
                continue
            e = n * c.widths[a] / total
            expected[a] += e
            if e > 0:
                chi2 += (c.observed[a] - e) ** 2 / e
        if len(c.widths) >= 2 and n > 0:
            df += len(c.widths) - 1
    if df == 0:
        return SrmResult(1.0, True, 0.0, observed, expected, (messages.SRM_NOT_TESTABLE,), 0,
                         "entry cohorts", tuple(cohorts))
    p, flags = _verdict(chi2, df)
    if any(len(c.widths) < 2 and sum(c.observed.values()) for c in cohorts):
        flags = (*flags, messages.SRM_SINGLE_ARM_COHORT)
    return SrmResult(p, p >= SRM_THRESHOLD, chi2, observed, expected, flags, df, "entry cohorts", tuple(cohorts))
