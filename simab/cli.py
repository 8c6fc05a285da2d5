"""The ``simab`` command line.

    simab run [CAMPAIGN.toml] [--out DIR] [--seed N] [--workers N] [--backend local|ray] [--resume]
    simab report RUN_DIR
    simab check RUN_DIR|CAMPAIGN.toml --expect EXPR [--expect EXPR ...]
    simab world PRESET [--users N] [--seed N] [--out DIR]
    simab train --world PRESET --policy NAME [--set key=value ...] [--epochs N] [--device D] --out DIR
    simab power ...
    simab sweep [CAMPAIGN.toml] --grid KEY=V1,V2,... [--replicates N] [--workers N] [--backend local|ray] [--out DIR]
    simab calibrate --battery aa|known-effect|peeking|naive|all --runs N [--workers N] [--backend local|ray] [--out DIR]

User errors print one line ``error: <file>: <key>: <problem>`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simab.errors import SimabError
from simab.overrides import parse_overrides


def cmd_run(args) -> int:
    from simab.reports import summary_table
    from simab.runner import run_campaign
    from simab.spec import load_campaign

    overrides = parse_overrides(args.set or [])
    if args.seed is not None:
        overrides["seed"] = args.seed
    spec = load_campaign(args.spec, overrides=overrides or None)
    res = run_campaign(spec, out=args.out, workers=args.workers, backend=args.backend, resume=args.resume)
    print(summary_table(res.report))
    print(f"\nreport: {res.run_dir / 'report.md'}  (also report.json, report.html)")
    return 0


def cmd_report(args) -> int:
    from simab.reports import analyze, summary_table, write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "run.json").exists():
        raise SimabError("not a complete run folder (no run.json); run `simab run` first", source=str(run_dir))
    rep = analyze(run_dir, correction=args.correction)
    paths = write_report(rep, run_dir)
    print(summary_table(rep))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_check(args) -> int:
    from simab.reports.expectations import check_run, parse_expectation

    for e in args.expect:  # parse first: a typo fails before a long campaign runs
        parse_expectation(e)
    target = Path(args.target)
    if target.is_file() or target.suffix == ".toml":
        from simab.runner import run_campaign
        from simab.spec import load_campaign

        res = run_campaign(load_campaign(target), out=args.out)
        target = res.run_dir
    elif not target.exists():
        raise SimabError("no such run folder or campaign file", source=str(target))
    ok, lines = check_run(target, args.expect)
    for line in lines:
        print(line)
    return 0 if ok else 1


def cmd_world(args) -> int:
    from simab.world_cmd import world_main

    return world_main(args.rest)


def cmd_power(args) -> int:
    from simab.power_cmd import power_cli

    return power_cli(args.rest)


def cmd_train(args) -> int:
    from simab.train_cmd import train_main

    return train_main(args)


def cmd_sweep(args) -> int:
    from simab.sweep import parse_grid, sweep

    grid = parse_grid(args.grid or [])
    res = sweep(args.spec, grid, args.replicates, args.out, workers=args.workers, backend=args.backend,
                base_overrides=parse_overrides(args.set or []), keep_events=args.keep_events)
    print((res.out / "sweep.md").read_text())
    print(f"table: {res.out / 'sweep.parquet'} ({len(res.rows)} rows from {res.runs} runs)")
    return 0


def cmd_calibrate(args) -> int:
    from simab.calibrate import BATTERIES, calibrate

    batteries = list(BATTERIES) if args.battery == "all" else [args.battery]
    data = calibrate(batteries, args.runs, args.out, workers=args.workers, backend=args.backend, seed=args.seed)
    out = Path(args.out)
    print((out / "calibration.md").read_text())
    print(f"wrote {out / 'calibration.json'}, {out / 'calibration.md'}")
    return 0 if all(data["batteries"][b]["pass"] for b in batteries) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simab",
        description="Simulation-driven A/B testing for ranking policies: simulate a campaign in a synthetic "
        "multi-domain world, then get lifts with confidence intervals next to the truth the world knows.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a campaign (no argument: the embedded default campaign) and write its report")
    r.add_argument("spec", nargs="?", help="campaign TOML file")
    r.add_argument("--out", help="run folder (default: <output>/<name> from the spec)")
    r.add_argument("--seed", type=int, help="override the spec's seed")
    r.add_argument("--workers", type=int, help="processes for shards (default: the spec's, 1)")
    r.add_argument("--backend", choices=["local", "ray"], default="local")
    r.add_argument("--resume", action="store_true", help="skip shards already complete in the run folder")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key, e.g. duration_days=1")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="(re)analyse a run folder and write report.json / .md / .html")
    rp.add_argument("run_dir")
    rp.add_argument("--correction", choices=["holm", "bh"], default="holm", help="multiple-testing correction")
    rp.set_defaults(func=cmd_report)

    c = sub.add_parser("check", help="check expectations on a run (or run a campaign first); exit 1 on failure")
    c.add_argument("target", help="run folder or campaign TOML")
    c.add_argument("--expect", nargs="+", action="extend", required=True, metavar="EXPR",
                   help='e.g. "ctcvr.rel_ci[0] > 0" or "ctr.rel_lift >= 0.01"')
    c.add_argument("--out", help="run folder when TARGET is a campaign file")
    c.set_defaults(func=cmd_check)

    w = sub.add_parser("world", help="build a world preset, print its statistics, write world.json and figures",
                       add_help=False)
    w.add_argument("rest", nargs=argparse.REMAINDER)
    w.set_defaults(func=cmd_world)

    t = sub.add_parser("train", help="train a policy on a world's pre-period logs and write metrics.json")
    t.add_argument("--world", required=True, help="preset name or a TOML file with a [world] table")
    t.add_argument("--policy", required=True)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="policy hyper-parameter")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=512)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--max-steps", type=int)
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--users", type=int, help="override the world's number of users")
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_train)

    sw = sub.add_parser("sweep", help="run a grid of spec overrides x replicate seeds; one table of every run's report")
    sw.add_argument("spec", nargs="?", help="campaign TOML file (default: the embedded default campaign)")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="a spec key and its values, e.g. world.n_users=200,400 (repeat for a product grid)")
    sw.add_argument("--replicates", type=int, default=1, help="seeds per grid point: seed, seed+1, ... (default 1)")
    sw.add_argument("--workers", type=int, default=1, help="campaigns run in parallel (each on one worker)")
    sw.add_argument("--backend", choices=["local", "ray"], default="local")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key at every grid point")
    sw.add_argument("--out", default="runs/sweep", help="output folder (default runs/sweep)")
    sw.add_argument("--keep-events", action="store_true", help="keep each run's event log (default: report only)")
    sw.set_defaults(func=cmd_sweep)

    cb = sub.add_parser("calibrate", help="check the statistics against the world's truth (A/A, known effect, "
                        "peeking, naive analysis); exit 1 when a target is missed")
    cb.add_argument("--battery", required=True, choices=["aa", "known-effect", "peeking", "naive", "all"])
    cb.add_argument("--runs", type=int, default=400, help="campaigns (seeds) per battery (default 400)")
    cb.add_argument("--workers", type=int, default=1, help="campaigns run in parallel")
    cb.add_argument("--backend", choices=["local", "ray"], default="local")
    cb.add_argument("--seed", type=int, default=0, help="first seed (runs use seed, seed+1, ...)")
    cb.add_argument("--out", default="runs/calibration", help="output folder (default runs/calibration)")
    cb.set_defaults(func=cmd_calibrate)

    pw = sub.add_parser("power", help="minimum detectable effect / sample size", add_help=False)
    pw.add_argument("rest", nargs=argparse.REMAINDER)
    pw.set_defaults(func=cmd_power)
    return p


_PASS_THROUGH = {"world": cmd_world, "power": cmd_power}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in _PASS_THROUGH:  # these parse their own options
            return int(_PASS_THROUGH[argv[0]](argparse.Namespace(rest=argv[1:])) or 0)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except SimabError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

