"""Realism targets: what a logged pre-period of the ``realistic`` calibration should look
like, each a range with its source (docs/world.md, "Realism targets"), and the measured
value of each from a logging-policy pre-period (``simab world``).

The ranges are wide on purpose: they bracket the published figures of the marketplaces the
seed papers come from (Taobao / Alibaba, WeChat Channels) and of public e-commerce logs, so
that a campaign's variance, hence the number of users it needs, is of the right order.  The
``dense`` calibration (clicks ~15%, CVR ~45%) has no targets: it exists for tests that need
many events from few users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simab.simulators.catalog import DOMAIN_SHOP
from simab.simulators.world import World


@dataclass(frozen=True)
class Target:
    name: str
    lo: float
    hi: float
    what: str
    source: str


TARGETS: tuple[Target, ...] = (
    Target("ctr", 0.02, 0.06, "clicks / exposures",
           "Ali-CCP (Ma et al., ESMM, SIGIR 2018): 3.4M clicks of 84M impressions = 4.0%; Taobao display-ad "
           "sample (Alimama, 26.6M impressions): ~5%"),
    Target("cvr", 0.005, 0.03, "conversions / clicks (post-click CVR)",
           "Ali-CCP: 18k conversions of 3.4M clicks = 0.53%; CIKM Cup 2016 (DIGINETICA): 18,025 purchases of "
           "1.13M clicks = 1.6%; Taobao UserBehavior: buy / pv ~2.2%"),
    Target("ctcvr", 0.0001, 0.0015, "conversions / exposures",
           "the product of the two (Ali-CCP: 0.021%)"),
    Target("dwell_median_s", 10.0, 60.0, "median dwell of a click, seconds",
           "assumption: item-page dwell is heavy-tailed with a median of tens of seconds (Liu, White & Dumais, "
           "SIGIR 2010, fit page dwell with Weibull laws); no marketplace figure was found"),
    Target("sessions_per_active_user_day", 1.5, 5.0, "sessions per user with a request, per day",
           "assumption: a daily active user of a shopping app opens it a few times a day"),
    Target("requests_per_session", 1.5, 6.0, "ranking requests per session, mean",
           "YOOCHOOSE (RecSys Challenge 2015): ~3.6 clicks per session; ECML/PKDD 2005 shop clickstream: "
           "median 8 pages, 61% single-page sessions"),
    Target("single_request_sessions", 0.25, 0.7, "share of sessions with one request",
           "ECML/PKDD 2005 shop clickstream: 61% single-page sessions (short, bursty sessions)"),
    Target("top10_request_share", 0.35, 0.65, "share of requests made by the most active 10% of users",
           "assumption: heavy-tailed activity (a log-normal rate with sigma ~1.2 gives ~50%); the seed "
           "papers do not publish it"),
    Target("item_popularity_exponent", 0.7, 1.3, "Zipf exponent of expected clicks per shop item by rank",
           "Zipf-like item popularity (exponent ~1) of recommendation logs (Goel et al., WSDM 2010, "
           "'Anatomy of the long tail')"),
    Target("lifelong_median_share", 0.1, 0.6, "median lifelong (source) history length / its cap",
           "LCN seed: lifelong sequences 'up to 2000' events (a cap most users do not reach)"),
    Target("lifelong_at_cap_share", 0.02, 0.35, "share of users whose lifelong history is at the cap",
           "LCN seed (cap 2000); heavy users fill it"),
)


def popularity_exponent(items: np.ndarray, weight: np.ndarray, max_rank: int = 1000) -> float:
    """Zipf exponent: minus the least-squares slope of log(weight per item) on log(rank)
    over the ranks whose total weight is at least 1 (at most ``max_rank``)."""
    if items.size == 0:
        return float("nan")
    uniq, inv = np.unique(items, return_inverse=True)
    tot = np.sort(np.bincount(inv, weights=weight))[::-1]
    tot = tot[tot >= 1.0][:max_rank]
    if tot.size < 10:
        return float("nan")
    x, y = np.log(np.arange(1, tot.size + 1)), np.log(tot)
    return float(-np.polyfit(x, y, 1)[0])


def measure(world: World, exposures: pa.Table, requests: pa.Table, n_sampled: int, days: float) -> dict[str, float]:
    """The measured value of every target from a pre-period of ``n_sampled`` users over ``days``."""
    clicked = exposures.column("clicked").to_numpy().astype(bool)
    converted = exposures.column("converted").to_numpy().astype(bool)
    dwell = exposures.column("dwell_s").to_numpy()
    n_exp, n_click = clicked.size, int(clicked.sum())
    ruser = requests.column("user").to_numpy().astype(np.int64)
    sess = requests.column("session").to_numpy().astype(np.int64)
    _, per_session = np.unique(sess, return_counts=True)
    active = np.unique(ruser)
    per_user = np.sort(np.concatenate([np.unique(ruser, return_counts=True)[1],
                                       np.zeros(max(n_sampled - active.size, 0), np.int64)]))[::-1]
    top = max(1, int(round(0.1 * n_sampled)))
    items = exposures.column("item").to_numpy().astype(np.int64)
    shop = world.catalog.domain[items] == DOMAIN_SHOP
    users = world.population.users(np.arange(n_sampled, dtype=np.int64))
    cap = world.spec.lifelong.source_length if world.spec.lifelong.enabled else 0
    lengths = np.broadcast_to(world.histories.lengths(users, cap), (n_sampled,))
    return {
        "ctr": float(n_click / max(n_exp, 1)),
        "cvr": float(converted.sum() / max(n_click, 1)),
        "ctcvr": float(converted.sum() / max(n_exp, 1)),
        "dwell_median_s": float(np.median(dwell[clicked])) if n_click else float("nan"),
        "sessions_per_active_user_day": float(per_session.size / max(active.size, 1) / days),
        "requests_per_session": float(per_session.mean()) if per_session.size else float("nan"),
        "single_request_sessions": float((per_session == 1).mean()) if per_session.size else float("nan"),
        "top10_request_share": float(per_user[:top].sum() / max(per_user.sum(), 1)),
        "item_popularity_exponent": popularity_exponent(items[shop], exposures.column("p_click").to_numpy()[shop]),
        "lifelong_median_share": float(np.median(lengths) / cap) if cap else float("nan"),
        "lifelong_at_cap_share": float((lengths == cap).mean()) if cap else float("nan"),
    }


def report(world: World, measured: dict[str, float]) -> list[dict]:
    """Each target with its measured value and whether it is met (``None`` for the dense
    calibration, which has no targets)."""
    realistic = world.spec.calibration == "realistic"
    return [{"name": t.name, "what": t.what, "lo": t.lo, "hi": t.hi, "source": t.source,
             "measured": measured[t.name],
             "met": (bool(t.lo <= measured[t.name] <= t.hi) if realistic else None)}
            for t in TARGETS]
