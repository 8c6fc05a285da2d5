"""Calibration batteries: ready-made sweeps that check simab's statistics against the
world's own truth, and write ``calibration.json``, ``calibration.md`` and figures.

- ``aa``: the same policy in both arms; false-positive rate per metric at alpha with its
  Clopper-Pearson interval, KS test of p-value uniformity, QQ plot; pass rule
  ``reports.calibration.aa_verdict`` (binomial test and KS at 1 %, rate within [3.5 %, 6.5 %],
  judged from 1,000 runs).
- ``known-effect``: popularity vs ``oracle`` with ``blend`` at three values (three true lifts,
  one small), counterfactual truth; coverage of the true relative lift, bias, power.
- ``peeking``: the A/A runs read at every daily look (false-positive rates) and the
  known-effect runs (power): stop at the first naive p < alpha against the always-valid
  mSPRT and the O'Brien-Fleming group-sequential test.
- ``naive``: the A/A runs analysed at the exposure level against the user level.

``aa``, ``peeking`` and ``naive`` use the same A/A campaigns, ``known-effect`` and ``peeking``
the same known-effect campaigns (same spec, same seeds), so in one output folder each is
simulated once.  All batteries use a small world (150 users, a 0.1-day pre-period, one shard per
run); see docs/calibration.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from simab.batteries.sweep import build_runs, execute, grid_points
from simab.errors import SimabError
from simab.progress import progress
from simab.reports.calibration import (
    AA_RUNS_TO_JUDGE,
    NAIVE_COUNTS,
    USER_METRICS,
    Rate,
    aa_verdict,
    at_most,
    coverage,
    false_positives,
    naive_vs_user,
    peeking,
    rows_of,
)
from simab.reports.formatting import fmt_ci, fmt_number, fmt_pct
from simab.spec import MAX_SEED

BATTERIES = ("aa", "known-effect", "peeking", "naive")
NOMINAL_ALPHA = 0.05
COVERAGE_TARGET = 0.93
#: Fewer runs cannot judge a target: from 101 runs on, an observed false-positive rate of
#: twice the nominal 5% (ceil(0.10 n) of n) has a 95% Clopper-Pearson interval that
#: excludes 5%; below that a miscalibrated test would still "meet" the target
#: (tests/simab/run/test_integrity.py recomputes it).
MIN_RUNS_TO_JUDGE = 101

_SMALL_WORLD = {"preset": "default", "n_users": 150, "pre_period_days": 0.1}  # the pre-period only supplies CUPED covariates
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
    "truth": "oracle",  # an A/A needs no truth: the cheap realised-group rows only
    "arms": {"control": {"policy": "popularity", "share": 0.5},
             "treatment": {"policy": "popularity", "share": 0.5}},
}
#: the treatment's blend of the oracle into popularity at the three effect sizes (small to large)
KNOWN_EFFECT_BLENDS = (0.05, 0.2, 0.5)
KNOWN_EFFECT_OVERRIDES = {
    **_COMMON,
    "name": "calibration-known-effect",
    "duration_days": 2.0,  # two daily looks for the peeking battery's power
    "truth": "counterfactual",
    "arms": {"control": {"policy": "popularity", "share": 0.5},
             "treatment": {"policy": "oracle", "share": 0.5, "params": {"blend": KNOWN_EFFECT_BLENDS[-1]}}},
}
KNOWN_EFFECT_GRID = {"arms.treatment.params.blend": list(KNOWN_EFFECT_BLENDS)}
#: Which runs each battery reads: folders of runs shared between batteries (A/A, peeking and
#: naive read the same A/A campaigns; peeking also reads the known-effect ones for power).
PARTS = {"aa": ["aa"], "naive": ["aa"], "known-effect": ["known-effect"], "peeking": ["aa", "known-effect"]}


def battery_overrides(battery: str, cache_dir: Path, users: int | None = None) -> dict[str, Any]:
    """The campaign overrides of ``battery``; ``users`` replaces the small world's 150 users."""
    if battery not in BATTERIES:
        raise SimabError(f"unknown battery {battery!r}; allowed: {', '.join(BATTERIES)}",
                         source="--battery")
    base = KNOWN_EFFECT_OVERRIDES if battery == "known-effect" else AA_OVERRIDES
    world = base["world"] if users is None else {**base["world"], "n_users": users}
    return {**base, "world": world, "training": {"cache_dir": str(cache_dir)}}


def run_battery(battery: str, runs: int, out: str | Path, *, workers: int = 1,
                backend: str = "local", seed: int = 0, users: int | None = None) -> dict[str, Any]:
    """Run one battery's campaigns (reusing finished ones in ``out``) and return its
    ``calibration.json`` entry; also writes the figures into ``out``."""
    if runs < 2:
        raise SimabError(f"must be at least 2, got {runs}", source="--runs")
    out = Path(out)
    rows, walls, wall = [], [], 0.0
    by_part = {}
    for shared in PARTS[battery]:
        over = battery_overrides(shared, out / ".cache", users)
        over["seed"] = seed
        grid = KNOWN_EFFECT_GRID if shared == "known-effect" else {}
        sweep_runs = build_runs(None, grid, runs, out / shared, base_overrides=over, base_flag="--users")
        progress(f"calibrate {battery}: {len(sweep_runs)} campaigns ({over['world']['n_users']} users, "
                 f"{over['duration_days']:g} days each), {workers} worker(s) -> {out}")
        r, w, t = execute(sweep_runs, workers=workers, backend=backend, label=f"calibrate {battery} ({shared})")
        by_part[shared] = r
        rows, walls, wall = rows + r, walls + w, wall + t
    entry = summarise(battery, by_part.get("aa", []) if battery != "known-effect" else by_part["known-effect"],
                      effect_rows=by_part.get("known-effect", []))
    entry.update({"runs": runs, "seed": seed, "wall_s": round(wall, 1),
                  "run_wall_s_mean": round(sum(walls) / len(walls), 2),
                  "run_wall_s_total": round(sum(walls), 1), "workers": workers,
                  "spec": {k: v for k, v in over.items() if k != "training"},
                  **({"grid": KNOWN_EFFECT_GRID} if "known-effect" in PARTS[battery] else {})})
    figure = _figure(battery, rows, entry, out)
    if figure:
        entry["figure"] = figure
    return entry


def _rate_json(rate: Rate) -> tuple[float, list[float]]:
    lo, hi = rate.ci
    return round(rate.value, 6), [round(lo, 6), round(hi, 6)]


def _points(rows: list[dict]) -> list[int]:
    return sorted({r["point"] for r in rows})


def summarise(battery: str, rows: list[dict], effect_rows: list[dict] | None = None) -> dict[str, Any]:
    """The per-metric figures of one battery (the ``calibration.json`` entry, less timings);
    the known-effect battery and the peeking battery's power have one entry per effect size
    (``metric (blend b)``)."""
    alpha = NOMINAL_ALPHA
    metrics: dict[str, dict] = {}
    names = list(NAIVE_COUNTS) if battery == "naive" else list(USER_METRICS)
    effect_rows = effect_rows or []
    for m in names:
        rs = rows_of(rows, m)
        if battery == "aa":
            fp, ks = false_positives(rs, alpha)
            value, ci = _rate_json(fp)
            verdict = aa_verdict(fp, ks, alpha)
            metrics[m] = {"runs": fp.n, "false_positive_rate": value, "ci": ci,
                          "ks_p_value": round(ks, 6), "binomial_p_value": round(verdict["binomial_p_value"], 6),
                          "margin": verdict["margin"], "pass": verdict["pass"]}
        elif battery == "known-effect":
            for point in _points(rows):
                c = coverage([r for r in rs if r["point"] == point])
                value, ci = _rate_json(c["coverage"])
                power, _ = _rate_json(c["power"])
                metrics[f"{m} (blend {KNOWN_EFFECT_BLENDS[point]:g})"] = {
                    "runs": c["coverage"].n, "coverage": value, "ci": ci, "bias": c["bias"], "bias_se": c["bias_se"],
                    "mean_true_rel_lift": c["mean_true_rel_lift"], "sd_true_rel_lift": c["sd_true_rel_lift"],
                    "mean_ci_width": c["mean_ci_width"], "power": power,
                    "pass": c["coverage"].value >= COVERAGE_TARGET}
        elif battery == "peeking":
            pk = peeking(rs, alpha)
            value, ci = _rate_json(pk["always_valid"])
            gs, gs_ci = _rate_json(pk["group_sequential"])
            naive, naive_ci = _rate_json(pk["naive_daily"])
            final, final_ci = _rate_json(pk["naive_final_look"])
            ok_msprt, _ = at_most(pk["always_valid"], alpha)
            ok_gs, _ = at_most(pk["group_sequential"], alpha)
            entry = {"runs": pk["always_valid"].n, "false_positive_rate": value, "ci": ci,
                     "group_sequential_false_positive_rate": gs, "group_sequential_ci": gs_ci,
                     "naive_false_positive_rate": naive, "naive_ci": naive_ci,
                     "final_look_false_positive_rate": final, "final_look_ci": final_ci,
                     "looks": pk["looks"], "power": {},
                     "pass": ok_msprt and ok_gs and pk["naive_daily"].ci[0] > alpha}
            for point in _points(effect_rows):
                pw = peeking([r for r in rows_of(effect_rows, m) if r["point"] == point], alpha)
                entry["power"][f"blend {KNOWN_EFFECT_BLENDS[point]:g}"] = {
                    "runs": pw["always_valid"].n, "msprt": _rate_json(pw["always_valid"])[0],
                    "group_sequential": _rate_json(pw["group_sequential"])[0],
                    "fixed_final_look": _rate_json(pw["naive_final_look"])[0], "looks": pw["looks"]}
            metrics[m] = entry
        else:
            nv = naive_vs_user(rs, m, alpha)
            value, ci = _rate_json(nv["user_level"])
            naive, naive_ci = _rate_json(nv["exposure_level"])
            metrics[m] = {"runs": nv["user_level"].n, "false_positive_rate": value, "ci": ci,
                          "exposure_level_false_positive_rate": naive, "exposure_level_ci": naive_ci,
                          "design_effect": nv["design_effect"]}
    runs = max((v.get("runs", 0) for v in metrics.values()), default=0)
    needed = AA_RUNS_TO_JUDGE if battery == "aa" else MIN_RUNS_TO_JUDGE
    if runs < needed:  # too few to judge: neither met nor missed
        return {"battery": battery, "alpha": alpha, "metrics": metrics, "pass": None,
                "verdict": f"too few runs to judge ({runs} < {needed})"}
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
def _read_summary(record: Any) -> dict:
    """``calibration.json`` of the folder (verified against its record; an empty summary
    when there is none yet)."""
    from simab.run.verify import read_verified_json

    if "calibration.json" not in record.files:
        return {"schema": 1, "batteries": {}}
    data = read_verified_json(record, "calibration.json", what="calibrate")
    if not isinstance(data, dict) or not isinstance(data.get("batteries"), dict):
        raise SimabError("not a calibration summary (expected a JSON object with batteries); move it away or choose "
                         "another --out", source=str(record.folder / "calibration.json"))
    return data


def _verdict(entry: dict) -> str:
    if entry["pass"] is None:
        return entry.get("verdict") or "too few runs to judge"
    return "all targets met" if entry["pass"] else "TARGET MISSED"


def _yes(v: dict) -> str:
    return "yes" if v["pass"] else "NO"


#: Each battery's table after the metric and runs columns: headers and one cell function each.
TABLES: dict[str, tuple[list[str], list]] = {
    "aa": (["false-positive rate", "95% CI", "binomial p", "KS p", "pass (binomial, KS at 1%; rate in [3.5%, 6.5%])"],
           [lambda v: fmt_pct(v["false_positive_rate"], ""), lambda v: fmt_ci(v["ci"], ""),
            lambda v: fmt_number(v.get("binomial_p_value"), ".3g"), lambda v: fmt_number(v["ks_p_value"], ".3g"), _yes]),
    "known-effect": (["coverage", "95% CI", "mean true lift", "bias (se)", "mean CI width", "power", ">= 93%"],
                     [lambda v: fmt_pct(v["coverage"], ""), lambda v: fmt_ci(v["ci"], ""),
                      lambda v: fmt_pct(v["mean_true_rel_lift"]),
                      lambda v: f"{fmt_pct(v['bias'])} ({fmt_pct(v['bias_se'], '')})",
                      lambda v: fmt_pct(v["mean_ci_width"], ""), lambda v: fmt_pct(v["power"], ""), _yes]),
    "peeking": (["looks", "naive daily FPR", "95% CI", "final look only", "mSPRT FPR", "95% CI",
                 "O'Brien-Fleming FPR", "95% CI", "power: mSPRT / O'Brien-Fleming / fixed (by effect)", "target"],
                [lambda v: fmt_number(v["looks"], ".3g"), lambda v: fmt_pct(v["naive_false_positive_rate"], ""),
                 lambda v: fmt_ci(v["naive_ci"], ""), lambda v: fmt_pct(v["final_look_false_positive_rate"], ""),
                 lambda v: fmt_pct(v["false_positive_rate"], ""), lambda v: fmt_ci(v["ci"], ""),
                 lambda v: fmt_pct(v.get("group_sequential_false_positive_rate"), ""),
                 lambda v: fmt_ci(v.get("group_sequential_ci", [None, None]), ""),
                 lambda v: "; ".join(f"{k}: {fmt_pct(p['msprt'], '')} / {fmt_pct(p['group_sequential'], '')} / "
                                     f"{fmt_pct(p['fixed_final_look'], '')}" for k, p in v.get("power", {}).items()) or "-",
                 _yes]),
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
    with batteries already recorded there) and returns the JSON document.  The folder's
    record lists them, the figures, every run folder and the batteries' cache."""
    from simab.run.folder import Plan, output_folder

    if runs < 2:
        raise SimabError(f"must be at least 2, got {runs}", source="--runs")
    if seed + runs - 1 > MAX_SEED:
        raise SimabError(f"runs use seeds {seed} to {seed + runs - 1}; the last must be at most {MAX_SEED}",
                         source="--seed")
    for b in batteries:
        battery_overrides(b, Path(out))  # an unknown battery fails before any folder is made
    children = sorted({f"{shared}/runs/p{p:03d}-r{r:04d}" for b in batteries for shared in PARTS[b]
                       for p in range(len(grid_points(KNOWN_EFFECT_GRID if shared == "known-effect" else {})))
                       for r in range(runs)})
    plan = Plan(files=["calibration.json", "calibration.md", *(f"{b}.png" for b in BATTERIES)], children=children,
                trees=[".cache"])
    with output_folder(out, kind="calibrate", command="simab calibrate", plan=plan, resume_if=lambda: True,
                       keep_on_failure=True) as record:
        return _calibrate_into(batteries, runs, record, workers=workers, backend=backend, seed=seed, users=users)


def _calibrate_into(batteries: list[str], runs: int, record: Any, *, workers: int, backend: str,
                    seed: int, users: int | None = None) -> dict:
    from simab.reports.json_numbers import json_safe

    out = record.folder
    data = _read_summary(record)  # the other batteries' results, verified before any campaign runs
    for b in batteries:
        started = time.perf_counter()
        entry = run_battery(b, runs, out, workers=workers, backend=backend, seed=seed, users=users)
        if entry.get("figure"):
            record.add_file(entry["figure"])
        data = _read_summary(record)
        data["batteries"][entry["battery"]] = entry
        record.write_file("calibration.json", json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")
        record.write_file("calibration.md", calibration_markdown(data))
        progress(f"calibrate {b}: {_verdict(entry)} ({time.perf_counter() - started:.0f}s)")
    return data
