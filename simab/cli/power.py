"""``simab power``: users per arm for a relative lift, or the lift detectable with N users
(the statistics are :mod:`simab.reports.power`; ``--from-run`` reads a run's control arm
through :func:`simab.reports.analysis.control_baseline`).

    simab power (--baseline B --sd S | --from-run RUN_DIR [--metric M]) (--rel-mde R | --users N)
"""

from __future__ import annotations

import argparse

from simab.errors import SimabError
from simab.reports.formatting import fmt_pct
from simab.reports.power import mde, sample_size


def _parser() -> argparse.ArgumentParser:
    from simab.cli.args import Parser, finite_float, int_at_least

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
        rel = fmt_pct(m.rel_mde)
        print(
            f"minimum detectable effect: absolute {m.abs_mde:.6g}, relative {rel} "
            f"(control {args.users}, treatment {n_t} users, alpha {args.alpha}, power {args.power})"
        )
    return 0
