"""A synthetic run folder with known effects, written in the campaign runner's contract.

Each user has a click propensity p_u = sigmoid(logit(ctr_arm) + z_u), z_u ~ N(0, 0.5²),
and a pre-period drawn from the same z_u (so CUPED has signal).  The truth table holds both
kinds the runner writes: the counterfactual truth (every user's exposures under each arm's
click model: Σ n_u·p_u(arm) / Σ n_u over all users) and the realised-group rows ("oracle":
the true p_click on each arm's own users' exposures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SCENARIOS = np.array(["home_feed", "search_results", "shop_page"])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def build_run_dir(
    path: Path,
    *,
    users: int = 4000,
    arms: dict | None = None,
    days: int = 5,
    seed: int = 7,
    truth: bool = True,
    covariates: bool = True,
    shards: int = 2,
) -> Path:
    """Write run.json + exposures/requests/assignments (+ truth, covariates) under ``path``."""
    rng = np.random.default_rng(seed)
    arms = arms or {
        "control": {"share": 0.5, "ctr": 0.05, "cvr": 0.10, "latency": 20.0},
        "treatment": {"share": 0.5, "ctr": 0.06, "cvr": 0.10, "latency": 23.0},
    }
    names = list(arms)
    shares = np.array([arms[a]["share"] for a in names], dtype=float)
    user_arm = rng.choice(len(names), size=users, p=shares / shares.sum())
    user_ids = np.arange(users, dtype=np.int64) * 7 + 11
    z = rng.normal(0, 0.5, users)
    activity = rng.gamma(2.0, 4.0, users)
    ctr = np.array([arms[a]["ctr"] for a in names])[user_arm]
    cvr = np.array([arms[a]["cvr"] for a in names])[user_arm]
    p_user = _sigmoid(np.log(ctr / (1 - ctr)) + z)
    n_exp = rng.poisson(activity) + 1

    row_user = np.repeat(np.arange(users), n_exp)
    n_rows = row_user.size
    p_click = p_user[row_user]
    clicked = rng.random(n_rows) < p_click
    p_convert = cvr[row_user]
    converted = clicked & (rng.random(n_rows) < p_convert)
    dwell = np.where(clicked, rng.lognormal(3.0 + z[row_user], 0.5), 0.0)
    day = rng.integers(0, days, n_rows).astype(np.int32)
    within = np.arange(n_rows) - np.repeat(np.cumsum(n_exp) - n_exp, n_exp)
    request = user_ids[row_user] * 1000 + within // 4
    arm_of_row = np.array(names)[user_arm[row_user]]
    exposures = pa.table(
        {
            "campaign": pa.array(["synthetic"] * n_rows),
            "shard": pa.array((row_user % shards).astype(np.int32)),
            "arm": pa.array(arm_of_row),
            "user": pa.array(user_ids[row_user]),
            "request": pa.array(request),
            "ts": pa.array(day * 86400.0 + rng.random(n_rows) * 86400),
            "day": pa.array(day),
            "scenario": pa.array(SCENARIOS[rng.choice(3, n_rows, p=[0.6, 0.3, 0.1])]),
            "position": pa.array((within % 4).astype(np.int16)),
            "item": pa.array(rng.integers(0, 5000, n_rows)),
            "score": pa.array(rng.random(n_rows).astype(np.float32)),
            "p_click": pa.array(p_click),
            "clicked": pa.array(clicked),
            "p_convert": pa.array(p_convert),
            "converted": pa.array(converted),
            "conversion_ts": pa.array(np.where(converted, day * 86400.0 + 3600, np.nan)),
            "dwell_s": pa.array(dwell),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    for sub in ("exposures", "requests", "assignments"):
        (path / sub).mkdir(exist_ok=True)
    shard = np.asarray(exposures["shard"])
    for s in range(shards):
        pq.write_table(
            exposures.filter(pa.array(shard == s)), path / "exposures" / f"shard-{s:05d}.parquet"
        )

    first = np.unique(request, return_index=True)[1]
    latency_mean = np.array([arms[a]["latency"] for a in names])[user_arm[row_user[first]]]
    requests = pa.table(
        {
            "request": pa.array(request[first]),
            "user": pa.array(user_ids[row_user[first]]),
            "arm": pa.array(arm_of_row[first]),
            "ts": pa.array(np.asarray(exposures["ts"])[first]),
            "day": pa.array(day[first]),
            "scenario": pa.array(np.asarray(exposures["scenario"])[first]),
            "n_candidates": pa.array(np.full(first.size, 200, dtype=np.int32)),
            "latency_ms": pa.array(rng.gamma(4.0, latency_mean / 4.0)),
        }
    )
    pq.write_table(requests, path / "requests" / "shard-00000.parquet")
    pq.write_table(
        pa.table(
            {
                "user": pa.array(user_ids),
                "bucket": pa.array((user_ids % 10000).astype(np.int32)),
                "arm": pa.array(np.array(names)[user_arm]),
                "first_exposure_ts": pa.array(np.zeros(users)),
            }
        ),
        path / "assignments" / "shard-00000.parquet",
    )
    if truth:
        rows = []
        for i, a in enumerate(names):
            p_all = _sigmoid(np.log(arms[a]["ctr"] / (1 - arms[a]["ctr"])) + z)
            cf = float((n_exp * p_all).sum() / n_exp.sum())
            rows += [
                (a, "ctr", cf, "counterfactual"),
                (a, "ctcvr", cf * arms[a]["cvr"], "counterfactual"),
                (a, "cvr", float(arms[a]["cvr"]), "counterfactual"),
            ]
            mask = user_arm[row_user] == i
            ctr_true = float(p_click[mask].mean()) if mask.any() else float(arms[a]["ctr"])
            rows += [
                (a, "ctr", ctr_true, "oracle"),
                (a, "ctcvr", ctr_true * arms[a]["cvr"], "oracle"),
                (a, "cvr", float(arms[a]["cvr"]), "oracle"),
            ]
        cols = list(zip(*rows, strict=True))
        pq.write_table(
            pa.table({"arm": cols[0], "metric": cols[1], "value": cols[2], "source": cols[3]}),
            path / "truth.parquet",
        )
    if covariates:
        p_pre = _sigmoid(np.log(0.05 / 0.95) + z)
        pre_exp = rng.poisson(activity * 2) + 1
        pre_clicks = rng.binomial(pre_exp, p_pre)
        pq.write_table(
            pa.table(
                {
                    "user": pa.array(user_ids),
                    "pre_exposures": pa.array(pre_exp.astype(float)),
                    "pre_clicks": pa.array(pre_clicks.astype(float)),
                    "pre_conversions": pa.array(rng.binomial(pre_clicks, 0.1).astype(float)),
                    "pre_dwell_s": pa.array(pre_clicks * np.exp(3.0 + z + 0.125)),
                }
            ),
            path / "covariates.parquet",
        )
    info = {
        "campaign": "synthetic",
        "seed": seed,
        "alpha": 0.05,
        "control": names[0],
        "arms": {a: {"policy": f"policy_{a}", "share": arms[a]["share"]} for a in names},
        "metrics": ["ctr", "ctcvr", "cvr", "stay_time", "exposures_per_user", "latency_p99_ms"],
        "duration_days": float(days),
        "unit": "user",
        "runtime": {"wall_s": 1.5, "exposures_per_s": n_rows / 1.5},
        "status": "complete",
    }
    (path / "run.json").write_text(json.dumps(info))
    return path


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    """A two-arm run with a +20 % CTR effect (shared across the session; read-only)."""
    return build_run_dir(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def make_run(tmp_path):
    """Factory for run folders with custom arms / sizes."""

    def make(name: str = "run", **kwargs) -> Path:
        return build_run_dir(tmp_path / name, **kwargs)

    return make
