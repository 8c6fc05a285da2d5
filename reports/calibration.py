"""Calibration figures from a sweep's rows: false-positive rates, p-value uniformity,
coverage, bias, power, peeking and exposure-level (naive) analysis.

Every rate comes with its Clopper-Pearson (1934) exact 95 % binomial interval; p-value
uniformity under A/A is the one-sample Kolmogorov-Smirnov test against U(0, 1).

The A/A pass rule (:func:`aa_verdict`) has three parts, each at level 1 %: an exact
two-sided binomial test of the false-positive rate against alpha, an equivalence margin (the
rate within [3.5 %, 6.5 %] for alpha = 5 %: the CI rule "5 % inside the 95 % CI" accepted
any rate from 3.0 % to 7.25 % at 400 runs), and the KS test of the p-values.  The margin
is meant for 1,000 runs, where a calibrated test's rate has sd 0.69 points (the margin is
±2.2 sd); fewer runs are not judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from simab.reports.metric_registry import REGISTRY, USER_METRIC_NAMES

# calibrated metrics: the per-user ones (latency is measured time, not simulated)
USER_METRICS = USER_METRIC_NAMES
# metric -> (numerator, denominator) of the per-arm counts in a row: exposure-level
# (naive) analysis treats every denominator event as an independent Bernoulli trial
NAIVE_COUNTS = {n: (m.num, m.den) for n, m in REGISTRY.items() if m.is_ratio}


@dataclass(frozen=True)
class Rate:
    """k of n with its Clopper-Pearson interval at ``level``."""

    k: int
    n: int
    level: float = 0.95

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        """Exact binomial interval (Clopper & Pearson 1934) via the beta quantiles."""
        if not self.n:
            return (math.nan, math.nan)
        a = 1 - self.level
        lo = 0.0 if self.k == 0 else float(stats.beta.ppf(a / 2, self.k, self.n - self.k + 1))
        hi = 1.0 if self.k == self.n else float(stats.beta.ppf(1 - a / 2, self.k + 1, self.n - self.k))
        return (lo, hi)

    def contains(self, x: float) -> bool:
        lo, hi = self.ci
        return lo <= x <= hi


AA_TEST_LEVEL = 0.01
AA_MARGIN = (0.035, 0.065)  # for alpha = 0.05: alpha ± 0.3·alpha
AA_RUNS_TO_JUDGE = 1000


def aa_verdict(rate: Rate, ks_p: float, alpha: float = 0.05) -> dict:
    """The A/A pass rule (module doc): binomial p, margin, KS; ``pass`` only when all hold."""
    lo, hi = (alpha * 0.7, alpha * 1.3)
    binom_p = float(stats.binomtest(rate.k, rate.n, alpha).pvalue) if rate.n else math.nan
    checks = {
        "binomial_p_value": binom_p,
        "binomial_ok": bool(binom_p >= AA_TEST_LEVEL),
        "margin": [lo, hi],
        "margin_ok": bool(lo <= rate.value <= hi),
        "ks_ok": bool(ks_p >= AA_TEST_LEVEL),
    }
    checks["pass"] = checks["binomial_ok"] and checks["margin_ok"] and checks["ks_ok"]
    return checks


def at_most(rate: Rate, alpha: float) -> tuple[bool, float]:
    """(ok, p): a one-sided exact binomial test that the rate is not above alpha, at 1 %."""
    if not rate.n:
        return False, math.nan
    p = float(stats.binomtest(rate.k, rate.n, alpha, alternative="greater").pvalue)
    return p >= AA_TEST_LEVEL, p


def rows_of(rows: Sequence[dict], metric: str) -> list[dict]:
    return [r for r in rows if r["metric"] == metric]


def false_positives(rows: Sequence[dict], alpha: float) -> tuple[Rate, float]:
    """Share of runs with p < alpha, and the KS p-value of the p-values against U(0, 1)."""
    p = np.array([r["p_value"] for r in rows if r["p_value"] is not None], dtype=float)
    ks = float(stats.kstest(p, "uniform").pvalue) if p.size else math.nan
    return Rate(int((p < alpha).sum()), int(p.size)), ks


def coverage(rows: Sequence[dict]) -> dict:
    """Coverage of the true relative lift by rel_ci, bias of rel_lift (mean of estimate -
    truth, with its standard error over runs) and power (share with p < alpha)."""
    usable = [r for r in rows if r["ci_covers_truth"] is not None and r["rel_lift"] is not None]
    cov = Rate(sum(bool(r["ci_covers_truth"]) for r in usable), len(usable))
    err = np.array([r["rel_lift"] - r["true_rel_lift"] for r in usable], dtype=float)
    truth = np.array([r["true_rel_lift"] for r in usable], dtype=float)
    width = np.array([r["rel_ci_hi"] - r["rel_ci_lo"] for r in usable], dtype=float)
    power = Rate(sum(r["p_value"] < r["alpha"] for r in usable if r["p_value"] is not None), len(usable))
    n = err.size
    return {
        "coverage": cov,
        "bias": float(err.mean()) if n else math.nan,
        "bias_se": float(err.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "mean_true_rel_lift": float(truth.mean()) if n else math.nan,
        "sd_true_rel_lift": float(truth.std(ddof=1)) if n > 1 else math.nan,
        "mean_ci_width": float(width.mean()) if n else math.nan,
        "power": power,
    }


def naive_look_p(rel_lift: float | None, rel_se: float | None, log_scale: bool = False) -> float | None:
    """Two-sided normal p-value of one look's cumulative relative lift (what a dashboard
    shows when it is read every day as if it were the final analysis); ``log_scale``: the
    test of log(1 + lift) with se/(1 + lift), the scale of the report's delta-log interval."""
    if rel_lift is None or rel_se is None or rel_se <= 0:
        return None
    if log_scale:
        if rel_lift <= -1:
            return None
        return float(2 * stats.norm.sf(abs(math.log1p(rel_lift)) / (rel_se / (1 + rel_lift))))
    return float(2 * stats.norm.sf(abs(rel_lift) / rel_se))


def peeking(rows: Sequence[dict], alpha: float) -> dict:
    """Runs read at every daily look: the naive rule stops at the first look with p < alpha;
    the always-valid rule rejects when the mSPRT p-value (a running minimum, so 'ever below
    alpha' = 'below alpha at the last look') is below alpha; the group-sequential rule when
    a look crosses its O'Brien-Fleming boundary.  On A/A runs these are false-positive
    rates, on runs with an effect their power."""
    naive = always = single = gs = n = 0
    looks = []
    for r in rows:
        log_scale = r.get("rel_method") == "delta-log"
        ps = [naive_look_p(e, s, log_scale) for e, s in zip(r["look_rel_lift"], r["look_rel_se"], strict=True)]
        ps = [p for p in ps if p is not None]
        if not ps or r["seq_p_value"] is None:
            continue
        n += 1
        looks.append(len(ps))
        naive += any(p < alpha for p in ps)
        single += ps[-1] < alpha
        always += r["seq_p_value"] < alpha
        gs += bool(r.get("gs_rejected"))
    return {
        "always_valid": Rate(always, n),
        "group_sequential": Rate(gs, n),
        "naive_daily": Rate(naive, n),
        "naive_final_look": Rate(single, n),
        "looks": float(np.mean(looks)) if looks else math.nan,
    }


def naive_exposure_p(row: dict, metric: str) -> tuple[float | None, float | None]:
    """Exposure-level two-proportion z-test (unpooled Wald): p-value and the absolute-lift
    standard error, as if every exposure (click, for CVR) were independent."""
    num, den = NAIVE_COUNTS[metric]
    kc, nc = row[f"{num}_control"], row[f"{den}_control"]
    kt, nt = row[f"{num}_treatment"], row[f"{den}_treatment"]
    if not nc or not nt:
        return None, None
    pc_, pt = kc / nc, kt / nt
    se = math.sqrt(pc_ * (1 - pc_) / nc + pt * (1 - pt) / nt)
    if se == 0:
        return None, None
    return float(2 * stats.norm.sf(abs(pt - pc_) / se)), se


def naive_vs_user(rows: Sequence[dict], metric: str, alpha: float) -> dict:
    """False-positive rates of the exposure-level and the user-level analysis on the same
    A/A runs, and the design effect = mean(user-level Var) / mean(exposure-level Var)."""
    user_fp = naive_fp = n = 0
    v_user, v_naive = [], []
    for r in rows:
        p_naive, se_naive = naive_exposure_p(r, metric)
        if p_naive is None or r["p_value"] is None or r["abs_se"] is None:
            continue
        n += 1
        naive_fp += p_naive < alpha
        user_fp += r["p_value"] < alpha
        v_user.append(r["abs_se"] ** 2)
        v_naive.append(se_naive**2)
    return {
        "user_level": Rate(user_fp, n),
        "exposure_level": Rate(naive_fp, n),
        "design_effect": float(np.mean(v_user) / np.mean(v_naive)) if n else math.nan,
    }
