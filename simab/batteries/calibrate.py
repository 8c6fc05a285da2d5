"""Calibration batteries: ready-made sweeps that check simab's statistics against the
world's own truth, and write ``calibration.json``, ``calibration.md`` and figures.

- ``aa``: the same policy in both arms; false-positive rate per metric at alpha with its
  Clopper-Pearson interval, KS test of p-value uniformity, QQ plot.
- ``known-effect``: popularity vs ``oracle`` with ``blend`` (a dialled true lift) and
  ``truth = "counterfactual"``; coverage of the true relative lift, bias, power.
- ``peeking``: the A/A runs read at every daily look: stop at the first naive p < alpha
  against the always-valid mSPRT p-value.
- ``naive``: the A/A runs analysed at the exposure level against the user level.

``aa``, ``peeking`` and ``naive`` use the same campaigns (same spec, same seeds), so in one
output folder they are simulated once.  All batteries use a small world (few hundred
users, a short pre-period that only supplies CUPED covariates, one shard per run) so that
400 runs fit in 30 minutes on 2 cores; see docs/calibration.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from simab.batteries.sweep import build_runs, execute
from simab.errors import SimabError
from simab.progress import progress
from simab.reports.calibration import (
    NAIVE_COUNTS,
    USER_METRICS,
    Rate,
    coverage,
    false_positives,
    naive_vs_user,
    peeking,
    rows_of,
)
from simab.reports.formatting import fmt_ci, fmt_number, fmt_pct

BATTERIES = ("aa", "known-effect", "peeking", "naive")
NOMINAL_ALPHA = 0.05
COVERAGE_TARGET = 0.93
#: Fewer runs cannot judge a target: from 101 runs on, an observed false-positive rate of
#: twice the nominal 5% (ceil(0.10 n) of n) has a 95% Clopper-Pearson interval that
#: excludes 5%; below that a miscalibrated test would still "meet" the target
#: (tests/simab/run/test_integrity.py recomputes it).
MIN_RUNS_TO_JUDGE = 101

_SMALL_WORLD = {"preset": "default", "n_users": 150, "pre_period_days": 0.1}
_COMMON = {
    "alpha": NOMINAL_ALPHA,
    "shards": 1,
    "metrics": list(USER_METRICS),  # latency is not a user-level metric (and is measured time)
    "world": _SMALL_WORLD,
}
# A/A over three days: three daily looks for the peeking battery
AA_OVERRIDES = {
    **_COMMON,
    "name": "calibration-aa",
    "duration_days": 3.0,
    "arms": {"control": {"policy": "popularity", "share": 0.5},
             "treatment": {"policy": "popularity", "share": 0.5}},
}
KNOWN_EFFECT_BLEND = 0.5
KNOWN_EFFECT_OVERRIDES = {
    **_COMMON,
    "name": "calibration-known-effect",
    "duration_days": 1.0,
    "truth": "counterfactual",
    "arms": {"control": {"policy": "popularity", "share": 0.5},
             "treatment": {"policy": "oracle", "share": 0.5, "params": {"blend": KNOWN_EFFECT_BLEND}}},
}


def battery_overrides(battery: str, cache_dir: Path, users: int | None = None) -> dict[str, Any]:
    """The campaign overrides of ``battery``; ``users`` replaces the small world's 150 users."""
    if battery not in BATTERIES:
        raise SimabError(f"unknown battery {battery!r}; allowed: {', '.join(BATTERIES)}",
                         source="<cli>", key="--battery")
    base = KNOWN_EFFECT_OVERRIDES if battery == "known-effect" else AA_OVERRIDES
    world = base["world"] if users is None else {**base["world"], "n_users": users}
    return {**base, "world": world, "training": {"cache_dir": str(cache_dir)}}


def run_battery(battery: str, runs: int, out: str | Path, *, workers: int = 1,
                backend: str = "local", seed: int = 0, users: int | None = None) -> dict[str, Any]:
    """Run one battery's campaigns (reusing finished ones in ``out``) and return its
    ``calibration.json`` entry; also writes the figures into ``out``."""
    if runs < 2:
        raise SimabError(f"must be at least 2, got {runs}", source="<cli>", key="--runs")
    out = Path(out)
    over = battery_overrides(battery, out / ".cache", users)
    over["seed"] = seed
    shared = "known-effect" if battery == "known-effect" else "aa"
    sweep_runs = build_runs(None, {}, runs, out / shared, base_overrides=over)
    progress(f"calibrate {battery}: {runs} campaigns ({over['world']['n_users']} users, "
             f"{over['duration_days']:g} days each), {workers} worker(s) -> {out}")
    rows, walls, wall = execute(sweep_runs, workers=workers, backend=backend, label=f"calibrate {battery}")
    entry = summarise(battery, rows)
    entry.update({"runs": runs, "seed": seed, "wall_s": round(wall, 1),
                  "run_wall_s_mean": round(sum(walls) / len(walls), 2),
                  "run_wall_s_total": round(sum(walls), 1), "workers": workers,
                  "spec": {k: v for k, v in over.items() if k != "training"}})
    figure = _figure(battery, rows, entry, out)
    if figure:
        entry["figure"] = figure
    return entry


def _rate_json(rate: Rate) -> tuple[float, list[float]]:
    lo, hi = rate.ci
    return round(rate.value, 6), [round(lo, 6), round(hi, 6)]


def summarise(battery: str, rows: list[dict]) -> dict[str, Any]:
    """The per-metric figures of one battery (the ``calibration.json`` entry, less timings)."""
    alpha = NOMINAL_ALPHA
    metrics: dict[str, dict] = {}
    names = list(NAIVE_COUNTS) if battery == "naive" else list(USER_METRICS)
    for m in names:
        rs = rows_of(rows, m)
        if battery == "aa":
            fp, ks = false_positives(rs, alpha)
            value, ci = _rate_json(fp)
            metrics[m] = {"runs": fp.n, "false_positive_rate": value, "ci": ci,
                          "ks_p_value": round(ks, 6), "pass": fp.contains(alpha)}
        elif battery == "known-effect":
            c = coverage(rs)
            value, ci = _rate_json(c["coverage"])
            power, _ = _rate_json(c["power"])
            metrics[m] = {"runs": c["coverage"].n, "coverage": value, "ci": ci,
                          "bias": c["bias"], "bias_se": c["bias_se"],
                          "mean_true_rel_lift": c["mean_true_rel_lift"],
                          "sd_true_rel_lift": c["sd_true_rel_lift"],
                          "mean_ci_width": c["mean_ci_width"], "power": power,
                          "pass": c["coverage"].value >= COVERAGE_TARGET}
        elif battery == "peeking":
            pk = peeking(rs, alpha)
            value, ci = _rate_json(pk["always_valid"])
            naive, naive_ci = _rate_json(pk["naive_daily"])
            final, final_ci = _rate_json(pk["naive_final_look"])
            metrics[m] = {"runs": pk["always_valid"].n, "false_positive_rate": value, "ci": ci,
                          "naive_false_positive_rate": naive, "naive_ci": naive_ci,
                          "final_look_false_positive_rate": final, "final_look_ci": final_ci,
                          "looks": pk["looks"],
                          "pass": value <= alpha and pk["naive_daily"].ci[0] > alpha}
        else:
            nv = naive_vs_user(rs, m, alpha)
            value, ci = _rate_json(nv["user_level"])
            naive, naive_ci = _rate_json(nv["exposure_level"])
            metrics[m] = {"runs": nv["user_level"].n, "false_positive_rate": value, "ci": ci,
                          "exposure_level_false_positive_rate": naive, "exposure_level_ci": naive_ci,
                          "design_effect": nv["design_effect"]}
    runs = max((v.get("runs", 0) for v in metrics.values()), default=0)
    if runs < MIN_RUNS_TO_JUDGE:  # too few to judge: neither met nor missed
        return {"battery": battery, "alpha": alpha, "metrics": metrics, "pass": None,
                "verdict": f"too few runs to judge ({runs} < {MIN_RUNS_TO_JUDGE})"}
    return {"battery": battery, "alpha": alpha, "metrics": metrics,
            "pass": all(v.get("pass", True) for v in metrics.values())}


# --------------------------------------------------------------------------- figures
def _figure(battery: str, rows: list[dict], entry: dict, out: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    metrics = entry["metrics"]
    names = list(metrics)
    x = np.arange(len(names))

    def bars(key: str, ci_key: str, offset: float, label: str) -> None:
        vals = np.array([metrics[m][key] for m in names])
        ci = np.array([metrics[m][ci_key] for m in names])
        ax.bar(x + offset, vals, 0.38, label=label,
               yerr=[vals - ci[:, 0], ci[:, 1] - vals], capsize=3)

    if battery == "aa":
        for m in names:
            p = np.sort([r["p_value"] for r in rows_of(rows, m) if r["p_value"] is not None])
            q = (np.arange(1, p.size + 1) - 0.5) / p.size
            ax.plot(q, p, ".", ms=3, label=f"{m} (KS p {metrics[m]['ks_p_value']:.2f})")
        ax.plot([0, 1], [0, 1], "k-", lw=0.8)
        ax.set_xlabel("U(0, 1) quantile")
        ax.set_ylabel("A/A p-value")
        ax.set_title(f"A/A p-values, {entry['runs']} runs")
    elif battery == "known-effect":
        bars("coverage", "ci", 0.0, "coverage of the true lift")
        ax.axhline(0.95, color="k", lw=0.8, label="nominal 95%")
        ax.axhline(COVERAGE_TARGET, color="r", ls="--", lw=0.8, label="target 93%")
        lows = [metrics[m]["ci"][0] for m in names if metrics[m]["ci"][0] == metrics[m]["ci"][0]]
        ax.set_ylim(min([0.8, *lows]) - 0.02, 1.0)
        ax.set_title(f"Known effect: CI coverage, {entry['runs']} runs")
    elif battery == "peeking":
        bars("naive_false_positive_rate", "naive_ci", -0.2, "naive: stop at first daily p < 0.05")
        bars("false_positive_rate", "ci", 0.2, "always-valid (mSPRT)")
        ax.axhline(NOMINAL_ALPHA, color="k", lw=0.8)
        ax.set_title(f"Peeking at daily looks, {entry['runs']} A/A runs")
    else:
        bars("exposure_level_false_positive_rate", "exposure_level_ci", -0.2, "exposure-level (naive)")
        bars("false_positive_rate", "ci", 0.2, "user-level (delta method)")
        ax.axhline(NOMINAL_ALPHA, color="k", lw=0.8)
        ax.set_title(f"Naive vs clustered analysis, {entry['runs']} A/A runs")
    if battery != "aa":
        ax.set_xticks(x, names, fontsize=8, rotation=12)
        ax.set_ylabel("rate (95% Clopper-Pearson)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"{battery}.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


# --------------------------------------------------------------------------- outputs
def _read_summary(out: Path) -> dict:
    """``calibration.json`` in ``out`` (an empty summary when there is none yet)."""
    path = out / "calibration.json"
    data = {"schema": 1, "batteries": {}}
    if path.exists():
        # the file holds the other batteries' results: never overwrite one we cannot read
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SimabError(f"not valid JSON ({exc.msg}, line {exc.lineno}); move it away or choose another --out",
                             source=str(path)) from None
        if not isinstance(data, dict):
            raise SimabError("not a calibration summary (expected a JSON object); move it away or choose another "
                             "--out", source=str(path))
    data.setdefault("batteries", {})
    return data


def _verdict(entry: dict) -> str:
    if entry["pass"] is None:
        return entry.get("verdict") or "too few runs to judge"
    return "all targets met" if entry["pass"] else "TARGET MISSED"


def _yes(v: dict) -> str:
    return "yes" if v["pass"] else "NO"


#: Each battery's table after the metric and runs columns: headers and one cell function each.
TABLES: dict[str, tuple[list[str], list]] = {
    "aa": (["false-positive rate", "95% CI", "KS p", "5% inside CI"],
           [lambda v: fmt_pct(v["false_positive_rate"], ""), lambda v: fmt_ci(v["ci"], ""),
            lambda v: fmt_number(v["ks_p_value"], ".3g"), _yes]),
    "known-effect": (["coverage", "95% CI", "mean true lift", "bias (se)", "mean CI width", "power", ">= 93%"],
                     [lambda v: fmt_pct(v["coverage"], ""), lambda v: fmt_ci(v["ci"], ""),
                      lambda v: fmt_pct(v["mean_true_rel_lift"]),
                      lambda v: f"{fmt_pct(v['bias'])} ({fmt_pct(v['bias_se'], sign='')})",
                      lambda v: fmt_pct(v["mean_ci_width"], ""), lambda v: fmt_pct(v["power"], ""), _yes]),
    "peeking": (["looks", "naive daily FPR", "95% CI", "final look only", "always-valid FPR", "95% CI", "target"],
                [lambda v: fmt_number(v["looks"], ".3g"), lambda v: fmt_pct(v["naive_false_positive_rate"], ""),
                 lambda v: fmt_ci(v["naive_ci"], ""), lambda v: fmt_pct(v["final_look_false_positive_rate"], ""),
                 lambda v: fmt_pct(v["false_positive_rate"], ""), lambda v: fmt_ci(v["ci"], ""), _yes]),
    "naive": (["exposure-level FPR", "95% CI", "user-level FPR", "95% CI", "design effect"],
              [lambda v: fmt_pct(v["exposure_level_false_positive_rate"], ""), lambda v: fmt_ci(v["exposure_level_ci"], ""),
               lambda v: fmt_pct(v["false_positive_rate"], ""), lambda v: fmt_ci(v["ci"], ""),
               lambda v: fmt_number(v["design_effect"], ".3g")]),
}


def calibration_markdown(data: dict) -> str:
    lines = ["# simab calibration", ""]
    for name in BATTERIES:
        b = data["batteries"].get(name)
        if not b:
            continue
        lines += [f"## {name}: {b['runs']} runs ({_verdict(b)})", "",
                  f"{b['wall_s']:.0f} s with {b['workers']} worker(s) in this call; the runs took "
                  f"{b.get('run_wall_s_total', 0):.0f} s on one worker each ({b.get('run_wall_s_mean', 0):.1f} s "
                  "per run, runs reused from an earlier call keep their time).", ""]
        header, cells = TABLES[name]
        lines += ["| metric | runs | " + " | ".join(header) + " |", "|---" * (len(header) + 2) + "|"]
        lines += [f"| {m} | {v['runs']} | " + " | ".join(cell(v) for cell in cells) + " |"
                  for m, v in b["metrics"].items()]
        if b.get("figure"):
            lines += ["", f"![{name}]({b['figure']})"]
        lines.append("")
    return "\n".join(lines)


def calibrate(batteries: list[str], runs: int, out: str | Path, *, workers: int = 1,
              backend: str = "local", seed: int = 0, users: int | None = None) -> dict:
    """Run the batteries into ``out``; writes calibration.json / calibration.md (merged
    with batteries already recorded there) and returns the JSON document."""
    from simab.run.folder import new_output_folder

    if runs < 2:
        raise SimabError(f"must be at least 2, got {runs}", source="<cli>", key="--runs")
    for b in batteries:
        battery_overrides(b, Path(out))  # an unknown battery fails before any folder is made
    recorded = Path(out) / "calibration.json"
    if recorded.is_file():  # merged with the new batteries: refuse a damaged one before running
        try:
            json.loads(recorded.read_text())
        except (ValueError, UnicodeDecodeError):
            raise SimabError("not valid JSON; move it away or choose another --out", source=str(recorded)) from None
    with new_output_folder(out) as out:
        return _calibrate_into(batteries, runs, out, workers=workers, backend=backend, seed=seed, users=users)


def _calibrate_into(batteries: list[str], runs: int, out: Path, *, workers: int, backend: str,
                    seed: int, users: int | None = None) -> dict:
    from simab.atomic import write_atomic
    from simab.reports.json_numbers import json_safe

    data: dict = {}
    for b in batteries:
        started = time.perf_counter()
        entry = run_battery(b, runs, out, workers=workers, backend=backend, seed=seed, users=users)
        data = _read_summary(out)
        data["batteries"][entry["battery"]] = entry
        write_atomic(out / "calibration.json", json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")
        write_atomic(out / "calibration.md", calibration_markdown(data))
        progress(f"calibrate {b}: {_verdict(entry)} ({time.perf_counter() - started:.0f}s)")
    return data
