"""Sweeps: a grid of spec overrides times replicate seeds, one small campaign per cell,
every run's report collected into one table.

Data flow: base spec (TOML or the embedded default) + one grid point's overrides + a
replicate seed -> validated ``CampaignSpec`` -> ``run_campaign`` (one worker, one process)
-> ``simab.reports.analyze`` -> one row per (run, metric, comparison) -> ``sweep.parquet``
and ``sweep.md`` in the output folder.

Runs, not shards, are the unit of parallel work: each run is single-worker and the runs go
to the executor (``simab.run.executor``: a local process pool or Ray).  Replicate ``r`` of a grid point uses seed
``spec.seed + r`` (the same seeds at every grid point, so points are compared on common
seeds), and rows are ordered by (point, replicate), so the table does not depend on the
number of workers.  A run folder that already holds the rows of the same spec is reused
(``rows.json``), which makes an interrupted sweep resumable and lets batteries that share
their runs (A/A, peeking, naive) simulate them once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from simab.errors import SimabError
from simab.eventlog import TABLES
from simab.overrides import nest, parse_strict_value, split_assignment
from simab.progress import progress
from simab.reports.formatting import fmt_pct
from simab.reports.json_numbers import number
from simab.simulators.spec import deep_merge
from simab.spec import (
    DEFAULT_SOURCE,
    CampaignSpec,
    default_campaign_table,
    parse_campaign,
    read_toml,
)

ROWS_FILE = "rows.json"
#: What a sweep removes from each run folder unless asked to keep its events.
EVENT_FOLDERS = (*TABLES, "counterfactual", "models", "global", "market")


# --------------------------------------------------------------------------- grid
def _split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` on commas outside brackets and quotes (TOML arrays stay whole)."""
    out, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["world.n_users=200,400", "arms.treatment.params.blend=0,0.5"]`` -> key -> values.

    Values are parsed as TOML (numbers, booleans, arrays), else kept as strings.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, values = split_assignment(item, source="<cli>", key="--grid", shape="key=v1,v2,...")
        if key in grid:
            raise SimabError(f"key {key!r} given twice; list all its values once", source="<cli>", key="--grid")
        vals = [v for v in _split_values(values) if v != ""]
        if not vals:
            raise SimabError(f"no values for {key!r}", source="<cli>", key="--grid")
        grid[key] = [parse_strict_value(v, source="<cli>", key="--grid", name=key) for v in vals]
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the grid, in the order the keys and values were given."""
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in product(*(grid[k] for k in keys))]


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class SweepRun:
    """One campaign of a sweep: grid point ``point`` (its overrides), replicate, seed."""

    index: int
    point: int
    replicate: int
    seed: int
    overrides: dict[str, Any]
    spec_json: str
    run_dir: str
    keep_events: bool = False


def build_runs(
    spec_path: str | Path | None,
    grid: dict[str, list[Any]],
    replicates: int,
    out: str | Path,
    *,
    base_overrides: dict[str, Any] | None = None,
    keep_events: bool = False,
) -> list[SweepRun]:
    """Validate every grid point's spec up front (a bad value fails before any run)."""
    if replicates < 1:
        raise SimabError(f"must be at least 1, got {replicates}", source="<cli>", key="--replicates")
    if spec_path is None:
        table, source = default_campaign_table(), DEFAULT_SOURCE
    else:
        table, source = read_toml(spec_path), str(spec_path)
    table = deep_merge(table, base_overrides or {})
    runs: list[SweepRun] = []
    for p, point in enumerate(grid_points(grid)):
        data = deep_merge(table, nest(point))
        spec = parse_campaign(data, source=source)
        for r in range(replicates):
            seeded = spec.model_copy(update={"seed": spec.seed + r, "workers": 1})
            run_dir = Path(out) / "runs" / f"p{p:03d}-r{r:04d}"
            runs.append(SweepRun(len(runs), p, r, seeded.seed, point, seeded.model_dump_json(),
                                 str(run_dir), keep_events))
    return runs


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    old = os.environ.get("SIMAB_QUIET")
    os.environ["SIMAB_QUIET"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SIMAB_QUIET", None)
        else:
            os.environ["SIMAB_QUIET"] = old


def _spec_digest(spec_json: str) -> str:
    return hashlib.sha256(spec_json.encode()).hexdigest()[:16]


_num = number  # NaN-to-null for the JSON rows


def report_rows(report: Any, run: SweepRun) -> list[dict[str, Any]]:
    """One row per (metric, comparison) of an analysed run (a flat view of report.json plus
    the standard errors, Welch df and the sequential looks that calibration needs)."""
    rows = []
    arms = report.arms
    for metric, mr in report.metrics.items():
        for key, cr in mr.comparisons.items():
            c = cr.comparison
            seq = cr.sequential
            ctl, trt = arms[cr.control], arms[cr.treatment]
            rows.append({
                "run": run.index, "point": run.point, "replicate": run.replicate, "seed": run.seed,
                "metric": metric, "comparison": key, "alpha": report.alpha,
                "control_value": _num(c.control_value), "treatment_value": _num(c.treatment_value),
                "abs_lift": _num(c.abs_lift), "abs_se": _num(c.abs_se),
                "abs_ci_lo": _num(c.abs_ci[0]), "abs_ci_hi": _num(c.abs_ci[1]),
                "rel_lift": _num(c.rel_lift), "rel_se": _num(c.rel_se),
                "rel_ci_lo": _num(c.rel_ci[0]), "rel_ci_hi": _num(c.rel_ci[1]),
                "df": _num(c.df), "p_value": _num(c.p_value),
                "p_value_adjusted": _num(cr.p_value_adjusted),
                "true_rel_lift": _num(cr.true_rel_lift), "ci_covers_truth": cr.ci_covers_truth,
                "seq_p_value": _num(seq.p_value) if seq else None,
                "seq_rel_ci_lo": _num(seq.ci[0]) if seq else None,
                "seq_rel_ci_hi": _num(seq.ci[1]) if seq else None,
                "look_days": [lk.day for lk in seq.looks] if seq else [],
                "look_rel_lift": [_num(lk.estimate) for lk in seq.looks] if seq else [],
                "look_rel_se": [_num(lk.se) for lk in seq.looks] if seq else [],
                "look_seq_p_value": [_num(lk.p_value) for lk in seq.looks] if seq else [],
                "users_control": ctl.users, "users_treatment": trt.users,
                "exposures_control": ctl.exposures, "exposures_treatment": trt.exposures,
                "clicks_control": ctl.clicks, "clicks_treatment": trt.clicks,
                "conversions_control": ctl.conversions, "conversions_treatment": trt.conversions,
                "srm_p_value": _num(report.srm.p_value),
                "flags": ";".join(c.flags),
            })
    return rows


def run_one(run: SweepRun) -> dict[str, Any]:
    """Run (or reuse) one campaign of a sweep; returns ``{"rows", "wall_s", "reused"}``."""
    from simab.atomic import write_atomic
    from simab.reports import analyze
    from simab.run.runner import run_campaign

    run_dir = Path(run.run_dir)
    digest = _spec_digest(run.spec_json)
    stored = run_dir / ROWS_FILE
    if stored.exists():
        with contextlib.suppress(ValueError, KeyError):
            data = json.loads(stored.read_text())
            if data["spec_digest"] == digest:
                return {"rows": _relabel(data["rows"], run), "wall_s": data["wall_s"], "reused": True}
    started = time.perf_counter()
    with _quiet():
        spec = CampaignSpec.model_validate_json(run.spec_json)
        run_campaign(spec, out=run_dir, workers=1, report=False)
        report = analyze(run_dir)
    write_atomic(run_dir / "report.json", json.dumps(report.to_json_dict(), indent=1, allow_nan=False))
    rows = report_rows(report, run)
    if not run.keep_events:  # the rows and report.json are what a sweep keeps; logs are large
        for name in EVENT_FOLDERS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    wall = time.perf_counter() - started
    write_atomic(stored, json.dumps({"spec_digest": digest, "wall_s": wall, "rows": rows}))
    return {"rows": rows, "wall_s": wall, "reused": False}


def _relabel(rows: list[dict], run: SweepRun) -> list[dict]:
    """Stored rows keep their numbers; run/point indices follow the current sweep."""
    return [{**r, "run": run.index, "point": run.point, "replicate": run.replicate} for r in rows]


# --------------------------------------------------------------------------- execution
@dataclass
class SweepResult:
    """The collected rows (ordered by run, then metric), the table and where it was written."""

    out: Path
    rows: list[dict[str, Any]]
    grid: dict[str, list[Any]]
    runs: int
    wall_s: float
    run_wall_s: list[float] = field(default_factory=list)

    def table(self) -> pa.Table:
        return rows_table(self.rows, self.grid)


def execute(runs: list[SweepRun], *, workers: int = 1, backend: str = "local",
            label: str = "sweep") -> tuple[list[dict[str, Any]], list[float], float]:
    """Run every campaign on one :class:`~simab.run.executor.Executor`; rows in run order
    whatever the completion order."""
    from simab.run.executor import Executor

    if workers < 1:
        raise SimabError(f"must be at least 1, got {workers}", source="<cli>", key="--workers")
    started = time.perf_counter()
    by_index: dict[int, dict] = {}
    with Executor(workers, backend) as executor:
        for done, (i, res) in enumerate(executor.map(run_one, runs), start=1):
            run = runs[i]
            by_index[run.index] = res
            elapsed = time.perf_counter() - started
            eta = elapsed / done * (len(runs) - done)
            how = "reused" if res["reused"] else f"{res['wall_s']:.1f}s"
            progress(f"  {label}: run {done}/{len(runs)} (point {run.point}, seed {run.seed}, {how}); "
                     f"elapsed {elapsed:.0f}s, eta {eta:.0f}s")
    rows = [row for i in sorted(by_index) for row in by_index[i]["rows"]]
    walls = [by_index[i]["wall_s"] for i in sorted(by_index)]
    return rows, walls, time.perf_counter() - started


def rows_table(rows: list[dict[str, Any]], grid: dict[str, list[Any]]) -> pa.Table:
    """Rows as an Arrow table with one column per grid key (the point's value)."""
    points = grid_points(grid)
    columns: dict[str, list[Any]] = {}
    for key in grid:
        values = [points[r["point"]][key] for r in rows]
        kinds = {type(v) for v in values}
        if kinds <= {int, float} and float in kinds:
            values = [float(v) for v in values]
        elif len(kinds) > 1 or not kinds <= {int, float, str, bool}:
            values = [json.dumps(v) for v in values]
        columns[key] = values
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    for key, values in columns.items():
        table = table.append_column(key, pa.array(values))
    return table


def sweep(
    spec_path: str | Path | None,
    grid: dict[str, list[Any]],
    replicates: int,
    out: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    base_overrides: dict[str, Any] | None = None,
    keep_events: bool = False,
) -> SweepResult:
    """Run the grid x replicates and write ``sweep.parquet``, ``sweep.md`` and ``sweep.json``."""
    from simab.run.folder import new_output_folder

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SimabError("exists and is not a folder; choose a folder for the sweep", source=str(out))
    runs = build_runs(spec_path, grid, replicates, out, base_overrides=base_overrides,
                      keep_events=keep_events)
    with new_output_folder(out):
        return _sweep_into(out, runs, grid, replicates, workers, backend)


def _sweep_into(out: Path, runs: list[SweepRun], grid: dict[str, list[Any]], replicates: int,
                workers: int, backend: str) -> SweepResult:
    from simab.atomic import write_atomic

    progress(f"sweep: {len(grid_points(grid))} grid point(s) x {replicates} replicate(s) = "
             f"{len(runs)} runs, {workers} worker(s), backend {backend} -> {out}")
    rows, walls, wall = execute(runs, workers=workers, backend=backend)
    result = SweepResult(out, rows, grid, len(runs), wall, walls)
    pq.write_table(result.table(), out / "sweep.parquet")
    write_atomic(out / "sweep.md", sweep_markdown(rows, grid))
    write_atomic(out / "sweep.json", json.dumps({
        "grid": grid, "replicates": replicates, "runs": len(runs), "workers": workers,
        "backend": backend, "wall_s": wall, "run_wall_s_mean": sum(walls) / max(len(walls), 1),
    }, indent=1))
    progress(f"sweep: {len(runs)} runs in {wall:.0f}s -> {out / 'sweep.parquet'}")
    return result


def sweep_markdown(rows: list[dict[str, Any]], grid: dict[str, list[Any]]) -> str:
    """Per grid point and metric: runs, mean relative lift (and its sd over runs), mean true
    lift, share of runs with p < alpha, share of CIs covering the truth."""
    points = grid_points(grid)
    groups: dict[tuple[int, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["point"], r["metric"], r["comparison"]), []).append(r)
    keys = list(grid)
    head = [*keys, "metric", "comparison", "runs", "mean rel lift", "sd rel lift", "mean true lift",
            "p < alpha", "CI covers truth"]
    lines = ["# Sweep", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (p, metric, comp), rs in groups.items():
        lifts = [r["rel_lift"] for r in rs if r["rel_lift"] is not None]
        mean = sum(lifts) / len(lifts) if lifts else None
        sd = (math.sqrt(sum((x - mean) ** 2 for x in lifts) / (len(lifts) - 1))
              if len(lifts) > 1 else None)
        truths = [r["true_rel_lift"] for r in rs if r["true_rel_lift"] is not None]
        pvals = [r for r in rs if r["p_value"] is not None]
        cov = [r["ci_covers_truth"] for r in rs if r["ci_covers_truth"] is not None]
        cells = [*(json.dumps(points[p][k]) for k in keys), metric, comp, str(len(rs)),
                 fmt_pct(mean), fmt_pct(sd, ""),
                 fmt_pct(sum(truths) / len(truths) if truths else None),
                 fmt_pct(sum(r["p_value"] < r["alpha"] for r in pvals) / len(pvals) if pvals else None, "", 1),
                 fmt_pct(sum(cov) / len(cov) if cov else None, "", 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
