"""SHA-256 of every file a campaign writes, for before/after checks of a refactor.

    python scripts/run_digests.py --out runs/digests [--json F]

Runs three small configurations (the default campaign; an A/B with counterfactual truth;
a session-unit campaign), and prints one line per file:
``<config> <path> <sha256>``.  Run it on two commits and diff the output: a refactor that
claims "identical bytes" must print identical lines.  Reports (report.json/md/html) and
run.json are left out (they hold wall times); every Parquet part, truth.parquet,
covariates.parquet and spec.json are in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

CONFIGS = {
    "default": ["--set", "world.n_users=400", "--set", "duration_days=0.5"],
    "counterfactual": ["--set", "world.n_users=400", "--set", "duration_days=0.5",
                       "--set", "truth=\"counterfactual\""],
    "session": ["--set", "world.n_users=400", "--set", "duration_days=0.5",
                "--set", "unit=\"session\""],
}
SKIP = {"report.json", "report.md", "report.html", "run.json", "manifest.json"}


def digests(run_dir: Path) -> dict[str, str]:
    out = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and path.name not in SKIP and not path.suffix == ".png" \
                and "models" not in path.relative_to(run_dir).parts:
            out[str(path.relative_to(run_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/digests")
    ap.add_argument("--json", default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        from simab.cli.main import main as simab_main
    except ImportError:  # a commit before the folders (issue #26): simab.cli was a module
        from simab.cli import main as simab_main

    result = {}
    for name, flags in CONFIGS.items():
        run_dir = Path(args.out) / name
        rc = simab_main(["run", "--out", str(run_dir), "--overwrite", "--workers", str(args.workers), *flags])
        if rc:
            return rc
        result[name] = digests(run_dir)
        for path, sha in result[name].items():
            print(name, path, sha)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
