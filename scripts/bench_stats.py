"""Benchmark: simab.reports statistics against tea-tasting on the same per-user data.

    .venv/bin/python scripts/bench_stats.py [--users 1000000] [--tea-python /tmp/bench-venv/bin/python]

tea-tasting is never a simab dependency: it lives in its own virtual environment,
created once with

    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install tea-tasting pyarrow

The script writes a synthetic exposure log (``--users`` users, ~10 exposures each), times
simab's full analysis (pyarrow aggregation of the exposure log into per-user sums, then
sufficient statistics and every comparison) and its inference alone on the per-user table,
then runs tea-tasting on the same per-user table in a subprocess, and prints the time ratio
and the largest relative difference over the numbers both report (values, absolute lift and
CI, relative lift and log-scale CI, p-value).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIOS = {
    "ctr": ("clicks", "exposures"),
    "ctcvr": ("conversions", "exposures"),
    "cvr": ("conversions", "clicks"),
}
MEANS = {"stay_time": "dwell_s", "exposures_per_user": "exposures"}
FIELDS = ("control", "treatment", "abs", "abs_lo", "abs_hi", "rel", "rel_lo", "rel_hi", "p")


def make_exposures(users: int, seed: int):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, users)
    z = rng.normal(0, 0.5, users)
    n = rng.poisson(9, users) + 1
    row = np.repeat(np.arange(users), n)
    p = 1 / (1 + np.exp(-(-3.0 + 0.05 * arm + z)))[row]
    clicked = rng.random(row.size) < p
    converted = clicked & (rng.random(row.size) < 0.1)
    dwell = np.where(clicked, rng.lognormal(3.0, 0.7, row.size), 0.0)
    return pa.table(
        {
            "arm": pa.DictionaryArray.from_arrays(
                pa.array(arm[row].astype(np.int32)), pa.array(["control", "treatment"])
            ),
            "user": pa.array(row.astype(np.int64)),
            "clicked": pa.array(clicked),
            "converted": pa.array(converted),
            "dwell_s": pa.array(dwell),
        }
    )


def per_user(exposures):
    import pyarrow as pa
    import pyarrow.compute as pc

    t = exposures.append_column("clicks", pc.cast(exposures["clicked"], pa.int64()))
    t = t.append_column("conversions", pc.cast(exposures["converted"], pa.int64()))
    g = t.group_by(["arm", "user"]).aggregate(
        [("clicks", "count"), ("clicks", "sum"), ("conversions", "sum"), ("dwell_s", "sum")]
    )
    names = {
        "clicks_count": "exposures",
        "clicks_sum": "clicks",
        "conversions_sum": "conversions",
        "dwell_s_sum": "dwell_s",
    }
    g = g.rename_columns([names.get(c, c) for c in g.column_names])
    return g.set_column(0, "arm", pc.cast(g["arm"], pa.string()))


def simab_inference(users) -> dict:
    """Moments per arm and every comparison, rel CI on the log scale as tea-tasting does."""
    from simab.reports.aggregation import moments_by
    from simab.reports.comparison import compare
    from simab.reports.estimates import Functional, estimate

    cols = ("exposures", "clicks", "conversions", "dwell_s")
    m = moments_by(users, ["arm"], cols)
    out = {}
    metrics = {k: Functional(*v) for k, v in RATIOS.items()} | {
        k: Functional(v) for k, v in MEANS.items()
    }
    for name, f in metrics.items():
        c = compare(
            estimate("control", m[("control",)], f),
            estimate("treatment", m[("treatment",)], f),
            rel_method="log",
        )
        out[name] = dict(
            zip(
                FIELDS,
                (
                    c.control_value,
                    c.treatment_value,
                    c.abs_lift,
                    *c.abs_ci,
                    c.rel_lift,
                    *c.rel_ci,
                    c.p_value,
                ),
                strict=True,
            )
        )
    return out


TEA = r"""
import json, sys, time
import pyarrow.parquet as pq
import tea_tasting as tt
data = pq.read_table(sys.argv[1])
try:
    import pandas  # noqa: F401  (tea-tasting accepts pandas everywhere)
    data = data.to_pandas()
except ImportError:
    pass
exp = tt.Experiment(
    ctr=tt.RatioOfMeans("clicks", "exposures"),
    ctcvr=tt.RatioOfMeans("conversions", "exposures"),
    cvr=tt.RatioOfMeans("conversions", "clicks"),
    stay_time=tt.Mean("dwell_s"),
    exposures_per_user=tt.Mean("exposures"),
    variant="arm",
)
best = float("inf")
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    result = exp.analyze(data, control="control")
    best = min(best, time.perf_counter() - t)
out = {}
for r in result.to_dicts():
    out[r["metric"]] = dict(control=r["control"], treatment=r["treatment"], abs=r["effect_size"],
        abs_lo=r["effect_size_ci_lower"], abs_hi=r["effect_size_ci_upper"], rel=r["rel_effect_size"],
        rel_lo=r["rel_effect_size_ci_lower"], rel_hi=r["rel_effect_size_ci_upper"], p=r["pvalue"])
json.dump({"seconds": best, "results": out}, open(sys.argv[2], "w"))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tea-python", default="/tmp/bench-venv/bin/python")
    parser.add_argument("--verbose", action="store_true", help="print every shared number")
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    exposures = make_exposures(args.users, seed=1)
    full, inference = float("inf"), float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        users = per_user(exposures)
        t1 = time.perf_counter()
        ours = simab_inference(users)
        t2 = time.perf_counter()
        full, inference = min(full, t2 - t0), min(inference, t2 - t1)
    print(f"data: {args.users:,} users, {exposures.num_rows:,} exposures")
    print(
        f"simab full analysis (aggregation + inference): {full:.3f} s; inference on per-user table: {inference:.3f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data, result = Path(tmp) / "users.parquet", Path(tmp) / "tea.json"
        pq.write_table(users, data)
        script = Path(tmp) / "tea.py"
        script.write_text(TEA)
        proc = subprocess.run(
            [args.tea_python, str(script), str(data), str(result), str(args.repeat)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(
                f"tea-tasting run failed (is {args.tea_python} set up? see the docstring):\n{proc.stderr[-2000:]}"
            )
            return 1
        tea = json.loads(result.read_text())
    worst = max(
        abs(ours[m][f] - tea["results"][m][f]) / max(abs(tea["results"][m][f]), 1e-300)
        for m in ours
        for f in FIELDS
    )
    if "--verbose" in sys.argv:
        for m in ours:
            for f in FIELDS:
                print(m, f, ours[m][f], tea["results"][m][f])
    print(f"tea-tasting analysis on the same per-user table: {tea['seconds']:.3f} s")
    print(
        f"time ratio simab/tea-tasting: inference {inference / tea['seconds']:.3f}, full (incl. aggregation) {full / tea['seconds']:.3f}"
    )
    print(f"largest relative difference over {len(ours) * len(FIELDS)} shared numbers: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
