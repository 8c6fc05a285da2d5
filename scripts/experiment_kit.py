"""Shared pieces of the reproduction scripts (``scripts/reproduce_*.py``).

Each script states its experiments as data (a list of :class:`Model` per seed) and uses:

* :func:`add_common_args` / :func:`apply_quick`: the flags every script has (world size,
  trainer settings, seeds, campaign length, cache and output folders) and ``--quick``;
* :func:`load_world`: world + training/validation data from the cached pre-period;
* :func:`train_grid`: every model on every seed through ``load_or_train`` (or a script's own
  training function), returning one offline-metrics row per model and seed;
* :func:`ab_campaign`: a two-arm campaign control vs treatment, returning the analysed
  :class:`simab.reports.report.Report` (:func:`comparison_fields` reads named fields of it);
* :func:`write_page`: the results page pair ``<stem>.json`` + ``<stem>.md``, keeping the
  hand-written notes of an existing page; :func:`md_table`, :func:`mean_std`, :func:`pct`
  and :func:`seed_spread` format and compare the rows.

Scripts import it as ``experiment_kit`` (Python puts the script's folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simab.policies.world_features import feature_spec_of
from simab.reports.formatting import fmt_pct
from simab.run.folder import cache_root

ROOT = Path(__file__).resolve().parents[1]

#: What ``--quick`` sets: the smallest settings at which every part of a script still runs
#: (a smoke run of seconds to a minute per script on one CPU, not a result).
QUICK = {"users": 100, "epochs": 1, "max_steps": 5, "seeds": 1, "campaign_days": 0.05}


# --------------------------------------------------------------------------- flags
def add_common_args(ap: argparse.ArgumentParser, *, users: int, campaign_days: float,
                    users_help: str = "world n_users (the preset has 5000)", seed_help: str | None = None,
                    seeds_help: str | None = "model seeds: seed, seed+1, ...",
                    campaign_help: str = "0 skips the campaign") -> None:
    """Add the flags shared by every reproduction script."""
    ap.add_argument("--users", type=int, default=users, help=users_help)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--monitor", choices=["auc", "logloss"], default="auc",
                    help="early stopping watches this validation metric (default auc; --epochs is the cap)")
    ap.add_argument("--patience", type=int, default=2, help="epochs without a better monitored value before stopping")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--embedding-dim", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3, help=seeds_help)
    ap.add_argument("--seed", type=int, default=7,
                    help=seed_help or "world and campaign seed (first model seed)")
    ap.add_argument("--campaign-days", type=float, default=campaign_days, help=campaign_help)
    ap.add_argument("--cache", default=str(cache_root()), help="pre-period and checkpoint cache (default: $SIMAB_CACHE or ~/.cache/simab)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run at the smallest settings (" + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                    + "); combine with --out elsewhere so the recorded pages are not overwritten")


def apply_quick(args: argparse.Namespace, extra: dict | None = None) -> argparse.Namespace:
    """With ``--quick``, replace the size flags by :data:`QUICK` (and a script's ``extra``)."""
    if args.quick:
        for key, value in {**QUICK, **(extra or {})}.items():
            setattr(args, key, value)
    return args


def model_seeds(args: argparse.Namespace) -> list[int]:
    """The model seeds ``--seed``, ``--seed`` + 1, ... (``--seeds`` of them)."""
    return [args.seed + i for i in range(args.seeds)]


def trainer_config(args: argparse.Namespace, seed: int):
    """The offline trainer settings of the common flags for one model seed; applies
    ``--threads`` to torch (two processes with torch's default of one thread per core
    oversubscribe a small machine, and its spinning threads then waste most of the time)."""
    import torch

    from simab.policies.trainer import TrainerConfig

    torch.set_num_threads(args.threads)
    return TrainerConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps,
                         monitor=getattr(args, "monitor", "auc"), patience=getattr(args, "patience", 2),
                         seed=seed, progress=False)


def nest(path: Sequence[str], value: Any) -> dict:
    """``("a", "b"), v`` -> ``{"a": {"b": v}}``: a spec override at a dotted key path."""
    out: Any = value
    for k in reversed(path):
        out = {k: out}
    return out


def split_list(text: str) -> list[str]:
    """Comma-separated flag value -> stripped non-empty items."""
    return [x.strip() for x in text.split(",") if x.strip()]


# --------------------------------------------------------------------------- world and data
@dataclass
class WorldData:
    """A built world and its pre-period training/validation data."""

    table: dict
    world: Any
    train: Any
    val: Any

    @property
    def fingerprint(self) -> str:
        return self.world.fingerprint()


def load_world(table: dict, seed: int, cache: str | Path) -> WorldData:
    """Build the world of a ``[world]`` table and read its training data from the pre-period
    cached under ``cache`` (simulated once per world fingerprint)."""
    from simab.run.preperiod import pre_period, training_data
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    world = World.build(world_spec(table), seed)
    train, val = training_data(world, pre_period(world, Path(cache)))
    return WorldData(table, world, train, val)


# --------------------------------------------------------------------------- oracle information
def fit_logistic(x: Any, y: np.ndarray, precision: Any, *, scale: float = 1.0, maxiter: int = 15000) -> np.ndarray:
    """MAP logistic regression: the weights minimising ``(NLL + 0.5 * sum(precision * w**2)) /
    scale`` by L-BFGS on the exact gradient from 0 (a convex problem, so the result is the data's).
    ``x`` dense or scipy-sparse [n, p]; ``precision`` a number or one per weight (0: not shrunk)."""
    from scipy.optimize import minimize

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = x @ w
        p = 1.0 / (1.0 + np.exp(-m))
        value = np.logaddexp(0.0, m).sum() - y @ m + 0.5 * (precision * w) @ w
        return value / scale, (x.T @ (p - y) + precision * w) / scale

    return minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": maxiter}).x


def logistic_auc_gain(base: np.ndarray, extra: np.ndarray, labels: np.ndarray, train_mask: np.ndarray, *,
                      l2: float = 1e-3) -> dict:
    """How much a world's mechanism features add to what a simple model can know: an
    L2-regularised logistic regression on standardised ``base`` features [n, p] and one on
    ``base`` + ``extra`` [n, p + q], both fitted on the rows of ``train_mask`` and scored by
    AUC on the others. Returns ``{"auc_base", "auc_full", "gain"}`` (gain = full - base).

    The fit is a convex problem (L-BFGS, exact gradient), so the figure is a property of the
    features and the labels, not of a training run; ``l2`` (per row) only keeps
    separable or collinear columns finite."""
    from simab.policies.metrics import auc

    y = np.asarray(labels, dtype=float)
    train_mask = np.asarray(train_mask, dtype=bool)
    if train_mask.all() or not train_mask.any():
        raise ValueError("train_mask must leave rows on both sides")

    def fit_auc(x: np.ndarray) -> float:
        x = np.asarray(x, dtype=float).reshape(len(y), -1)
        mu, sd = x[train_mask].mean(0), x[train_mask].std(0)
        z = np.column_stack([np.ones(len(y)), (x - mu) / np.where(sd > 0, sd, 1.0)])
        n = int(train_mask.sum())
        precision = np.full(z.shape[1], l2 * n)
        precision[0] = 0.0  # the intercept is not shrunk
        w = fit_logistic(z[train_mask], y[train_mask], precision, scale=n)
        return float(auc(y[~train_mask], z[~train_mask] @ w))

    a_base = fit_auc(base)
    a_full = fit_auc(np.column_stack([np.asarray(base, dtype=float).reshape(len(y), -1),
                                      np.asarray(extra, dtype=float).reshape(len(y), -1)]))
    return {"auc_base": a_base, "auc_full": a_full, "gain": a_full - a_base}


# --------------------------------------------------------------------------- train grid
@dataclass(frozen=True)
class Model:
    """One row of an offline table: a label, the registered policy and its own parameters
    (merged over the script's shared ones); ``first_seed_only`` for slow models."""

    label: str
    policy: str
    params: dict = field(default_factory=dict)
    first_seed_only: bool = False


def offline_row(seed: int, metrics: dict, cached: bool, **extra: float) -> dict:
    """The offline-metrics row of one trained model (validation AUC, GAUC, logloss) and how its
    training ended (steps, epochs run, what stopped it: ``patience`` = converged, ``epochs`` =
    the cap, ``max_steps``)."""
    train = metrics.get("train", {})
    return {"seed": seed, "auc": metrics["auc"], "gauc": metrics["gauc"], "logloss": metrics["logloss"], **extra,
            "steps": train.get("steps"), "epochs_run": train.get("epochs_run"), "stopped_by": train.get("stopped_by"),
            "seconds": train.get("seconds", math.nan), "cached": cached}


def describe_row(row: dict) -> str:
    """The log text of an offline row: its metrics to 4 decimals."""
    return " ".join(f"{k} {v:.4f}" for k, v in row.items() if k in ("auc", "gauc", "logloss", "mc_auc"))


#: train(model, params, seed, trainer config) -> (policy or None, metrics, cached)
Trainer = Callable[[Model, dict, int, Any], tuple[Any, dict, bool]]


@dataclass
class Grid:
    """Rows per label (one per seed trained) and the trained policies when kept."""

    rows: dict[str, list[dict]]
    policies: dict[tuple[str, int], Any]


def checkpoint_trainer(data: WorldData, cache: str | Path) -> Trainer:
    """Train (or load the cached checkpoint of) a model through ``load_or_train``, the path
    the campaign takes, so a campaign on the same world and settings reuses the checkpoint."""
    from simab.policies.checkpoint import load_or_train

    def train(model: Model, params: dict, seed: int, cfg: Any) -> tuple[Any, dict, bool]:
        return load_or_train(str(cache), data.world.spec_dict(), model.policy, params, feature_spec_of(data.world.spec),
                             seed, data.train, data.val, cfg)

    return train


def train_grid(models: Sequence[Model] | Callable[[int], Sequence[Model]], seeds: Sequence[int],
               train: Trainer, cfg_for: Callable[[int], Any], *,
               params_for: Callable[[Model], dict] = lambda m: dict(m.params),
               row: Callable[[int, dict, bool], dict] = offline_row,
               keep_policies: bool = False, label_width: int = 24,
               describe: Callable[[dict], str] = describe_row,
               log: Callable[[str], None] = lambda s: print(s, flush=True)) -> Grid:
    """Train every model on every seed (seed-major, in list order) and collect ``row`` of
    each; ``log`` gets one line per model and seed (``describe`` of its row). ``models`` may
    be a function of the seed (experiments that depend on it)."""
    grid = Grid({}, {})
    for seed in seeds:
        cfg = cfg_for(seed)
        for model in (models(seed) if callable(models) else models):
            grid.rows.setdefault(model.label, [])
            if model.first_seed_only and seed != seeds[0]:
                continue
            t = time.perf_counter()
            policy, metrics, cached = train(model, params_for(model), seed, cfg)
            if keep_policies:
                grid.policies[(model.label, seed)] = policy
            r = row(seed, metrics, cached)
            grid.rows[model.label].append(r)
            took = "cached" if cached else f"{time.perf_counter() - t:.0f}s"
            log(f"seed {seed} {model.label:{label_width}s} {describe(r)} ({took})")
    return grid


# --------------------------------------------------------------------------- A/B campaign
@dataclass
class CampaignResult:
    """An analysed campaign: its report, run folder, wall time and exposure count."""

    report: Any  # simab.reports.report.Report
    run_dir: Path
    seconds: float
    exposures: int


def ab_campaign(args: argparse.Namespace, name: str, world_table: dict, control: tuple[str, dict],
                treatment: tuple[str, dict], shards: int = 4) -> CampaignResult:
    """Run ``control`` vs ``treatment`` (policy, params), 50/50, on the world of
    ``world_table`` with the script's seed, duration and trainer settings; the run folder
    is ``<cache>/../<name>``. Both arms train through ``load_or_train`` with the common
    trainer flags, so they reuse the offline checkpoints of the first seed."""
    import simab

    training = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "cache_dir": args.cache}
    if args.max_steps is not None:
        training["max_steps"] = args.max_steps
    for key in ("monitor", "patience"):  # the offline rule, so the arms reuse the offline checkpoints
        if hasattr(args, key):
            training[key] = getattr(args, key)
    overrides = {
        "name": name, "seed": args.seed, "duration_days": args.campaign_days, "world": world_table,
        "control": "control", "shards": shards,
        "arms": {"control": {"policy": control[0], "share": 0.5, "params": dict(control[1])},
                 "treatment": {"policy": treatment[0], "share": 0.5, "params": dict(treatment[1])}},
        "training": training,
    }
    spec = simab.load_campaign(None, overrides=overrides)
    t = time.perf_counter()
    result = simab.run_campaign(spec, out=Path(args.cache).parent / name)
    return CampaignResult(result.report, Path(result.run_dir), time.perf_counter() - t, result.exposures)


def comparison_fields(report: Any, metric: str, keys: Iterable[str], comparison: str = "treatment_vs_control") -> dict:
    """Named fields of one comparison of ``metric`` as report.json writes them (NaN as None);
    the first comparison when ``comparison`` is absent."""
    comps = report.to_json_dict()["metrics"][metric]["comparisons"]
    c = comps.get(comparison) or next(iter(comps.values()))
    return {k: c.get(k) for k in keys}


# --------------------------------------------------------------------------- results page
NOTES_START, NOTES_END = "<!-- notes start -->", "<!-- notes end -->"


def keep_notes(path: Path, text: str, *, heading: str | None = None) -> str:
    """Carry the hand-written notes of an existing page over to the newly generated ``text``:
    the block between the notes markers (an empty block when there is none), or with
    ``heading`` everything from that heading on (nothing when absent)."""
    old = path.read_text() if path.exists() else ""
    if heading is not None:
        i = old.find("\n" + heading)
        return text + old[i:] if i >= 0 else text
    if NOTES_START in old and NOTES_END in old:
        return text + "\n" + old[old.index(NOTES_START): old.index(NOTES_END) + len(NOTES_END)] + "\n"
    return text + "\n" + NOTES_START + "\n(no notes yet)\n" + NOTES_END + "\n"


def write_page(out: Path, stem: str, summary: dict, markdown: str, *, indent: int = 2) -> Path:
    """Write ``<out>/<stem>.json`` (the summary) and ``<out>/<stem>.md``; returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=indent, default=float))
    page = out / f"{stem}.md"
    page.write_text(markdown)
    return page


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """Markdown table lines: header, separator, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof 1); 0 for a single value."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± sample std`` of the values over seeds."""
    return f"{np.mean(np.asarray(values, dtype=float)):.{digits}f} ± {sample_std(values):.{digits}f}"


def seed_spread(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Difference of means a - b and the larger of the two seed standard deviations, the
    yardstick the verdicts use for "beyond the spread"."""
    return float(np.mean(a) - np.mean(b)), max(sample_std(a), sample_std(b))


#: A relative lift as a signed percentage, ``n/a`` for None or NaN: the reports' formatter.
pct = fmt_pct
