"""Sample ratio mismatch: are users split across arms as the allocation says?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from simab.reports import messages

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SrmResult:
    """Pearson chi-square goodness of fit of user counts to the allocation shares."""

    p_value: float
    ok: bool
    chi2: float
    observed: dict[str, int]
    expected: dict[str, float]
    flags: tuple[str, ...] = ()


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
    chi2, p = stats.chisquare(
        np.array([observed[a] for a in arms], dtype=float),
        np.array([expected[a] for a in arms]),
    )
    p = float(p)
    flags = (messages.SRM_FLAGGED.format(p=p),) if p < SRM_THRESHOLD else ()
    return SrmResult(p, p >= SRM_THRESHOLD, float(chi2), observed, expected, flags)
