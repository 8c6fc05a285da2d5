"""Power analysis: the smallest lift a campaign can detect, and the users it needs.

Two-sample t-test power (Cohen 1988, "Statistical Power Analysis for the Behavioral
Sciences", ch. 2) via statsmodels ``TTestIndPower``: with per-unit standard deviation σ
(for ratio metrics: of the delta-method linearisation), the minimum detectable absolute
effect is d·σ where d solves power(d, n_c, n_t/n_c, α) = 1 - β.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestIndPower

from simab.errors import SimabError


@dataclass(frozen=True)
class Mde:
    """Minimum detectable effect at the given power and two-sided α."""

    abs_mde: float
    rel_mde: float | None
    n_control: int
    n_treatment: int
    alpha: float
    power: float


@dataclass(frozen=True)
class SampleSize:
    """Units needed per arm to detect ``rel_mde`` with the given power."""

    n_control: int
    n_treatment: int
    rel_mde: float
    alpha: float
    power: float


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise SimabError(f"alpha must be in (0, 1), got {alpha}", key="alpha")
    if not 0 < power < 1:
        raise SimabError(f"power must be in (0, 1), got {power}", key="power")


def mde(
    unit_sd: float,
    n_control: int,
    n_treatment: int | None = None,
    *,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Mde:
    """Minimum detectable effect d·σ (absolute) and d·σ/baseline (relative) — module doc."""
    _check(alpha, power)
    n_treatment = n_control if n_treatment is None else n_treatment
    if n_control < 2 or n_treatment < 2 or not unit_sd > 0:
        rel = None
        return Mde(math.nan, rel, n_control, n_treatment, alpha, power)
    d = TTestIndPower().solve_power(
        effect_size=None, nobs1=n_control, ratio=n_treatment / n_control, alpha=alpha, power=power
    )
    abs_mde = _solved(d) * unit_sd
    rel = abs_mde / abs(baseline) if baseline else None
    return Mde(abs_mde, rel, n_control, n_treatment, alpha, power)


def _solved(x) -> float:
    """``solve_power`` returns a float, or a one-element array when its root finder falls
    back to another method (e.g. unequal arms): either way one float."""
    return float(np.asarray(x, dtype=float).reshape(-1)[0])


def sample_size(
    rel_mde: float,
    baseline: float,
    unit_sd: float,
    *,
    ratio: float = 1.0,
    alpha: float = 0.05,
    power: float = 0.8,
) -> SampleSize:
    """Units per arm so that a relative lift ``rel_mde`` over ``baseline`` has the given power."""
    _check(alpha, power)
    if not rel_mde or not baseline or not unit_sd > 0 or not ratio > 0:
        raise SimabError(
            "need a non-zero relative MDE and baseline, a positive sd and ratio", key="power"
        )
    d = abs(rel_mde * baseline) / unit_sd
    n1 = TTestIndPower().solve_power(
        effect_size=d, nobs1=None, ratio=ratio, alpha=alpha, power=power
    )
    n1 = _solved(n1)
    return SampleSize(math.ceil(n1), math.ceil(n1 * ratio), rel_mde, alpha, power)


def _parser() -> argparse.ArgumentParser:
    from simab.cli_args import Parser, finite_float, int_at_least

    p = Parser(
        prog="simab power",
        description="Users per arm for a relative lift, or the lift detectable with N users.",
    )
    p.add_argument("--baseline", type=finite_float(positive=True),
                   help="control metric value, > 0, e.g. CTR 0.05 (default: from --from-run)")
    p.add_argument("--sd", type=finite_float(positive=True),
                   help="per-user standard deviation of the metric, > 0 (default: from --from-run)")
    p.add_argument("--from-run", metavar="RUN_DIR", help="take baseline and sd from a run (default: none)")
    p.add_argument("--metric", default="ctr", help="metric to take from --from-run (default ctr)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--rel-mde", type=finite_float(), help="relative lift to detect, e.g. 0.02 (one of this or --users)")
    g.add_argument("--users", type=int_at_least(2), help="users in the control arm, >= 2 (one of this or --rel-mde)")
    p.add_argument("--ratio", type=finite_float(positive=True), default=1.0,
                   help="treatment/control users (default 1)")
    p.add_argument("--alpha", type=finite_float(unit_interval=True), default=0.05,
                   help="two-sided significance level (default 0.05)")
    p.add_argument("--power", type=finite_float(unit_interval=True), default=0.8,
                   help="probability of detecting the effect (default 0.8)")
    return p


def power_cli(argv: list[str]) -> int:
    """``simab power`` entry: prints the answer, returns the exit status (SimabError -> raise)."""
    args = _parser().parse_args(argv)
    baseline, sd = args.baseline, args.sd
    if args.from_run:
        from simab.reports.analysis import control_baseline

        baseline, sd = control_baseline(args.from_run, args.metric)
    if baseline is None or sd is None:
        raise SimabError("give --baseline and --sd, or --from-run RUN_DIR", source="<cli>")
    if args.rel_mde is not None:
        s = sample_size(
            args.rel_mde, baseline, sd, ratio=args.ratio, alpha=args.alpha, power=args.power
        )
        print(
            f"users needed: control {s.n_control}, treatment {s.n_treatment} "
            f"(relative lift {args.rel_mde:+.2%} over {baseline:.6g}, sd {sd:.6g}, "
            f"alpha {args.alpha}, power {args.power})"
        )
    else:
        n_t = round(args.users * args.ratio)
        if n_t < 2:
            raise SimabError(f"--users x --ratio gives {n_t} treatment users; at least 2 are needed",
                             source="<cli>", key="--ratio")
        m = mde(sd, args.users, n_t, baseline=baseline, alpha=args.alpha, power=args.power)
        rel = f"{m.rel_mde:+.2%}" if m.rel_mde is not None else "n/a"
        print(
            f"minimum detectable effect: absolute {m.abs_mde:.6g}, relative {rel} "
            f"(control {args.users}, treatment {n_t} users, alpha {args.alpha}, power {args.power})"
        )
    return 0
