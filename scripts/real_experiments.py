"""``simab analyze`` on four public experiments, beside the published numbers and an
independent route (statsmodels / scipy on the raw rows), and the sequential methods over the
ASOS experiments' looks (issue #31).

    python scripts/real_experiments.py [--data ../shared/data] [--out docs/results]

Writes docs/results/real_experiments.json and real_experiments.md (the page is ``render`` of
the JSON).  The data sets and their sources: ``<data>/README.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from experiment_kit import md_table, write_page
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from simab.reports.comparison import compare
from simab.reports.estimates import Functional, estimate
from simab.reports.experiment import analyze_summary, analyze_table, summary_moments
from simab.reports.formatting import fmt_ci, fmt_p, fmt_pct
from simab.reports.json_numbers import json_safe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ALPHA = 0.05

#: published figures, each with where it comes from
PUBLISHED = {
    "hillstrom": {
        "source": "Kevin Hillstrom, MineThatData E-Mail Analytics And Data Mining Challenge (2008): "
        "visit rate in the two weeks after the e-mail",
        "visit": {"No E-Mail": 0.106, "Mens E-Mail": 0.183, "Womens E-Mail": 0.151},
    },
    "cookie_cats": {
        "source": "\"Mobile Games A/B Testing with Cookie Cats\" (the data set's teaching project): "
        "1-day and 7-day retention by gate",
        "retention_1": {"gate_30": 0.4482, "gate_40": 0.4423},
        "retention_7": {"gate_30": 0.1902, "gate_40": 0.1820},
    },
    "udacity": {
        "source": "Udacity data analyst course project (A/B test of a new landing page): after "
        "dropping the rows whose group disagrees with the page and one duplicated user, "
        "conversion by group and the two-proportion z-test (two-sided p = 2 x the course's "
        "one-sided 0.905 complement)",
        "converted": {"control": 0.1204, "treatment": 0.1188},
        "p_value": 0.19,
    },
}


def _read(data: Path, name: str) -> pa.Table:
    return pq.read_table(data / f"{name}.parquet")


def _rows_of(report, metric: str) -> dict:
    m = report.metrics[metric]
    out = {"values": {a: v.value for a, v in m.arms.items()}, "comparisons": {}}
    for key, r in m.comparisons.items():
        c = r.comparison
        out["comparisons"][key] = {
            "rel_lift": c.rel_lift, "rel_ci": list(c.rel_ci), "abs_lift": c.abs_lift,
            "p_value": c.p_value, "p_value_adjusted": r.p_value_adjusted,
            "rel_ci_method": c.rel_method,
            "sequential_p": None if r.sequential is None else r.sequential.p_value,
        }
    return out


def _independent(values: np.ndarray, arms: np.ndarray, control: str, treatment: str,
                 binary: bool) -> dict:
    """Welch t (scipy) and, for 0/1 outcomes, the two-proportion z-test (statsmodels)."""
    x_c, x_t = values[arms == control], values[arms == treatment]
    out = {"welch_p": float(stats.ttest_ind(x_t, x_c, equal_var=False).pvalue),
           "rate_control": float(x_c.mean()), "rate_treatment": float(x_t.mean())}
    if binary:
        out["ztest_p"] = float(proportions_ztest([x_t.sum(), x_c.sum()], [x_t.size, x_c.size])[1])
    return out


def _checks(report) -> list[dict]:
    return [c.to_json() for c in report.data_checks]


def hillstrom(data: Path) -> dict:
    t = _read(data, "hillstrom")
    rep = analyze_table(t, arm="segment", control="No E-Mail",
                        metrics=["visit", "conversion", "spend"], covariates=["spend=history"])
    arms = np.array(t["segment"].to_pylist())
    out = {"units": t.num_rows, "checks": _checks(rep), "metrics": {}}
    for metric in ("visit", "conversion", "spend"):
        row = _rows_of(rep, metric)
        x = t[metric].to_numpy().astype(float)
        row["independent"] = {
            treat: _independent(x, arms, "No E-Mail", treat, metric != "spend")
            for treat in ("Mens E-Mail", "Womens E-Mail")}
        out["metrics"][metric] = row
    cup = rep.metrics["spend"].comparisons["Mens E-Mail_vs_No E-Mail"].cuped
    out["cuped_spend_history"] = {"variance_reduction": cup.variance_reduction, "theta": cup.theta}
    return out


def cookie_cats(data: Path) -> dict:
    t = _read(data, "cookie_cats")
    rep = analyze_table(t, arm="version", control="gate_30", unit="userid",
                        metrics=["retention_1", "retention_7"])
    arms = np.array(t["version"].to_pylist())
    out = {"units": t.num_rows, "checks": _checks(rep), "metrics": {}}
    for metric in ("retention_1", "retention_7"):
        row = _rows_of(rep, metric)
        x = np.array(t[metric].to_pylist(), dtype=float)
        row["independent"] = {"gate_40": _independent(x, arms, "gate_30", "gate_40", True)}
        out["metrics"][metric] = row
    return out


def published_udacity_cleaning(t: pa.Table) -> pa.Table:
    """The course's cleaning, written independently of simab: drop rows whose group and page
    disagree, then keep the first row of each remaining user."""
    aligned = pc.equal(pc.equal(t["group"], "treatment"), pc.equal(t["landing_page"], "new_page"))
    t = t.filter(aligned)
    _, first = np.unique(t["user_id"].to_numpy(), return_index=True)
    return t.take(pa.array(np.sort(first)))


def udacity(data: Path) -> dict:
    t = _read(data, "udacity_ab_data")
    kw = dict(arm="group", control="control", metrics=["converted"])
    runs = {
        "rows as units (no checks of units)": analyze_table(t, **kw, time="timestamp"),
        "units by user_id, flagged": analyze_table(t, **kw, unit="user_id", time="timestamp"),
        "units by user_id, --drop-invalid": analyze_table(t, **kw, unit="user_id", time="timestamp",
                                                          drop_invalid=True),
    }
    clean = published_udacity_cleaning(t)
    runs["published cleaning (pandas-style, outside simab)"] = analyze_table(clean, **kw)
    out = {"rows": t.num_rows, "runs": {}}
    for label, rep in runs.items():
        out["runs"][label] = {"checks": _checks(rep), "units": rep.data["units_analysed"],
                              "left_out": rep.data["left_out"], **_rows_of(rep, "converted")}
    x = clean["converted"].to_numpy().astype(float)
    out["independent_published_cleaning"] = _independent(
        x, np.array(clean["group"].to_pylist()), "control", "treatment", True) | {"units": clean.num_rows}
    return out


def _series_looks(t: pa.Table) -> dict:
    """(experiment, variant, metric) -> sorted looks of (time, n_c, mean_c, var_c, n_t, ...)."""
    cols = ["experiment_id", "variant_id", "metric_id", "time_since_start", "count_c", "mean_c",
            "variance_c", "count_t", "mean_t", "variance_t"]
    rows = t.select(cols).to_pylist()
    out: dict = {}
    for r in rows:
        out.setdefault((r["experiment_id"], r["variant_id"], r["metric_id"]), []).append(r)
    return {k: sorted(v, key=lambda r: r["time_since_start"]) for k, v in sorted(out.items())}


def asos(data: Path) -> dict:
    """For each (experiment, variant, metric): significance of the fixed-horizon test at the
    last look, of naive peeking (the fixed-horizon test at every look), and of the always-valid
    test (simab analyze --summary's sequential p over the looks)."""
    t = _read(data, "asos_experiments")
    series = _series_looks(t)
    counts = {m: {"series": 0, "analysable": 0, "fixed": 0, "peeking": 0, "always_valid": 0,
                  "always_valid_not_fixed": 0, "fixed_not_always_valid": 0}
              for m in ("1", "2", "3", "4", "all")}
    per_pair = {}
    for exp_id, variant in sorted({(e, v) for e, v, _ in series}):
        table = t.filter(pc.and_(pc.equal(t["experiment_id"], exp_id), pc.equal(t["variant_id"], variant)))
        rep = analyze_summary(table, control="c", wide=["c", "t"], metric="metric_id",
                              look="time_since_start", alpha=ALPHA)
        per_pair[f"{exp_id}/{variant}"] = {k: m.comparisons["t_vs_c"].comparison.p_value
                                           for k, m in rep.metrics.items()}
        for metric in ("1", "2", "3", "4"):
            looks = series.get((exp_id, variant, int(metric)))
            if looks is None:
                continue
            for key in (metric, "all"):
                counts[key]["series"] += 1
            name = f"metric_id_{metric}"
            if name not in rep.metrics:
                continue
            r = rep.metrics[name].comparisons["t_vs_c"]
            naive = []
            for row in looks:
                stat = [row[f"{k}_{x}"] for k in ("count", "mean", "variance") for x in "ct"]
                if any(v is None or not math.isfinite(v) for v in stat):
                    continue  # a look with a missing variance: the report leaves it out too
                est = {arm: estimate(arm, summary_moments(row[f"count_{s}"], row[f"mean_{s}"],
                                                          row[f"variance_{s}"]), Functional("x"))
                       for arm, s in (("c", "c"), ("t", "t"))}
                naive.append(compare(est["c"], est["t"], ALPHA).p_value)
            fixed = r.comparison.p_value
            seq = r.sequential.p_value if r.sequential is not None else float("nan")
            for key in (metric, "all"):
                c = counts[key]
                c["analysable"] += 1
                c["fixed"] += int(fixed < ALPHA)
                c["peeking"] += int(any(p < ALPHA for p in naive))
                c["always_valid"] += int(seq < ALPHA)
                c["always_valid_not_fixed"] += int(seq < ALPHA <= fixed)
                c["fixed_not_always_valid"] += int(fixed < ALPHA <= seq)
    pairs = sorted({(e, v) for e, v, _ in series})
    return {"experiments": len({e for e, _ in pairs}), "pairs": len(pairs), "counts": counts,
            "fixed_p_last_look": per_pair}


def compute(data: Path) -> dict:
    """Every figure of the page, JSON-safe (NaN as null)."""
    return json_safe({"alpha": ALPHA, "published": PUBLISHED, "hillstrom": hillstrom(data),
            "cookie_cats": cookie_cats(data), "udacity": udacity(data), "asos": asos(data)})


def _failed(checks: list[dict]) -> str:
    bad = [c["check"] for c in checks if c["ok"] is False]
    unchecked = sum(c["ok"] is None for c in checks)
    text = ", ".join(bad) if bad else "none"
    return text + (f" ({unchecked} not checked: no unit column)" if unchecked else "")


def render(s: dict) -> str:
    pub = s["published"]
    lines = [
        "# simab analyze on real experiments",
        "",
        "`simab analyze` (the campaign report's statistics: delta method, Welch df, Holm over "
        "metrics x arms, SRM, CUPED, mSPRT) on four public experiments; data and sources in "
        "`shared/data/README.md`. Each rate is beside the published figure and each p beside an "
        "independent route on the raw rows (scipy's Welch t-test; statsmodels' two-proportion "
        "z-test for 0/1 outcomes, whose pooled variance differs slightly from Welch's). "
        f"alpha = {s['alpha']}. Regenerate: `python scripts/real_experiments.py`. "
        "`tests/reports/test_real_experiments.py` checks these figures, and tea-tasting's, "
        "from the data.",
        "",
        "## Hillstrom e-mail test (64,000 customers, three arms)",
        "",
        f"Published: {pub['hillstrom']['source']}.",
        "",
    ]
    h = s["hillstrom"]
    rows = []
    for metric, m in h["metrics"].items():
        for key, c in m["comparisons"].items():
            treat = key.split("_vs_")[0]
            ind = m["independent"][treat]
            published = pub["hillstrom"].get(metric, {})
            rows.append((metric, key.replace("_vs_", " vs "),
                         f"{m['values']['No E-Mail']:.4g}" + (
                             f" ({published['No E-Mail']:.1%})" if published else ""),
                         f"{m['values'][treat]:.4g}" + (f" ({published[treat]:.1%})" if published else ""),
                         fmt_pct(c["rel_lift"]), fmt_ci(c["rel_ci"]), fmt_p(c["p_value"]), fmt_p(ind["welch_p"]),
                         fmt_p(ind.get("ztest_p"))))
    lines += md_table(("metric", "comparison", "control (published)", "treatment (published)",
                       "rel lift", "CI", "p", "scipy Welch p", "statsmodels z p"), rows)
    cup = h["cuped_spend_history"]
    lines += ["", f"Failed data checks: {_failed(h['checks'])}. CUPED of spend on the customer's past-year "
              f"spend (`--covariate spend=history`): variance reduction {cup['variance_reduction']:.2%} "
              "(past spend barely predicts two weeks of spend here).", ""]
    c = s["cookie_cats"]
    lines += ["## Cookie Cats (90,189 players, gate at level 30 vs 40)", "",
              f"Published: {pub['cookie_cats']['source']}.", ""]
    rows = []
    for metric, m in c["metrics"].items():
        cmp_ = m["comparisons"]["gate_40_vs_gate_30"]
        ind = m["independent"]["gate_40"]
        p = pub["cookie_cats"][metric]
        rows.append((metric, f"{m['values']['gate_30']:.4f} ({p['gate_30']:.2%})",
                     f"{m['values']['gate_40']:.4f} ({p['gate_40']:.2%})", fmt_pct(cmp_["rel_lift"]),
                     fmt_ci(cmp_["rel_ci"]), fmt_p(cmp_["p_value"]), fmt_p(ind["welch_p"]), fmt_p(ind["ztest_p"])))
    lines += md_table(("metric", "gate_30 (published)", "gate_40 (published)", "rel lift", "CI", "p",
                       "scipy Welch p", "statsmodels z p"), rows)
    srm = next(x for x in c["checks"] if x["check"] == "sample_ratio")
    lines += ["", f"Failed data checks: {_failed(c['checks'])}; sample ratio: {srm['detail']}.", ""]
    u = s["udacity"]
    lines += ["## Udacity landing page (294,478 page views)", "",
              f"Published: {pub['udacity']['source']}: control {pub['udacity']['converted']['control']:.2%}, "
              f"treatment {pub['udacity']['converted']['treatment']:.2%}, p = {pub['udacity']['p_value']}.",
              ""]
    rows = []
    for label, r in u["runs"].items():
        cmp_ = r["comparisons"]["treatment_vs_control"]
        rows.append((label, f"{r['units']:,}", f"{r['left_out']['rows']:,}", _failed(r["checks"]),
                     f"{r['values']['control']:.4f}", f"{r['values']['treatment']:.4f}",
                     fmt_pct(cmp_["rel_lift"]), fmt_ci(cmp_["rel_ci"]), fmt_p(cmp_["p_value"]),
                     fmt_p(cmp_["sequential_p"])))
    lines += md_table(("analysis", "units", "rows left out", "failed checks", "control", "treatment",
                       "rel lift", "CI", "p", "always-valid p (daily looks)"), rows)
    ind = u["independent_published_cleaning"]
    lines += ["", f"Independent route on the published cleaning ({ind['units']:,} users): control "
              f"{ind['rate_control']:.4f}, treatment {ind['rate_treatment']:.4f}, statsmodels z-test "
              f"p = {ind['ztest_p']:.4f}, scipy Welch p = {ind['welch_p']:.4f}. The units-by-user run "
              "catches the users seen in both groups (`units_in_several_arms`) and the users with two "
              "rows (`duplicated_units`); `--drop-invalid` drops every such user, where the course "
              "keeps one row of each, hence its slightly different rates.", ""]
    a = s["asos"]
    lines += ["## ASOS: 78 experiments, per-arm summary statistics at successive looks", "",
              f"{a['experiments']} experiments, {a['pairs']} treatment-vs-control pairs, 4 metrics: each "
              "series analysed by `simab analyze --summary --wide c,t --metric-column metric_id --time "
              "time_since_start`. Significance at alpha = 0.05 by the fixed-horizon test at the last "
              "look, by naive peeking (the fixed-horizon test at every look, stopping at the first "
              "p < alpha) and by the always-valid mSPRT p over the looks. Series whose variances are "
              "missing at every look are not analysable.", ""]
    rows = []
    for metric, k in a["counts"].items():
        n = k["analysable"]
        rows.append((metric, k["series"], n, f"{k['fixed']} ({k['fixed'] / n:.1%})" if n else "-",
                     f"{k['peeking']} ({k['peeking'] / n:.1%})" if n else "-",
                     f"{k['always_valid']} ({k['always_valid'] / n:.1%})" if n else "-"))
    lines += md_table(("metric", "series", "analysable", "fixed horizon, last look", "naive peeking",
                       "always valid (mSPRT)"), rows)
    k = a["counts"]["all"]
    lines += ["", f"Naive peeking declares {k['peeking']} of {k['analysable']} series significant, "
              f"the fixed-horizon test at the last look {k['fixed']}: every extra look is another "
              "chance of a false positive. The always-valid test declares "
              f"{k['always_valid']}; it and the last look disagree on "
              f"{k['always_valid_not_fixed'] + k['fixed_not_always_valid']} series "
              f"({k['always_valid_not_fixed']} significant only for the always-valid test, which "
              "keeps a crossing once made, e.g. an effect that was large early and faded; "
              f"{k['fixed_not_always_valid']} only at the last look, where the always-valid "
              "interval is wider). Real effects need not be constant over an experiment, so these "
              "counts are not false-positive rates; the simulated peeking battery "
              "(docs/calibration.md) measures those where the truth is known.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the shared data sets")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results", help="results folder")
    args = ap.parse_args(argv)
    if not (args.data / "hillstrom.parquet").exists():
        print(f"error: {args.data}: the shared data sets are not there (--data DIR)", file=sys.stderr)
        return 2
    summary = compute(args.data)
    page = write_page(args.out, "real_experiments", summary, render(summary))
    print(f"wrote {page} and {page.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
