"""``simab analyze``: the campaign report on a real experiment's data (the work is in
:mod:`simab.reports.experiment`).

    simab analyze DATA --arm COL --control VALUE --metric NAME=NUM[/DEN] ... [--unit COL]
                  [--events] [--covariate NAME=COL] [--time COL] [--share ARM=S ...]
                  [--alpha A] [--correction C] [--drop-invalid] [--out DIR]
    simab analyze DATA --summary --control VALUE [--arm COL] [--stats count=C,mean=M,variance=V]
                  [--wide SUFFIX,SUFFIX] [--metric-column COL] [--time COL] [--where COL=VALUE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simab.errors import SimabError

CORRECTIONS = ("holm", "bh", "bonferroni", "none")


def _parser() -> argparse.ArgumentParser:
    from simab.cli.args import Parser, finite_float

    p = Parser(
        prog="simab analyze",
        description="Analyse a real experiment: data checks, then every arm against the control "
        "with the campaign report's statistics (delta method, CUPED, SRM, multiple testing, "
        "sequential looks); writes report.json / report.md / report.html. No true lift is known.",
    )
    p.add_argument("data", help="Parquet or CSV file: one row per unit, or per event with --unit")
    p.add_argument("--arm", help="column holding each row's arm (required; summary mode: default 'arm')")
    p.add_argument("--control", required=True, help="required: the control arm's value in --arm")
    p.add_argument("--metric", action="append", default=[], metavar="NAME=NUM[/DEN]",
                   help="a metric: the mean of column NUM per unit, or the ratio of sums NUM/DEN "
                   "(delta method); columns may be booleans, 0/1, counts or sums (repeatable; "
                   "at least one outside --summary)")
    p.add_argument("--unit", help="unit id column: rows of one unit are summed to one unit "
                   "(default: each row is a unit)")
    p.add_argument("--events", action="store_true",
                   help="rows are events, several per unit expected (default: off, a unit with "
                   "several rows fails the duplicated-units check)")
    p.add_argument("--covariate", action="append", default=[], metavar="NAME=COL",
                   help="pre-experiment column COL as the CUPED covariate of metric NAME "
                   "(repeatable; default: none)")
    p.add_argument("--time", help="time column (timestamps, dates, or numbers in days): cumulative "
                   "daily looks for the sequential test; summary mode: the look column "
                   "(default: none, one look)")
    p.add_argument("--share", action="append", default=[], metavar="ARM=S",
                   help="stated allocation share of an arm, for SRM; arms not listed are unknown "
                   "(repeatable; default: equal shares over the arms in the data)")
    p.add_argument("--alpha", type=finite_float(unit_interval=True), default=0.05,
                   help="significance level (default 0.05)")
    p.add_argument("--correction", choices=list(CORRECTIONS), default="holm",
                   help="multiple-testing correction over metrics x arms (default holm)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop every unit that fails a data check before the analysis and record "
                   "how many (default: off; unusable rows are always left out)")
    p.add_argument("--out", help="output folder (default runs/analyze-<DATA file stem>)")
    p.add_argument("--name", help="the experiment's name in the report (default: DATA's file stem)")
    s = p.add_argument_group("summary-statistics mode")
    s.add_argument("--summary", action="store_true",
                   help="rows are per-arm summary statistics (count, mean, variance), one row per "
                   "arm, metric and look (default: off)")
    s.add_argument("--stats", metavar="count=C,mean=M,variance=V",
                   help="names of the statistic columns (default count=count,mean=mean,variance=variance)")
    s.add_argument("--wide", metavar="SUFFIX,SUFFIX",
                   help="arms are column suffixes: <stat>_<suffix> (e.g. c,t for count_c, count_t; "
                   "default: an --arm column)")
    s.add_argument("--metric-column", help="column naming each row's metric (default: one metric)")
    s.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="keep only rows where COL equals VALUE (repeatable; default: all rows)")
    return p


def _stats(text: str | None) -> dict[str, str]:
    out = {"count": "count", "mean": "mean", "variance": "variance"}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in out or not value.strip():
            raise SimabError(f"expected count=COL,mean=COL,variance=COL, got {text!r}", source="--stats")
        out[key.strip()] = value.strip()
    return out


def _refuse(flags: dict[str, object], mode: str) -> None:
    for flag, value in flags.items():
        if value:
            raise SimabError(f"not used in {mode}", source=flag)


def analyze_main(argv: list[str]) -> int:
    """``simab analyze`` entry: writes the report, prints the checks and lifts."""
    from simab.reports.experiment import analyze_summary, analyze_table
    from simab.reports.render_experiment import experiment_summary, write_experiment_report

    args = _parser().parse_args(argv)
    if args.summary:
        _refuse({"--metric": args.metric, "--unit": args.unit, "--events": args.events,
                       "--covariate": args.covariate, "--drop-invalid": args.drop_invalid},
                "--summary mode")
        report = analyze_summary(
            args.data, control=args.control, arm=args.arm or "arm", **_stats(args.stats),
            metric=args.metric_column, look=args.time,
            wide=[w.strip() for w in args.wide.split(",")] if args.wide else None,
            where=args.where, shares=args.share, alpha=args.alpha, correction=args.correction,
            name=args.name,
        )
    else:
        _refuse({"--stats": args.stats, "--wide": args.wide,
                       "--metric-column": args.metric_column, "--where": args.where},
                "a per-unit analysis (they belong to --summary)")
        if not args.arm:
            raise SimabError("required: the column holding each row's arm", source="--arm")
        if not args.metric:
            raise SimabError("required: at least one NAME=NUM[/DEN]", source="--metric")
        report = analyze_table(
            args.data, arm=args.arm, control=args.control, metrics=args.metric, unit=args.unit,
            covariates=args.covariate, time=args.time, alpha=args.alpha,
            correction=args.correction, shares=args.share, drop_invalid=args.drop_invalid,
            events=args.events, name=args.name,
        )
    out = Path(args.out) if args.out else Path("runs") / f"analyze-{Path(args.data).stem}"
    paths = write_experiment_report(report, out)
    print(experiment_summary(report))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0
