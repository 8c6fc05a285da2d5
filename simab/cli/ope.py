"""``simab ope CAMPAIGN.toml``: off-policy estimates of each arm's CTR / CTCVR and of the
lift, from a pre-period served by a stochastic logging policy, beside the true values of
the arms' slates on the same requests (docs/ope.md).

Steps: the campaign's arms are prepared as a campaign prepares them
(``arm_policies.prepare_policies``: trainable arms train on the cached pre-period); a
logging run (uniformly random slates, the pre-period's own epsilon-greedy logger or
Plackett-Luce over popularity) serves the pre-period's users and days, recording every
arm's top-K on each request, its truth and the logger's marginal propensities
(``simab.ope.logs``, ``simab.ope.marginal``); a reward model is
fitted on the log for the direct method; IPS, SNIPS, DM and DR estimate each arm and each
treatment-vs-control lift (``simab.ope.estimators``); with ``--online`` the campaign also runs (into
``<out>/campaign``) and its A/B estimate and true lift sit beside them.  Writes ``ope.json``,
``ope.md``, ``ope.png`` and the joined log ``ope_log.parquet`` into the output folder.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from simab.atomic import write_atomic
from simab.errors import SimabError
from simab.ope.estimators import (
    ESTIMATORS,
    SlateLog,
    TargetPolicy,
    estimate,
    fit_reward_model,
    lift,
    predict,
)
from simab.ope.logs import OPE_LOGGING_MODES, OpeLog, collect
from simab.progress import progress
from simab.reports.formatting import fmt_ci, fmt_number, fmt_pct

#: metric -> the logged reward column (per exposure) and the truth column prefix
METRICS = {"ctr": "clicked", "ctcvr": "converted"}
OFFLINE_KEYS = ("auc", "gauc", "logloss")


def _design(scenario: np.ndarray, position: np.ndarray, logpop: np.ndarray, n_scenarios: int) -> np.ndarray:
    """The reward model's features: a base rate per scenario, a per-scenario slope in
    log(1 + position) (the world's examination curve is a power of 1 + position) and the
    item's log popularity (what every policy sees)."""
    onehot = (scenario[:, None] == np.arange(n_scenarios)[None, :]).astype(np.float64)
    return np.column_stack([onehot, onehot * np.log1p(position)[:, None], logpop])


def analyze(log: OpeLog, logpop: np.ndarray, n_scenarios: int, alpha: float = 0.05) -> dict:
    """Every estimator's estimate of every arm and lift, per metric, beside the truth."""
    t = log.table
    col = {c: t.column(c).to_numpy() for c in t.column_names}
    user, pos, sc = col["user"], col["position"].astype(np.int64), col["scenario"].astype(np.int64)
    arms = list(log.arms)
    control = arms[0]
    x_logged = _design(sc, pos, logpop[col["logged_item"]], n_scenarios)
    out: dict = {}
    for metric, reward_col in METRICS.items():
        reward = col[reward_col].astype(np.float64)
        beta = fit_reward_model(x_logged, reward)
        slate_log = SlateLog(user, pos, reward, col["marginal_propensity"], predict(x_logged, beta))
        targets = {}
        for arm in arms:
            item = col[f"item/{arm}"]
            targets[arm] = TargetPolicy((item == col["logged_item"]).astype(np.float64),
                                        predict(_design(sc, pos, logpop[item], n_scenarios), beta))
        truth = {arm: float(col[f"true_{metric}/{arm}"].mean()) for arm in arms}
        m: dict = {"logged_value": float(reward.mean()), "arms": {}, "comparisons": {}}
        for arm in arms:
            ests = {e: estimate(slate_log, targets[arm], e, alpha) for e in ESTIMATORS}
            m["arms"][arm] = {"true_value": truth[arm], "estimates": {
                e: {"value": r.value, "se": r.se, "ci": list(r.ci), "covers_truth": r.ci[0] <= truth[arm] <= r.ci[1]}
                for e, r in ests.items()}}
        for arm in arms[1:]:
            true_abs = truth[arm] - truth[control]
            true_rel = truth[arm] / truth[control] - 1.0
            ests = {}
            for e in ESTIMATORS:
                a, r = lift(slate_log, targets[control], targets[arm], e, alpha)
                ests[e] = {"abs_lift": a.value, "abs_ci": list(a.ci), "rel_lift": r.value, "rel_ci": list(r.ci),
                           "covers_truth": None if math.isnan(r.value) else r.ci[0] <= true_rel <= r.ci[1]}
            m["comparisons"][f"{arm}_vs_{control}"] = {"true_abs_lift": true_abs, "true_rel_lift": true_rel,
                                                        "estimates": ests}
        out[metric] = m
    return out


def render_md(data: dict) -> str:
    lines = [f"# Off-policy evaluation: {data['campaign']}", "",
             f"Logging policy `{data['logging']['mode']}` over the pre-period: {data['logging']['users']:,} users, "
             f"{data['logging']['requests']:,} requests, {data['logging']['exposures']:,} exposures. "
             f"Estimators under the item-position model (docs/ope.md); {1 - data['alpha']:.0%} intervals by the "
             "delta method clustered by user. The truth is the oracle's value of each arm's slates on the same "
             "requests.", ""]
    offline = {a: v for a, v in data["offline"].items() if v}
    if offline:
        lines += ["## Offline metrics (validation)", "", "| arm | " + " | ".join(OFFLINE_KEYS) + " |",
                  "|---|" + "---|" * len(OFFLINE_KEYS)]
        lines += [f"| {a} | " + " | ".join(fmt_number(v.get(k, float("nan"))) for k in OFFLINE_KEYS) + " |"
                  for a, v in offline.items()]
        lines.append("")
    for metric, m in data["metrics"].items():
        lines += [f"## {metric}", "", f"Logged value (logging policy): {fmt_number(m['logged_value'])}", "",
                  "| arm | truth | " + " | ".join(f"{e} [CI]" for e in ESTIMATORS) + " |",
                  "|---|---|" + "---|" * len(ESTIMATORS)]
        for arm, a in m["arms"].items():
            cells = [f"{fmt_number(r['value'])} [{fmt_number(r['ci'][0])}, {fmt_number(r['ci'][1])}]{'' if r['covers_truth'] else ' (miss)'}"
                     for r in a["estimates"].values()]
            lines.append(f"| {arm} | {fmt_number(a['true_value'])} | " + " | ".join(cells) + " |")
        for name, c in m["comparisons"].items():
            lines += ["", f"Relative lift {name}: truth {fmt_pct(c['true_rel_lift'])}", "",
                      "| estimator | rel lift | CI | covers truth |", "|---|---|---|---|"]
            lines += [f"| {e} | {fmt_pct(r['rel_lift'])} | {fmt_ci(r['rel_ci'])} | "
                      f"{ {True: 'yes', False: 'no'}.get(r['covers_truth'], 'n/a')} |" for e, r in c["estimates"].items()]
            o = c.get("online")
            if o and o["rel_lift"] is not None and None not in o["rel_ci"]:
                covers = {True: "yes", False: "no"}.get(o["ci_covers_truth"], "n/a")
                lines += ["", f"Online A/B (the campaign): {fmt_pct(o['rel_lift'])} {fmt_ci(o['rel_ci'])}; "
                          f"the campaign's true lift {fmt_pct(o['true_rel_lift'])} (covered: {covers})"]
            d = c.get("offline_difference")
            if d:
                lines += ["", "Offline difference (treatment - control, validation): "
                          + ", ".join(f"{k} {v:+.4f}" for k, v in d.items() if v is not None)]
        lines.append("")
    return "\n".join(lines)


def render_png(data: dict) -> bytes:
    """Per metric: each arm's estimates with intervals and its truth (dashed), and each
    relative lift's estimates with intervals, its truth and (with --online) the A/B
    estimate and the online truth; beside them, each comparison's offline (validation)
    AUC / GAUC / logloss difference where both arms are trained."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(data["metrics"])
    fig, axes = plt.subplots(len(metrics), 3, figsize=(14, 3.2 * len(metrics)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.2, 0.8]})
    _offline_panel(axes[0][2], data["metrics"][metrics[0]]["comparisons"])
    for row in range(1, len(metrics)):
        axes[row][2].axis("off")
    for row, metric in enumerate(metrics):
        m = data["metrics"][metric]
        ax = axes[row][0]
        for i, a in enumerate(m["arms"].values()):
            for j, (e, r) in enumerate(a["estimates"].items()):
                x = i + (j - 1.5) * 0.15
                ax.errorbar([x], [r["value"]], yerr=[[r["value"] - r["ci"][0]], [r["ci"][1] - r["value"]]],
                            fmt="o", color=f"C{j}", label=e if i == 0 else None, capsize=3)
            ax.hlines(a["true_value"], i - 0.35, i + 0.35, colors="k", linestyles="--",
                      label="truth" if i == 0 else None)
        ax.set_xticks(range(len(m["arms"])), list(m["arms"]))
        ax.set_title(f"{metric}: value per arm")
        ax.legend(fontsize=7)
        ax = axes[row][1]
        for i, c in enumerate(m["comparisons"].values()):
            for j, (e, r) in enumerate(c["estimates"].items()):
                if math.isnan(r["rel_lift"]):
                    continue
                x = i + (j - 1.5) * 0.15
                ax.errorbar([x], [r["rel_lift"]], yerr=[[r["rel_lift"] - r["rel_ci"][0]], [r["rel_ci"][1] - r["rel_lift"]]],
                            fmt="o", color=f"C{j}", capsize=3, label=e if i == 0 else None)
            ax.hlines(c["true_rel_lift"], i - 0.35, i + 0.35, colors="k", linestyles="--")
            o = c.get("online")
            if o and o["rel_lift"] is not None and None not in o["rel_ci"]:
                ax.errorbar([i + 0.45], [o["rel_lift"]], yerr=[[o["rel_lift"] - o["rel_ci"][0]],
                            [o["rel_ci"][1] - o["rel_lift"]]], fmt="s", color="k", capsize=3,
                            label="online A/B" if i == 0 else None)
                if o["true_rel_lift"] is not None:
                    ax.hlines(o["true_rel_lift"], i + 0.3, i + 0.6, colors="k", linestyles=":",
                              label="online truth" if i == 0 else None)
        ax.set_xticks(range(len(m["comparisons"])), list(m["comparisons"]))
        ax.set_title(f"{metric}: relative lift (dashed: truth)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _offline_panel(ax, comparisons: dict) -> None:
    """Grouped bars: each comparison's validation AUC / GAUC / logloss difference
    (treatment - control); a note where no comparison has both arms trained."""
    diffs = {name: c.get("offline_difference") for name, c in comparisons.items()}
    diffs = {n: d for n, d in diffs.items() if d}
    ax.set_title("offline difference (validation)")
    if not diffs:
        ax.text(0.5, 0.5, "no offline metrics:\nan arm is a fixed policy", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for j, key in enumerate(OFFLINE_KEYS):
        for i, d in enumerate(diffs.values()):
            v = d.get(key)
            if v is not None:
                ax.bar(i + (j - 1) * 0.25, v, width=0.25, color=f"C{j + 4}", label=key if i == 0 else None)
                ax.annotate(f"{v:+.4f}", (i + (j - 1) * 0.25, v), ha="center", fontsize=7,
                            va="bottom" if v >= 0 else "top")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(range(len(diffs)), list(diffs))
    ax.legend(fontsize=7)


def add_offline_differences(data: dict) -> None:
    """Each comparison's offline (validation) metric differences, treatment - control,
    where both arms were trained (``offline`` of ``ope.json``)."""
    off = data["offline"]
    for m in data["metrics"].values():
        for name, c in m["comparisons"].items():
            treatment, control = name.split("_vs_", 1)
            if off.get(treatment) and off.get(control):
                c["offline_difference"] = {k: _diff(off[treatment].get(k), off[control].get(k)) for k in OFFLINE_KEYS}
            else:
                c["offline_difference"] = None


def _diff(a, b):
    return None if a is None or b is None else a - b


def _online_report(spec, run_dir: Path, workers: int) -> dict:
    """Run the campaign online into ``run_dir`` and return its ``report.json``."""
    from simab.run.runner import run_campaign

    progress(f"ope {spec.name!r}: the campaign online -> {run_dir}")
    res = run_campaign(spec, out=run_dir, workers=workers, overwrite=True)
    return json.loads((res.run_dir / "report.json").read_text())


def add_online(data: dict, report: dict) -> None:
    """The online A/B estimate (relative lift, its CI) and the campaign's true lift beside
    each comparison's off-policy estimates."""
    for metric, m in data["metrics"].items():
        online = report["metrics"].get(metric, {}).get("comparisons", {})
        for name, c in m["comparisons"].items():
            o = online.get(name)
            c["online"] = None if o is None else {
                "rel_lift": o["rel_lift"], "rel_ci": o["rel_ci"], "true_rel_lift": o.get("true_rel_lift"),
                "ci_covers_truth": o.get("ci_covers_truth")}


#: What each logging mode's marginal propensities are (ope.json ``assumptions``).
MARGINALS = {"uniform": "1 / C, exact (uniform logging)",
             "epsilon": "exact, by a Markov chain over the epsilon-greedy logger's picks (simab/ope/marginal.py)",
             "plackett_luce": "Monte-Carlo (importance-sampled Rao-Blackwell average over prefixes, "
                              "simab/ope/marginal.py); ``logging.marginal_rel_se`` is its relative error"}


def run_ope(spec, out: Path, *, mode: str = "uniform", temperature: float = 1.0, workers: int = 1,
            online: bool = False) -> dict:
    """Prepare the arms, run the logging policy, estimate and write the outputs into
    ``out``; with ``online``, also run the campaign (into ``out/campaign``) and put its A/B
    estimates and true lifts beside the off-policy ones.  Returns ``ope.json``'s content."""
    from simab.run.arm_policies import build_policy, prepare_policies
    from simab.run.folder import cache_dir
    from simab.simulators.world import World

    started = time.perf_counter()
    if mode not in OPE_LOGGING_MODES:
        raise SimabError(f"{mode!r} is not supported; one of {list(OPE_LOGGING_MODES)}", key="--logging")
    if len(spec.arms) < 2:
        raise SimabError("off-policy evaluation compares arms: the campaign needs at least 2", key="arms")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimabError(f"output folder is not writable: {exc.strerror or exc}", source=str(out)) from None
    if spec.world.pre_period_days <= 0:
        raise SimabError("off-policy evaluation needs a pre-period: must be > 0", key="world.pre_period_days")
    world = World.build(spec.world, spec.seed)
    descs = prepare_policies(spec, world, out, cache_dir(spec.training.cache_dir), workers=workers)
    policies = {}
    for arm, desc in descs.items():
        p = build_policy(desc, world)
        if getattr(p, "stochastic", False):
            raise SimabError(f"policy {desc['name']!r} ranks at random; off-policy evaluation here replays "
                             "deterministic rankings (any other policy)", key=f"arms.{arm}.policy")
        policies[arm] = p
    progress(f"ope {spec.name!r}: logging policy {mode!r} over the pre-period ({spec.world.n_users:,} users) ...")
    log = collect(world, policies, mode, temperature)
    t = log.table
    logging = {"mode": mode, "users": len(np.unique(t.column("user").to_numpy())),
               "requests": len(np.unique(t.column("request").to_numpy())), "exposures": t.num_rows}
    if mode == "epsilon":
        logging["epsilon"] = spec.world.logging_epsilon
    if mode == "plackett_luce":
        rel = t.column("marginal_se").to_numpy() / t.column("marginal_propensity").to_numpy()
        logging.update(temperature=temperature, marginal_rel_se={"median": float(np.median(rel)),
                                                                 "p99": float(np.quantile(rel, 0.99))})
    p0 = t.column("marginal_propensity").to_numpy()
    logging["marginal_propensity"] = {"min": float(p0.min()), "median": float(np.median(p0)), "max": float(p0.max())}
    data = {
        "schema": 1, "campaign": spec.name, "seed": spec.seed, "alpha": spec.alpha,
        "logging": logging,
        "assumptions": "item-position model: the reward of an item at a position does not depend on the rest "
                       f"of the slate; marginal propensities {MARGINALS[mode]}",
        "offline": {arm: ({k: d["metrics"].get(k) for k in OFFLINE_KEYS} if "metrics" in d else None)
                    for arm, d in descs.items()},
        "metrics": analyze(log, world.catalog.logpop, len(world.scenario_names), spec.alpha),
    }
    add_offline_differences(data)
    if online:
        add_online(data, _online_report(spec, out / "campaign", workers))
    data["runtime"] = {"wall_s": time.perf_counter() - started}
    from simab.reports.json_numbers import json_safe

    write_atomic(out / "ope.json", json.dumps(json_safe(data), indent=2, allow_nan=False))
    write_atomic(out / "ope.md", render_md(data))
    write_atomic(out / "ope.png", render_png(data))
    write_atomic(out / "ope_log.parquet", lambda tmp: pq.write_table(t, tmp))
    return data


def ope_main(args) -> int:
    from simab.spec import load_campaign

    values = {}
    flags: dict[str, str] = {}
    if args.set:
        from simab.overrides import parse_overrides
        from simab.spec import flat_keys

        values = parse_overrides(args.set)
        flags = {k: "--set" for k in flat_keys(values)}
    overrides = None
    if args.seed is not None:
        overrides, flags = {"seed": args.seed}, {**flags, "seed": "--seed"}
    spec = load_campaign(args.spec, overrides=overrides, set_values=values, flags=flags)
    out = Path(args.out) if args.out else Path(spec.output) / f"{spec.name}-ope"
    data = run_ope(spec, out, mode=args.logging, temperature=args.temperature, workers=args.workers,
                   online=args.online)
    print(render_md(data))
    print(f"\nwrote {out / 'ope.json'}, {out / 'ope.md'}, {out / 'ope.png'}, {out / 'ope_log.parquet'}")
    return 0
