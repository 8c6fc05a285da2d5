"""``simab power``: users per arm for a relative lift, or the lift detectable with N users
(the statistics are :mod:`simab.reports.power`; ``--from-run`` reads a run's control arm
through :func:`simab.reports.analysis.control_baseline`).

    simab power (--baseline B --sd S | --from-run RUN_DIR [--metric M]) (--rel-mde R | --users N)
"""

from __future__ import annotations

import argparse

from simab.errors import SimabError
from simab.reports.formatting import NA, fmt_number
from simab.reports.power import mde, sample_size

#: Bounds of the inputs (a number outside them describes no experiment; inside them the
#: answer is computed exactly, :mod:`simab.reports.power`).
MAX_USERS = 10**12
ALPHA = (1e-6, 0.5)
POWER = (0.01, 0.9999)
REL_MDE = (1e-6, 100.0)
SCALE = (1e-12, 1e12)  # a metric's baseline and per-user sd
RATIO = (1e-3, 1e3)


def _parser() -> argparse.ArgumentParser:
    from simab.cli.args import Parser, finite_float, int_at_least

    p = Parser(
        prog="simab power",
        description="Users per arm for a relative lift, or the lift detectable with N users.",
    )
    p.add_argument("--baseline", type=finite_float(positive=True, low=SCALE[0], high=SCALE[1]),
                   help=f"control metric value, in [{SCALE[0]:g}, {SCALE[1]:g}], e.g. CTR 0.05 (default: from "
                   "--from-run; not with it)")
    p.add_argument("--sd", type=finite_float(positive=True, low=SCALE[0], high=SCALE[1]),
                   help=f"per-user standard deviation of the metric, in [{SCALE[0]:g}, {SCALE[1]:g}] (default: "
                   "from --from-run; not with it)")
    p.add_argument("--from-run", metavar="RUN_DIR", help="take baseline and sd from a verified run (default: none)")
    p.add_argument("--metric", default="ctr", help="metric to take from --from-run (default ctr)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--rel-mde", type=finite_float(low=REL_MDE[0], high=REL_MDE[1]),
                   help=f"relative lift to detect, size in [{REL_MDE[0]:g}, {REL_MDE[1]:g}], e.g. 0.02 (one of "
                   "this or --users)")
    g.add_argument("--users", type=int_at_least(2, MAX_USERS),
                   help=f"users in the control arm, in [2, {MAX_USERS:.0e}] (one of this or --rel-mde)")
    p.add_argument("--ratio", type=finite_float(positive=True, low=RATIO[0], high=RATIO[1]), default=1.0,
                   help=f"treatment/control users, in [{RATIO[0]:g}, {RATIO[1]:g}] (default 1)")
    p.add_argument("--alpha", type=finite_float(positive=True, low=ALPHA[0], high=ALPHA[1]), default=0.05,
                   help=f"two-sided significance level, in [{ALPHA[0]:g}, {ALPHA[1]:g}] (default 0.05)")
    p.add_argument("--power", type=finite_float(positive=True, low=POWER[0], high=POWER[1]), default=0.8,
                   help=f"probability of detecting the effect, in [{POWER[0]:g}, {POWER[1]:g}] and above "
                   "alpha / 2 (default 0.8)")
    return p


def power_cli(argv: list[str]) -> int:
    """``simab power`` entry: prints the answer, returns the exit status (SimabError -> raise)."""
    args = _parser().parse_args(argv)
    baseline, sd = args.baseline, args.sd
    if args.from_run:
        from simab.reports.analysis import control_baseline
        from simab.run.verify import verify_run

        given = [f for f, v in (("--baseline", args.baseline), ("--sd", args.sd)) if v is not None]
        if given:
            raise SimabError("--from-run takes the baseline and sd from the run; give either --from-run or "
                             "--baseline and --sd", source=given[0])
        verify_run(args.from_run, what="power --from-run")
        baseline, sd = control_baseline(args.from_run, args.metric)
        if not (SCALE[0] <= baseline <= SCALE[1] and SCALE[0] <= sd <= SCALE[1]):
            raise SimabError(f"the run's control {args.metric} is {baseline:.3g} with sd {sd:.3g}: no lift of it "
                             "can be measured (no events?)", source=args.from_run, key="--metric")
    if baseline is None or sd is None:
        raise SimabError("give --baseline and --sd, or --from-run RUN_DIR", source="<cli>")
    if not args.power > args.alpha / 2:
        raise SimabError(f"must be above alpha / 2 ({args.alpha / 2:g}): any test rejects that often with no "
                         "effect", source="--power")
    if args.rel_mde is not None:
        try:
            s = sample_size(args.rel_mde, baseline, sd, ratio=args.ratio, alpha=args.alpha, power=args.power)
        except SimabError as exc:
            raise SimabError(exc.message, source="--rel-mde") from None
        print(
            f"users needed: control {s.n_control:,}, treatment {s.n_treatment:,} "
            f"(relative lift {_pct(args.rel_mde)} over {baseline:.6g}, sd {sd:.6g}, "
            f"alpha {args.alpha}, power {args.power})"
        )
    else:
        n_t = round(args.users * args.ratio)
        if not 2 <= n_t <= MAX_USERS:
            raise SimabError(f"--users x --ratio gives {n_t:,} treatment users; allowed: 2 to {MAX_USERS:.0e}",
                             source="--ratio")
        m = mde(sd, args.users, n_t, baseline=baseline, alpha=args.alpha, power=args.power)
        rel = _pct(m.rel_mde)
        if m.rel_mde is not None and m.rel_mde > REL_MDE[1]:
            rel += " (no lift of a practical size is detectable)"
        print(
            f"minimum detectable effect: absolute {m.abs_mde:.6g}, relative {rel} "
            f"(control {args.users:,}, treatment {n_t:,} users, alpha {args.alpha}, power {args.power})"
        )
    return 0


def _pct(x: float | None) -> str:
    """A relative lift in percent with enough digits for a small one (+0.0001%, +2.5%)."""
    return NA if x is None else fmt_number(x * 100, "+.4g") + "%"
