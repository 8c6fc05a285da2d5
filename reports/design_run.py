"""A run folder's design analysis (:mod:`simab.reports.designs`) beside the global truth.

Reads what a run with interference writes (run.json's ``interference`` table, the exposures,
``items.parquet``: item clusters and item arms, ``markets.parquet``: each user's market, the
market parts and the ``global`` rows of ``truth.parquet``) and returns a
:class:`~simab.reports.designs.DesignReport`; under the designs whose units are not users it
also gives the report's metric records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from simab.reports import designs
from simab.reports.comparison import DEFAULT_REL_METHOD, RelMethod
from simab.reports.metric_registry import REGISTRY
from simab.reports.report import ArmValue, ComparisonReport, MetricReport
from simab.reports.run_data import RunData, decode_dictionaries

CLUSTER_DESIGNS = ("item", "two_sided", "switchback", "market")
COLUMNS = ["arm", "user", "ts", "item", "clicked", "converted", "p_click", "p_convert"]
DAY_S = 86400.0


def _read(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    if not path.exists():
        return None
    return decode_dictionaries(ds.dataset(path, format="parquet").to_table(columns=columns).unify_dictionaries())


def _lookup(keys: np.ndarray, table_keys: np.ndarray, values: np.ndarray, missing) -> np.ndarray:
    """``values`` at the position of each key in ``table_keys`` (``missing`` where absent)."""
    order = np.argsort(table_keys, kind="stable")
    sk = table_keys[order]
    pos = np.clip(np.searchsorted(sk, keys), 0, max(len(sk) - 1, 0))
    found = (sk[pos] == keys) if len(sk) else np.zeros(len(keys), bool)
    return np.where(found, values[order][pos], missing)


def _gte(run: RunData, control: str, treatment: str, limited: np.ndarray | None) -> dict[str, float]:
    """metric -> relative GTE: from the ``global`` truth rows, and for ``revenue`` from the
    global worlds' exposures (Σ p_click over the limited items per exposure)."""
    rows = [] if run.truth is None else [r for r in run.truth.to_pylist()
                                         if r["source"] == "global" and r["value"] is not None]
    val = {(r["arm"], r["metric"]): float(r["value"]) for r in rows}
    if limited is not None:
        for arm in (control, treatment):
            g = _read(run.run_dir / "global" / arm / "exposures", ["item", "p_click"])
            if g is not None and g.num_rows:
                lim = np.isin(g["item"].to_numpy(), limited)
                val[(arm, "revenue")] = float((g["p_click"].to_numpy() * lim).sum() / g.num_rows)
    out = {}
    for m in designs.RATIO_METRICS:
        c, t = val.get((control, m)), val.get((treatment, m))
        if c is not None and t is not None and c > 0:
            out[m] = t / c - 1
    return out


def _market_summary(run_dir: Path) -> dict:
    t = _read(run_dir / "market")
    if t is None or t.num_rows == 0:
        return {}
    sold = ~np.isnan(t["sold_out_ts"].to_numpy(zero_copy_only=False))
    return {"limited_items": int(len(np.unique(t["item"].to_numpy()))),
            "sold_out_share": float(sold.mean()), "spent": int(pc.sum(t["spent"]).as_py()),
            "over_cap": int(pc.sum(t["over_cap"]).as_py()), "units": int(pc.sum(t["units"]).as_py())}


def analyze_design(run: RunData, alpha: float, rel_method: RelMethod = DEFAULT_REL_METHOD) -> designs.DesignReport:
    """The design of run.json's ``interference`` table, estimated from the run's exposures."""
    info = run.info
    inter = info["interference"]
    d = inter["design"]
    kind = d["kind"]
    control = info["control"]
    treatment = inter.get("treatment") or next(a for a in info["arms"] if a != control)
    exp = _read(run.run_dir / "exposures", COLUMNS)
    arm_name = exp["arm"].to_numpy(zero_copy_only=False)
    arm = np.where(arm_name == control, 0, np.where(arm_name == treatment, 1, -1))
    users = exp["user"].to_numpy()
    ts = exp["ts"].to_numpy()
    item = exp["item"].to_numpy()
    items = _read(run.run_dir / "items.parquet")
    limited = None
    if items is not None and inter.get("market", {}).get("enabled"):
        lim = items["limited"].to_numpy(zero_copy_only=False)
        limited = np.unique(items["item"].to_numpy()[lim])
    rows = designs.exposure_rows(exp["clicked"].to_numpy(zero_copy_only=False),
                                 exp["converted"].to_numpy(zero_copy_only=False),
                                 exp["p_click"].to_numpy(), exp["p_convert"].to_numpy(),
                                 None if limited is None else np.isin(item, limited))
    mk = _read(run.run_dir / "markets.parquet")
    market = (_lookup(users, mk["user"].to_numpy(), mk["market"].to_numpy(), 0) if mk is not None
              else np.zeros(len(users), np.int64))
    shares = {a: float(info["arms"][a].get("share", 0.0)) for a in (control, treatment)}
    units: dict[str, int] = {}
    srm = None
    if kind in ("item", "two_sided"):
        per_market = int(items["market"].to_numpy().min()) >= 0
        n = int(items["item"].to_numpy().max()) + 1
        key_of = (lambda m, i: np.maximum(m, 0) * n + i) if per_market else (lambda m, i: i)  # noqa: E731
        ikey = key_of(items["market"].to_numpy(), items["item"].to_numpy())
        iarm_name = items["arm"].to_numpy(zero_copy_only=False)
        iarm = np.where(iarm_name == control, 0, np.where(iarm_name == treatment, 1, -1))
        item_arm = _lookup(key_of(market, item), ikey, iarm, -1)
        cluster = (market << 32) | _lookup(key_of(market, item), ikey, items["cluster"].to_numpy(), -1)
        cl_units = (items["market"].to_numpy() << 32) | items["cluster"].to_numpy()
        _, first = np.unique(cl_units, return_index=True)
        units = {a: int((iarm[first] == i).sum()) for i, a in enumerate((control, treatment))}
        item_share = d.get("item_share", 0.5) if kind == "two_sided" else shares[treatment] / sum(shares.values())
        srm = designs.srm_units(units, {control: 1 - item_share, treatment: item_share})
        if kind == "item":
            cell = item_arm
            compare_one = lambda m, cols: designs.one_way(m, cluster, item_arm, rows, alpha, rel_method, cols)  # noqa: E731
        else:
            cell = np.where((arm == item_arm) & (arm >= 0), arm, -1)
            units = {f"{a} users": int(len(np.unique(users[arm == i]))) for i, a in enumerate((control, treatment))} \
                | {f"{a} item clusters": n for a, n in units.items()}
            compare_one = lambda m, cols: designs.two_sided(m, arm, item_arm, users, cluster, rows, alpha,  # noqa: E731
                                                            rel_method, cols)
    else:
        if kind == "switchback":
            block_s = float(d["block_hours"]) * 3600.0
            block = np.floor(ts / block_s).astype(np.int64)
            keep = ts - block * block_s >= float(d["washout_hours"]) * 3600.0
            unit = (market << 40) | (block << 2) | (arm & 3)
            arm = np.where(keep, arm, -1)
            periods = (market << 40) | block
            counts = {}
            for i, a in enumerate((control, treatment)):
                counts[a] = int(len(np.unique(periods[arm == i])))
            units = counts
            srm = designs.srm_units(units, shares)
        elif kind == "market":
            unit = market
            units = {a: int(len(np.unique(market[arm == i]))) for i, a in enumerate((control, treatment))}
            srm = designs.srm_units(units, shares)
        else:  # user, budget_split: the main report's SRM is over these users
            unit = users
            units = {a: int(len(np.unique(users[arm == i]))) for i, a in enumerate((control, treatment))}
        cell = arm
        compare_one = lambda m, cols: designs.one_way(m, unit, arm, rows, alpha, rel_method, cols)  # noqa: E731
    gte = _gte(run, control, treatment, limited)
    wanted = [m for m in designs.RATIO_METRICS if m in (info.get("metrics") or designs.RATIO_METRICS)]
    if limited is not None:
        wanted.append("revenue")
    metrics = {m: designs.DesignMetric(compare_one(m, designs.RATIO_METRICS), gte.get(m),
                                       designs.expected_lift(m, cell, rows)) for m in wanted}
    return designs.DesignReport(kind, units, srm, metrics, d, _market_summary(run.run_dir))


def design_metric_reports(report: designs.DesignReport, control: str, treatment: str,
                          truth: dict[tuple[str, str], float]) -> dict[str, MetricReport]:
    """The report's metric records under a design whose units are not users: each ratio metric's
    comparison is the design's, judged against the GTE; the per-user metrics are left out."""
    out = {}
    note = (f"design {report.kind}: variance clustered by {designs.DESIGN_UNITS[report.kind]}; truth: the global "
            "effect (GTE)")
    for m, dm in report.metrics.items():
        if m not in REGISTRY:  # revenue: only in the interference table
            continue
        c = dm.comparison
        key = f"{treatment}_vs_{control}"
        out[m] = MetricReport(
            name=m,
            arms={control: ArmValue(c.control_value, truth.get((control, m)), c.n_control),
                  treatment: ArmValue(c.treatment_value, truth.get((treatment, m)), c.n_treatment)},
            comparisons={key: ComparisonReport(control=control, treatment=treatment, comparison=c,
                                               true_rel_lift=dm.gte_rel_lift, ci_covers_truth=dm.covers_gte,
                                               notes=(note,), cuped_reason="not applied under this design")},
        )
    return out
