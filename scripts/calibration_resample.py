"""Is an A/A false-positive rate off because of the harness or because of the test at
that sample size?  Re-randomise the users of one large finished A/A campaign.

Each resample draws ``n`` users (without replacement) from the campaign's per-user
totals, splits them into two arms by a fair coin, and runs the report's own
comparison (``simab.reports.comparison``: delta method, Welch df) per metric.  No
simulation is involved, and every null hypothesis is true by construction (the arms
are random halves of one population), so what comes out is the behaviour of the
estimator itself at ``n`` users with this world's per-user distributions: the false-
positive rate at alpha, the sd of the z statistics (1 for a calibrated test) and the
excess kurtosis of each metric's per-user linearised values (the heavy tail that
makes a t-type test conservative at small n).

    .venv/bin/python scripts/calibration_resample.py RUN_DIR --n 150 600 --resamples 4000

Figures go to stdout as a Markdown table (recorded in docs/calibration.md).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from simab.reports.aggregation import user_totals
from simab.reports.analysis import UNIT_METRICS
from simab.reports.comparison import mean_comparison, ratio_comparison
from simab.reports.run_data import read_run


def per_user(run_dir: Path) -> dict[str, np.ndarray]:
    run = read_run(run_dir)
    totals = user_totals(run.cells, assignments=run.assignments)
    return {c: totals[c].to_numpy().astype(np.float64) for c in ("exposures", "clicks", "conversions", "dwell_s")}


def excess_kurtosis(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2 - 3.0)


def linearised(cols: dict[str, np.ndarray], name: str) -> np.ndarray:
    f = UNIT_METRICS[name]
    num = cols[f.num]
    if f.den is None:
        return num
    den = cols[f.den]
    return num - num.sum() / den.sum() * den


def resample(cols: dict[str, np.ndarray], n: int, resamples: int, alpha: float, seed: int) -> dict[str, dict]:
    g = np.random.default_rng(seed)
    n_users = len(cols["exposures"])
    out = {m: {"z": [], "p": []} for m in UNIT_METRICS}
    for _ in range(resamples):
        pick = g.choice(n_users, size=n, replace=False)
        arm = g.random(n) < 0.5
        if arm.sum() < 2 or (~arm).sum() < 2:
            continue
        for name, f in UNIT_METRICS.items():
            a, b = pick[~arm], pick[arm]
            if f.den is None:
                c = mean_comparison(cols[f.num][a], cols[f.num][b], alpha)
            else:
                if cols[f.den][a].sum() == 0 or cols[f.den][b].sum() == 0:
                    continue
                c = ratio_comparison(cols[f.num][a], cols[f.den][a], cols[f.num][b], cols[f.den][b], alpha)
            if c.abs_se and math.isfinite(c.abs_se) and c.abs_se > 0:
                out[name]["z"].append(c.abs_lift / c.abs_se)
                out[name]["p"].append(c.p_value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, nargs="+", default=[150, 600])
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cols = per_user(a.run_dir)
    n_users = len(cols["exposures"])
    if max(a.n) > n_users:
        sys.exit(f"{a.run_dir}: --n {max(a.n)} exceeds the campaign's {n_users} users")
    print(f"{a.run_dir}: {n_users:,} users; {a.resamples:,} re-randomisations per n; alpha {a.alpha}\n")
    print("| metric | excess kurtosis of per-user linearised values | "
          + " | ".join(f"n = {n}: false positives, sd(z)" for n in a.n) + " |")
    print("|---|---:|" + "---:|" * len(a.n))
    results = {n: resample(cols, n, a.resamples, a.alpha, a.seed + n) for n in a.n}
    for name in UNIT_METRICS:
        cells = []
        for n in a.n:
            z, p = np.array(results[n][name]["z"]), np.array(results[n][name]["p"])
            cells.append(f"{np.mean(p < a.alpha):.2%} ({len(p):,}), {z.std():.3f}")
        print(f"| {name} | {excess_kurtosis(linearised(cols, name)):.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
