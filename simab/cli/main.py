"""The ``simab`` command line.

    simab run [CAMPAIGN.toml] [--out DIR] [--seed N] [--workers N] [--backend local|ray] [--resume]
              [--overwrite] [--set KEY=VALUE ...]
    simab report RUN_DIR [--correction holm|maxt|bh|bonferroni|none] [--rel-method delta-log|delta-linear] [--allow-incomplete]
    simab check RUN_DIR|CAMPAIGN.toml --expect EXPR [--expect EXPR ...]
    simab world PRESET [--users N] [--seed N] [--out DIR]
    simab train --world PRESET --policy NAME [--set key=value ...] [--epochs N] [--device D] --out DIR
    simab power ...
    simab analyze DATA --arm COL --control VALUE --metric NAME=NUM[/DEN] ... (real experiments)
    simab ope CAMPAIGN.toml [--out DIR] [--logging uniform|epsilon|plackett_luce] [--temperature T] [--online]
              [--seed N] [--workers N] [--set KEY=VALUE ...]
    simab sweep [CAMPAIGN.toml] --grid KEY=V1,V2,... [--replicates N] [--workers N] [--backend local|ray] [--out DIR]
    simab calibrate --battery aa|known-effect|peeking|naive|all --runs N [--workers N] [--users N] [--backend local|ray] [--out DIR]

User errors print one line ``error: <file or flag>: <key>: <problem>`` and exit with
status 2; so do file-system conditions (permissions, a file where a folder is expected).
The output folders' rules (ownership by record, the lock, resume) are in ``simab.run.folder``, their
verification in ``simab.run.verify``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from simab.cli.args import CORRECTIONS, REL_METHODS, Parser, finite_float, int_at_least
from simab.errors import SimabError
from simab.overrides import parse_overrides
from simab.spec import MAX_LR, MAX_SEED, MAX_USERS

_STARTED = [time.perf_counter()]  # reset by main(): "done in" is the whole command's time


def _set_values(args) -> tuple[dict, dict[str, str]]:
    """``--set`` pairs as a nested table, and which flag set each key (for error messages)."""
    from simab.spec import flat_keys

    values = parse_overrides(args.set or [])
    return values, {k: "--set" for k in flat_keys(values)}


def cmd_run(args) -> int:
    from simab.reports import summary_table
    from simab.run.runner import run_campaign
    from simab.spec import load_campaign

    values, flags = _set_values(args)
    overrides = None
    if args.seed is not None:
        overrides, flags = {"seed": args.seed}, {**flags, "seed": "--seed"}
    spec = load_campaign(args.spec, overrides=overrides, set_values=values, flags=flags)
    res = run_campaign(spec, out=args.out, workers=args.workers, backend=args.backend, resume=args.resume,
                       overwrite=args.overwrite)
    print(summary_table(res.report))
    print(f"\nreport: {res.run_dir / 'report.md'}  (also report.json, report.html)")
    print(f"done in {time.perf_counter() - _STARTED[0]:.1f}s (whole command)")
    return 0


def cmd_report(args) -> int:
    """Verify the run (its record, spec.json, run.json, every part and table), analyse it and
    write the report files, listed in the record; a read-only run is analysed and printed."""
    import contextlib
    import os

    from simab.eventlog import Manifest
    from simab.reports import analyze, summary_table
    from simab.run.lock import locked
    from simab.run.outputs import write_report_files
    from simab.run.verify import REPORT_FILES, run_problems

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise SimabError("no such run folder", source=str(run_dir))
    writable = os.access(run_dir, os.W_OK | os.X_OK)
    with locked(run_dir, "simab report") if writable else contextlib.nullcontext():
        problems = run_problems(run_dir, what="report", skip=REPORT_FILES)
        if problems and not args.allow_incomplete:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SimabError(f"incomplete or altered run: {problems[0]}{more}; re-run it (--resume redoes "
                             "damaged shards) or pass --allow-incomplete to report it flagged", source=str(run_dir))
        rep = analyze(run_dir, correction=args.correction, rel_method=args.rel_method)
        if problems:
            rep = replace(rep, integrity=tuple(problems))
            print(f"warning: {run_dir}: reporting an incomplete or altered run ({len(problems)} problem(s)); "
                  "the report is flagged", file=sys.stderr)
        paths = write_report_files(rep, Manifest(run_dir)) if writable else []
    print(summary_table(rep))
    if paths:
        print("\nwrote " + ", ".join(str(p) for p in paths))
    else:
        print(f"warning: {run_dir}: the folder is read-only; the report files were not rewritten", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from simab.reports.expectations import check_run, parse_expectation

    for e in args.expect:  # parse first: a typo fails before a long campaign runs
        parse_expectation(e)
    target = Path(args.target)
    if target.is_file() or target.suffix == ".toml":
        from simab.run.runner import run_campaign
        from simab.spec import load_campaign

        res = run_campaign(load_campaign(target), out=args.out)
        target = res.run_dir
    elif not target.exists():
        raise SimabError("no such run folder or campaign file", source=str(target))
    from simab.run.verify import verified_report

    ok, lines = check_run(verified_report(target, what="check"), args.expect)
    for line in lines:
        print(line)
    return 0 if ok else 1


def cmd_world(args) -> int:
    from simab.cli.world import world_main

    return world_main(args.rest)


def cmd_power(args) -> int:
    from simab.cli.power import power_cli

    return power_cli(args.rest)


def cmd_analyze(args) -> int:
    from simab.cli.analyze import analyze_main

    return analyze_main(args.rest)


def cmd_ope(args) -> int:
    from simab.cli.ope import ope_main

    return ope_main(args)


def cmd_train(args) -> int:
    from simab.cli.train import train_main

    return train_main(args)


def cmd_sweep(args) -> int:
    from simab.batteries.sweep import parse_grid, sweep

    grid = parse_grid(args.grid or [])
    res = sweep(args.spec, grid, args.replicates, args.out, workers=args.workers, backend=args.backend,
                base_overrides=parse_overrides(args.set or []), keep_events=args.keep_events)
    print((res.out / "sweep.md").read_text())
    print(f"table: {res.out / 'sweep.parquet'} ({len(res.rows)} rows from {res.runs} runs)")
    print(f"done in {time.perf_counter() - _STARTED[0]:.1f}s (whole command)")
    return 0


def cmd_calibrate(args) -> int:
    from simab.batteries.calibrate import BATTERIES, calibrate

    batteries = list(BATTERIES) if args.battery == "all" else [args.battery]
    data = calibrate(batteries, args.runs, args.out, workers=args.workers, backend=args.backend, seed=args.seed,
                     users=args.users)
    out = Path(args.out)
    print((out / "calibration.md").read_text())
    print(f"wrote {out / 'calibration.json'}, {out / 'calibration.md'}")
    # exit 1 only for a missed target; a battery with too few runs to judge (pass null) is not one
    return 1 if any(data["batteries"][b]["pass"] is False for b in batteries) else 0


def build_parser() -> argparse.ArgumentParser:
    from simab.batteries.calibrate import MIN_RUNS_TO_JUDGE
    from simab.batteries.sweep import MAX_RUNS

    p = Parser(
        prog="simab",
        description="Simulation-driven A/B testing for ranking policies: simulate a campaign in a synthetic "
        "multi-domain world, then get lifts with confidence intervals next to the truth the world knows.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    workers = int_at_least(1, MAX_WORKERS)
    seed = int_at_least(0, MAX_SEED)

    r = sub.add_parser("run", help="run a campaign (no argument: the embedded default campaign) and write its report",
                       description="Run a campaign and write its run folder and report. The pre-period / model "
                       "cache goes to $SIMAB_CACHE (default $XDG_CACHE_HOME/simab or ~/.cache/simab).")
    r.add_argument("spec", nargs="?", help="campaign TOML file (default: the embedded default campaign)")
    r.add_argument("--out", help="run folder (default: <output>/<name> from the spec, i.e. runs/<name>)")
    r.add_argument("--seed", type=seed, help=f"override the spec's seed, 0 to {MAX_SEED} (default: the spec's)")
    r.add_argument("--workers", type=workers,
                   help=f"processes for shards, 1 to {MAX_WORKERS} (default: the spec's, 1)")
    r.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where shards run: local process pool or Ray (default local)")
    r.add_argument("--resume", action="store_true",
                   help="continue the run in the folder: keep intact shards, redo the rest; refused when the "
                   "requested spec differs from the stored one (default: off, a fresh run)")
    r.add_argument("--overwrite", action="store_true",
                   help="allow a fresh run into a folder that holds files simab did not write, when none of them "
                   "is where the run writes; only files listed in the folder's manifest.json are removed (default: "
                   "off, such a folder is refused)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec key, merged into its table, e.g. duration_days=1 or "
                   "arms.treatment.share=0.4 (repeatable; default: none)")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="(re)analyse a run folder and write report.json / .md / .html",
                        description="Verify a run folder against its manifest.json (spec.json, run.json, every "
                        "part and table present, listed and matching its SHA-256), then analyse it and write "
                        "report.json / .md / .html (a read-only run is analysed and printed only).")
    rp.add_argument("run_dir", help="the run folder (holds run.json and manifest.json)")
    rp.add_argument("--correction", choices=list(CORRECTIONS), default=None,
                    help="multiple-testing correction across metrics and treatment arms (default: the spec's, "
                         "holm); maxt: simultaneous max-T over the comparisons' joint law")
    rp.add_argument("--rel-method", choices=list(REL_METHODS), default=None,
                    help="relative CI and its p: delta-log (log of the ratio, default: the spec's) or delta-linear")
    rp.add_argument("--allow-incomplete", action="store_true",
                    help="report a run that fails verification anyway; the report is flagged "
                    "(report.json 'integrity', a warning in report.md) (default: off, refused)")
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser("check", help="check expectations on a run (or run a campaign first); exit 1 on failure")
    c.add_argument("target", help="run folder or campaign TOML")
    c.add_argument("--expect", nargs="+", action="extend", required=True, metavar="EXPR",
                   help='required; METRIC[.TREATMENT_vs_CONTROL].FIELD[INDEX] OP NUMBER with FIELD a '
                   'report.json comparison field (docs/report_json.md), e.g. "ctcvr.rel_ci[0] > 0" or '
                   '"ctr.rel_lift >= 0.01"')
    c.add_argument("--out", help="run folder when TARGET is a campaign file (default: runs/<name>)")
    c.set_defaults(func=cmd_check)

    w = sub.add_parser("world", help="build a world preset, print its statistics, write world.json and figures",
                       add_help=False)
    w.add_argument("rest", nargs=argparse.REMAINDER)
    w.set_defaults(func=cmd_world)

    t = sub.add_parser("train", help="train a policy on a world's pre-period logs and write metrics.json",
                       description="Train one trainable policy on a world's pre-period logs (cached in "
                       "$SIMAB_CACHE, default ~/.cache/simab) and write metrics.json and the checkpoint.")
    t.add_argument("--world", required=True, help="required: preset name or a TOML file with a [world] table")
    t.add_argument("--policy", required=True, help="required: a trainable policy (dnn, din, ...)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="policy hyper-parameter (repeatable; default: the policy's defaults)")
    t.add_argument("--epochs", type=int_at_least(1, 1000), default=2, help="training epochs, 1 to 1000 (default 2)")
    t.add_argument("--batch-size", type=int_at_least(1, 1_000_000), default=512,
                   help="rows per batch, 1 to 1,000,000 (default 512)")
    t.add_argument("--lr", type=finite_float(positive=True, low=1e-9, high=MAX_LR), default=2e-3,
                   help=f"learning rate, in [1e-09, {MAX_LR:g}] (default 0.002)")
    t.add_argument("--max-steps", type=int_at_least(1, 1_000_000_000),
                   help="stop after this many steps (default: no limit)")
    t.add_argument("--monitor", default="auc", choices=["auc", "logloss"],
                   help="early stopping watches this on the validation rows (default auc)")
    t.add_argument("--patience", type=int_at_least(1, 1000), default=2,
                   help="epochs without a better monitored value before stopping, 1 to 1000 (default 2)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="torch device; auto uses CUDA when available (default auto)")
    t.add_argument("--seed", type=seed, default=0, help=f"world and training seed, 0 to {MAX_SEED} (default 0)")
    t.add_argument("--users", type=int_at_least(2, MAX_USERS),
                   help=f"override the world's number of users, 2 to {MAX_USERS:,} (default: the world's)")
    t.add_argument("--out", required=True, help="required: output folder for metrics.json and the checkpoint")
    t.set_defaults(func=cmd_train)

    sw = sub.add_parser("sweep", help="run a grid of spec overrides x replicate seeds; one table of every run's report")
    sw.add_argument("spec", nargs="?", help="campaign TOML file (default: the embedded default campaign)")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="a spec key and its values, e.g. world.n_users=200,400 (repeat for a product grid; "
                    "default: one point, the spec itself)")
    sw.add_argument("--replicates", type=int_at_least(1, MAX_RUNS), default=1,
                    help=f"seeds per grid point: seed, seed+1, ...; grid points x replicates at most {MAX_RUNS:,} "
                    "(default 1)")
    sw.add_argument("--workers", type=workers, default=1, help=f"campaigns run in parallel, 1 to {MAX_WORKERS} "
                    "(default 1)")
    sw.add_argument("--backend", choices=["local", "ray"], default="local",
                    help="local process pool or Ray (default local)")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a spec key at every grid point (repeatable; default: none)")
    sw.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")
    sw.add_argument("--keep-events", action="store_true",
                    help="keep each run's event log (default: off, keep only the report)")
    sw.set_defaults(func=cmd_sweep)

    cb = sub.add_parser("calibrate", help="check the statistics against the world's truth (A/A, known effect, "
                        "peeking, naive analysis); exit 1 when a target is missed")
    cb.add_argument("--battery", required=True, choices=["aa", "known-effect", "peeking", "naive", "all"],
                    help="required: which battery to run")
    cb.add_argument("--runs", type=int_at_least(2, MAX_RUNS), default=400,
                    help=f"campaigns (seeds) per battery, 2 to {MAX_RUNS:,} (default 400; fewer than "
                    f"{MIN_RUNS_TO_JUDGE} are run but reported as too few to judge)")
    cb.add_argument("--workers", type=workers, default=1, help=f"campaigns run in parallel, 1 to {MAX_WORKERS} "
                    "(default 1)")
    cb.add_argument("--backend", choices=["local", "ray"], default="local",
                    help="local process pool or Ray (default local)")
    cb.add_argument("--seed", type=seed, default=0,
                    help=f"first seed (runs use seed, seed+1, ..., at most {MAX_SEED}; default 0)")
    cb.add_argument("--users", type=int_at_least(2, MAX_USERS), default=None,
                    help=f"users per campaign, 2 to {MAX_USERS:,} (default: the batteries' small world, 150)")
    cb.add_argument("--out", default="runs/calibration",
                    help="output folder; its .cache holds the batteries' pre-period (default runs/calibration)")
    cb.set_defaults(func=cmd_calibrate)

    op = sub.add_parser("ope", help="off-policy estimates of each arm's CTR / CTCVR and lift from a randomised "
                        "pre-period, beside the truth (docs/ope.md)")
    op.add_argument("spec", help="campaign TOML file (its world and arms)")
    op.add_argument("--out", help="output folder (default: <output>/<name>-ope, i.e. runs/<name>-ope)")
    op.add_argument("--logging", choices=["uniform", "epsilon", "plackett_luce"], default="uniform",
                    help="the logging policy of the evaluated pre-period: uniformly random slates, the pre-period's "
                    "epsilon-greedy popularity, or Plackett-Luce over popularity (default uniform)")
    op.add_argument("--temperature", type=finite_float(positive=True, low=TEMPERATURE[0], high=TEMPERATURE[1]),
                    default=1.0, help=f"Plackett-Luce temperature of --logging plackett_luce, in "
                    f"[{TEMPERATURE[0]:g}, {TEMPERATURE[1]:g}] (default 1.0)")
    op.add_argument("--online", action="store_true",
                    help="also run the campaign (into OUT/campaign) and show its A/B estimate and true lift "
                    "beside the off-policy ones (default: off)")
    op.add_argument("--seed", type=seed, help=f"override the spec's seed, 0 to {MAX_SEED} (default: the spec's)")
    op.add_argument("--workers", type=workers, default=1,
                    help=f"processes for the training pre-period and the --online campaign, 1 to {MAX_WORKERS} "
                    "(default 1)")
    op.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a spec key, e.g. world.n_users=500 (repeatable; default: none)")
    op.set_defaults(func=cmd_ope)

    an = sub.add_parser("analyze", help="analyse a real experiment's data (CSV/Parquet): data checks, "
                        "lifts, SRM, CUPED, sequential looks; writes report.json / .md / .html", add_help=False)
    an.add_argument("rest", nargs=argparse.REMAINDER)
    an.set_defaults(func=cmd_analyze)

    pw = sub.add_parser("power", help="minimum detectable effect / sample size", add_help=False)
    pw.add_argument("rest", nargs=argparse.REMAINDER)
    pw.set_defaults(func=cmd_power)
    return p


MAX_WORKERS = 1024  # simab.run.runner.MAX_WORKERS (workers of one command)
#: Plackett-Luce temperatures outside this make the logger's propensities underflow
TEMPERATURE = (0.05, 100.0)

_PASS_THROUGH = {"world": cmd_world, "power": cmd_power, "analyze": cmd_analyze}


def main(argv: list[str] | None = None) -> int:
    import signal

    from simab.run.workers import end_on_terminate

    _STARTED[0] = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    end_on_terminate()  # SIGTERM / SIGHUP end the command as Ctrl-C does: locks released, workers ended
    try:
        if argv and argv[0] in _PASS_THROUGH:  # these parse their own options
            return int(_PASS_THROUGH[argv[0]](argparse.Namespace(rest=argv[1:])) or 0)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except SimabError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    except OSError as exc:  # a file-system condition (permissions, full disk) the user can act on
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())

