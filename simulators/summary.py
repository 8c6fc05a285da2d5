"""What a world looks like from its logs: CTR per scenario and by position, sessions and
return times, sequence lengths, and the seed-paper signals (``signals.py``).

Everything here reads a logging-policy pre-period (exposures, requests and per-request
feature snapshots) and the world itself; the result is a plain dict for ``world.json``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from simab.simulators import realism, signals
from simab.simulators.catalog import DOMAIN_CONTENT, DOMAIN_SHOP
from simab.simulators.oracle import sigmoid
from simab.simulators.world import World


def _np(t: pa.Table, k: str) -> np.ndarray:
    return t.column(k).to_numpy()


def _strings(t: pa.Table, k: str) -> np.ndarray:
    return np.asarray(t.column(k).combine_chunks().cast(pa.string()).to_pylist(), dtype=object)


def position_curve(position: np.ndarray, clicked: np.ndarray, explored: np.ndarray) -> dict:
    """CTR by position over *explored* exposures (picked uniformly at random by the
    logging policy, so attractiveness does not depend on position) and the fitted
    examination exponent: weighted least squares of ``log CTR(p)`` on ``log(1 + p)``
    with weights = clicks (var log rate ~ 1/clicks, delta method); returns the slope's
    negative as ``decay`` with its standard error."""
    P = int(position.max()) + 1 if position.size else 0
    n = np.bincount(position[explored], minlength=P).astype(float)
    c = np.bincount(position[explored], weights=clicked[explored].astype(float), minlength=P)
    ok = c > 0
    out = {"exposures": n.tolist(), "clicks": c.tolist(), "ctr": (c / np.maximum(n, 1)).tolist(),
           "decay": float("nan"), "decay_se": float("nan")}
    if ok.sum() < 3:
        return out
    x, y, w = np.log1p(np.arange(P))[ok], np.log(c[ok] / n[ok]), c[ok]
    xm = (w * x).sum() / w.sum()
    sxx = (w * (x - xm) ** 2).sum()
    slope = (w * (x - xm) * (y - (w * y).sum() / w.sum())).sum() / sxx
    out["decay"] = float(-slope)
    out["decay_se"] = float(np.sqrt(1.0 / sxx))
    return out


def summarize(world: World, exposures: pa.Table, requests: pa.Table, features: pa.Table, days: float,
              n_sampled: int) -> dict:
    spec, cat = world.spec, world.catalog
    names = list(world.scenario_names)
    sc = _strings(exposures, "scenario")
    pos = _np(exposures, "position").astype(np.int64)
    clicked = _np(exposures, "clicked").astype(bool)
    p_click = _np(exposures, "p_click")
    converted = _np(exposures, "converted").astype(bool)
    prop = _np(exposures, "propensity")
    # an exposure the logging policy drew at random: its propensity is eps/remaining,
    # not (1 - eps) + eps/remaining (the greedy pick)
    explored = prop < (1.0 - spec.logging_epsilon)
    total_traffic = sum(s.traffic for s in spec.scenarios.values())
    req_sc = _strings(requests, "scenario")
    scen = {}
    for name in names:
        s = spec.scenarios[name]
        m = sc == name
        n = int(m.sum())
        curve = position_curve(pos[m], clicked[m], explored[m])
        scen[name] = {
            "surface": s.surface,
            "traffic_spec": s.traffic / total_traffic,
            "traffic_observed": float((req_sc == name).mean()) if requests.num_rows else 0.0,
            "exposures": n,
            "ctr": float(clicked[m].mean()) if n else float("nan"),
            "mean_p_click": float(p_click[m].mean()) if n else float("nan"),
            "cvr": float(converted[m].sum() / max(clicked[m].sum(), 1)),
            "base_logit": s.base_logit,
            "sigmoid_base_logit": float(sigmoid(np.array(s.base_logit))),
            "position_decay_spec": s.position_decay,
            "position_decay_fitted": curve["decay"],
            "position_decay_se": curve["decay_se"],
            "ctr_by_position": (np.bincount(pos[m], weights=clicked[m], minlength=s.slate_size)
                                / np.maximum(np.bincount(pos[m], minlength=s.slate_size), 1)).tolist(),
            "explored_ctr_by_position": curve["ctr"],
            "w_long": s.w_long,
            "w_intent": s.w_intent,
            "specific": s.specific if spec.scenario_specific else 0.0,
        }
    # sessions: ranking requests per session, session duration and return times
    sess = _np(requests, "session").astype(np.int64)
    rts = _np(requests, "ts")
    ruser = _np(requests, "user").astype(np.int64)
    sid, inv, counts = np.unique(sess, return_inverse=True, return_counts=True)
    start = np.full(len(sid), np.inf)
    end = np.full(len(sid), -np.inf)
    np.minimum.at(start, inv, rts)
    np.maximum.at(end, inv, rts)
    s_user = np.zeros(len(sid), np.int64)
    s_user[inv] = ruser
    order = np.lexsort((start, s_user))
    same = s_user[order][1:] == s_user[order][:-1]
    returns_h = (np.diff(start[order])[same]) / 3600.0
    seq_len = _np(features, "seq_len")
    ais_len = _np(features, "ais_len")
    ml_len = _np(features, "moveline_len")
    sig = signals.measure(world, exposures, features)
    n_req_users = len(np.unique(ruser))
    return {
        "preset": spec.preset,
        "calibration": spec.calibration,
        "description": spec.description,
        "seed": world.seed,
        "n_users": spec.n_users,
        "sampled_users": n_sampled,
        "pre_period_days": days,
        "catalog": {
            "shop_items": int((cat.domain == DOMAIN_SHOP).sum()),
            "content_items": int((cat.domain == DOMAIN_CONTENT).sum()),
            "categories": cat.n_categories,
            "parents": spec.n_parents,
            "shops": cat.n_shops,
            "categories_in_both_domains": int(len(np.intersect1d(cat.category[cat.domain == DOMAIN_SHOP],
                                                                  cat.category[cat.domain == DOMAIN_CONTENT]))),
        },
        "totals": {
            "exposures": exposures.num_rows,
            "requests": requests.num_rows,
            "sessions": int(len(sid)),
            "users_with_requests": n_req_users,
            "ctr": float(clicked.mean()) if clicked.size else float("nan"),
            "mean_p_click": float(p_click.mean()) if p_click.size else float("nan"),
            "cvr": float(converted.sum() / max(clicked.sum(), 1)),
            "explored_share": float(explored.mean()) if explored.size else float("nan"),
        },
        "scenarios": scen,
        "sessions": {
            "per_user_per_day": float(len(sid) / max(n_sampled, 1) / days),
            "requests_per_session_mean": float(counts.mean()) if len(counts) else float("nan"),
            "requests_per_session_hist": np.bincount(np.minimum(counts, 20)).tolist() if len(counts) else [],
            "duration_min_median": float(np.median(end - start) / 60.0) if len(sid) else float("nan"),
            "return_time_h_quantiles": {str(q): float(np.quantile(returns_h, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
            if len(returns_h) else {},
            "return_time_h": returns_h.tolist(),
        },
        "histories": {
            "lifelong_source_events": spec.lifelong.source_length if spec.lifelong.enabled else 0,
            "lifelong_target_events": spec.lifelong.target_length,
            "short_seq_len_mean": float(seq_len.mean()) if seq_len.size else 0.0,
            "aiseq_len_mean": float(ais_len.mean()) if ais_len.size else 0.0,
            "moveline_len_mean": float(ml_len.mean()) if ml_len.size else 0.0,
            "short_seq_len_hist": np.bincount(seq_len, minlength=spec.seq_len + 1).tolist(),
            "aiseq_len_hist": np.bincount(ais_len, minlength=spec.aiseq_len + 1).tolist(),
            "moveline_len_hist": np.bincount(ml_len, minlength=spec.moveline_len + 1).tolist(),
        },
        "realism": realism.report(world, realism.measure(world, exposures, requests, n_sampled, days)),
        "signals": {
            "moveline_ratio": sig.moveline_ratio,
            "lifelong_ratio": sig.lifelong_ratio,
            "scenario_label_correlation": sig.scenario_label_correlation,
            # the dials' signals (issue #19; docs/world.md, "Dials")
            "item_intent_ratio": sig.item_intent_ratio,
            "user_click_icc": sig.user_click_icc,
            "topic_ratio": sig.topic_ratio,
            "shareable_correlation": sig.shareable_correlation,
            "specific_correlation": sig.specific_correlation,
            "detail": {
                "moveline": sig.moveline.__dict__,
                "lifelong": sig.lifelong.__dict__,
                "scenario_pairs": sig.scenario_pairs,
            },
        },
    }
