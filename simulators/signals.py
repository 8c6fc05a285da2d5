"""The three seed-paper signals a world must contain, measured on its logs and its oracle.

- ``moveline_ratio`` (AMEN): click rate on exposed items of a category the user searched
  for in the hour before the request (the current scene excluded, so the signal is what
  the moveline carries *before* the ranking request), over the click rate on the other
  exposures of the same category in the same scenario to users whose long-term affinity
  ``<u, c_k>`` to it lies in the same decile.  The strata remove long-term interest (users
  search for what they like), scenario and category from the comparison: what is left is
  current intent (and fatigue, which works against it).  Pooled over strata with the
  Mantel-Haenszel rate ratio (Rothman, Greenland & Lash, *Modern Epidemiology*, 3rd ed.,
  ch. 15): ``sum a_i n0_i / N_i / sum b_i n1_i / N_i``.
- ``lifelong_ratio`` (LCN): click rate on items of the user's *dormant* categories
  (present in the lifelong source-domain history, absent from the recent target-domain
  sequence at request time) over the click rate on items of categories absent from both;
  Mantel-Haenszel over (user, scenario) strata.  "Present in the lifelong history" means
  at least ``PRESENT_SHARE`` of its events and at least ``PRESENT_MIN_EVENTS`` events,
  well above the exploration floor (15% of events spread over all K categories, 0.4% each
  at K = 40; in a short history of 150 events a random category has 0.56 expected events,
  so one or two of them are noise, not an interest).
- ``scenario_label_correlation`` (SSIM): mean Pearson correlation, across scenario
  pairs, of the true click logits of the same (user, item) pairs (random users, random
  target items, zero intent and no fatigue, so only the label functions differ).

Click rates are computed from the logged true ``p_click`` (expected clicks: no
Bernoulli noise) and, as ``observed``, from the realised clicks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np
import pyarrow as pa

from simab.simulators.population import Users
from simab.simulators.scenes import SEARCH
from simab.simulators.world import World

PRESENT_SHARE = 0.01
PRESENT_MIN_EVENTS = 3
MOVELINE_WINDOW_S = 3600.0
AFFINITY_BINS = 10
CURRENT_SCENE_S = 1.0  # scenes this close to the request are the request's own scene


@dataclass(frozen=True)
class RatioEstimate:
    """A Mantel-Haenszel rate ratio with the exposures behind it."""

    ratio: float
    observed_ratio: float
    exposed: int  # exposures in the signal group (searched / dormant)
    reference: int  # exposures in the reference group
    strata: int  # strata holding both groups


@dataclass(frozen=True)
class Signals:
    moveline_ratio: float
    lifelong_ratio: float
    scenario_label_correlation: float
    moveline: RatioEstimate
    lifelong: RatioEstimate
    scenario_pairs: dict[str, float]
    # dials of issue #19: the user click propensity and the shareable / specific categories
    user_click_icc: float = float("nan")
    shareable_correlation: float = float("nan")
    specific_correlation: float = float("nan")
    topic_ratio: float = float("nan")
    item_intent_ratio: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def mantel_haenszel(strata: np.ndarray, group: np.ndarray, rate: np.ndarray, keep: np.ndarray) -> tuple[float, int, int, int]:
    """Rate ratio of ``group`` True over False, pooled over ``strata`` (rows where ``keep``):
    ``RR = sum_i a_i n0_i / N_i / sum_i b_i n1_i / N_i`` with a, b the summed rates and
    n1, n0 the exposures of the two groups in stratum i."""
    s, g, r = strata[keep], group[keep], rate[keep]
    if s.size == 0:
        return float("nan"), 0, 0, 0
    _, idx = np.unique(s, return_inverse=True)
    m = int(idx.max()) + 1
    n1 = np.bincount(idx, weights=g.astype(float), minlength=m)
    n0 = np.bincount(idx, weights=(~g).astype(float), minlength=m)
    a = np.bincount(idx, weights=r * g, minlength=m)
    b = np.bincount(idx, weights=r * ~g, minlength=m)
    both = (n1 > 0) & (n0 > 0)
    N = n1 + n0
    num = float((a * n0 / np.maximum(N, 1))[both].sum())
    den = float((b * n1 / np.maximum(N, 1))[both].sum())
    ratio = num / den if den > 0 else float("nan")
    return ratio, int(n1[both].sum()), int(n0[both].sum()), int(both.sum())


def _col(t: pa.Table, k: str) -> np.ndarray:
    return t.column(k).to_numpy()


def _request_rows(exposures: pa.Table, features: pa.Table) -> np.ndarray:
    """Row of ``features`` (one per request) for every exposure."""
    freq = _col(features, "request").astype(np.int64)
    order = np.argsort(freq)
    return order[np.searchsorted(freq[order], _col(exposures, "request").astype(np.int64))]


def _ring(features: pa.Table, field: str, length_col: str) -> tuple[np.ndarray, np.ndarray]:
    """A right-aligned snapshot field [R, L] and its mask."""
    arr = features.column(field).combine_chunks()
    vals = arr.values.to_numpy(zero_copy_only=False).reshape(-1, arr.type.list_size)
    n = _col(features, length_col).astype(np.int64)
    mask = np.arange(vals.shape[1])[None, :] >= (vals.shape[1] - n)[:, None]
    return vals, mask


def _exposure_frame(world: World, exposures: pa.Table) -> dict[str, np.ndarray]:
    names = list(world.scenario_names)
    if "scenario_idx" in exposures.column_names:
        sc = _col(exposures, "scenario_idx").astype(np.int64)
    else:
        lookup = {n: i for i, n in enumerate(names)}
        sc = np.array([lookup[s] for s in exposures.column("scenario").to_pylist()], np.int64)
    item = _col(exposures, "item").astype(np.int64)
    return {
        "user": _col(exposures, "user").astype(np.int64),
        "ts": _col(exposures, "ts").astype(np.float64),
        "scenario": sc,
        "item": item,
        "cat": world.catalog.category[item],
        "p_click": _col(exposures, "p_click").astype(np.float64),
        "clicked": _col(exposures, "clicked").astype(np.float64),
    }


def _ratio(strata, group, keep, e) -> RatioEstimate:
    r, n1, n0, ns = mantel_haenszel(strata, group, e["p_click"], keep)
    ro, _, _, _ = mantel_haenszel(strata, group, e["clicked"], keep)
    return RatioEstimate(r, ro, n1, n0, ns)


def moveline_signal(world: World, exposures: pa.Table, features: pa.Table) -> RatioEstimate:
    """``moveline_ratio`` (see the module docstring) from a pre-period log."""
    e = _exposure_frame(world, exposures)
    rows = _request_rows(exposures, features)
    scene, mask = _ring(features, "ml_scene", "moveline_len")
    cat, _ = _ring(features, "ml_cat", "moveline_len")
    ts, _ = _ring(features, "ml_ts", "moveline_len")
    # request time = the first exposure of the request
    req_ts = np.full(features.num_rows, np.inf)
    np.minimum.at(req_ts, rows, e["ts"])
    gap = req_ts[:, None] - ts
    searched = mask & (scene == SEARCH) & (gap >= CURRENT_SCENE_S) & (gap <= MOVELINE_WINDOW_S) & (cat >= 0)
    K = world.catalog.n_categories
    hit = np.zeros((features.num_rows, K), bool)
    r_idx, c_idx = np.nonzero(searched)
    hit[r_idx, cat[r_idx, c_idx].astype(np.int64)] = True
    group = hit[rows, e["cat"]]
    uids, uinv = np.unique(e["user"], return_inverse=True)
    u = world.population.users(uids).u
    long_term = np.einsum("nd,nd->n", u[uinv], world.catalog.centroid[e["cat"]])
    decile = np.minimum(np.argsort(np.argsort(long_term, kind="stable")) * AFFINITY_BINS // max(len(long_term), 1), AFFINITY_BINS - 1)
    strata = (e["cat"] * AFFINITY_BINS + decile) * len(world.scenario_names) + e["scenario"]
    return _ratio(strata, group, np.ones_like(group), e)


def lifelong_categories(world: World, users: Users) -> np.ndarray:
    """[n, K] bool: categories holding at least ``PRESENT_SHARE`` of each user's lifelong
    source-domain history (generated on demand, in batches)."""
    K = world.catalog.n_categories
    out = np.zeros((len(users), K), bool)
    h = world.histories.source(users)
    if h.mask.shape[1] == 0:
        return out
    for i in range(len(users)):
        counts = np.bincount(h.category[i][h.mask[i]], minlength=K)
        out[i] = counts >= max(PRESENT_MIN_EVENTS, PRESENT_SHARE * counts.sum())
    return out


def lifelong_signal(world: World, exposures: pa.Table, features: pa.Table) -> RatioEstimate:
    """``lifelong_ratio`` (see the module docstring) from a pre-period log."""
    e = _exposure_frame(world, exposures)
    rows = _request_rows(exposures, features)
    K = world.catalog.n_categories
    seq_cat, mask = _ring(features, "seq_cat", "seq_len")
    recent = np.zeros((features.num_rows, K), bool)
    r_idx, c_idx = np.nonzero(mask & (seq_cat >= 0))
    recent[r_idx, seq_cat[r_idx, c_idx].astype(np.int64)] = True
    uids, uinv = np.unique(e["user"], return_inverse=True)
    lifelong = np.zeros((len(uids), K), bool)
    for s in range(0, len(uids), 512):
        lifelong[s : s + 512] = lifelong_categories(world, world.population.users(uids[s : s + 512]))
    in_ll = lifelong[uinv, e["cat"]]
    in_recent = recent[rows, e["cat"]]
    dormant = in_ll & ~in_recent
    absent = ~in_ll & ~in_recent
    strata = e["user"] * len(world.scenario_names) + e["scenario"]
    return _ratio(strata, dormant, dormant | absent, e)


def scenario_label_correlation(world: World, n_users: int = 2000, n_items: int = 64, seed_unit: int = 0,
                               subset: str = "all") -> tuple[float, dict[str, float]]:
    """Mean pairwise correlation of true click logits across scenarios for the same
    (user, item) pairs; also each pair's correlation.  1.0 with a single scenario.
    ``subset``: ``"all"`` items, or only those of the ``"shareable"`` / ``"specific"``
    categories (``specific_share``; nan when there are none)."""
    names = list(world.scenario_names)
    g = np.random.default_rng([world.seed, 7919, seed_unit])
    n = min(n_users, world.spec.n_users)
    ids = np.sort(g.choice(world.spec.n_users, size=n, replace=False))
    users = world.population.users(ids)
    items = g.integers(0, world.catalog.n_shop_items, size=(n, n_items))
    zero = np.zeros((n, world.spec.dim))
    logits = []
    for s in range(len(names)):
        sc = np.full(n, s, np.int64)
        a = world.oracle.affinity(users.u, zero, sc, items, users.profile)
        logits.append(world.oracle.click_logit(a, sc, items, np.zeros(items.shape)).ravel())
    if subset != "all":
        specific = world.oracle.specific_categories[world.catalog.category[items]].ravel()
        keep = specific if subset == "specific" else ~specific
        if keep.sum() < 100:
            return float("nan"), {}
        logits = [x[keep] for x in logits]
    pairs = {f"{names[i]}~{names[j]}": float(np.corrcoef(logits[i], logits[j])[0, 1]) for i, j in combinations(range(len(names)), 2)}
    return (float(np.mean(list(pairs.values()))) if pairs else 1.0), pairs


def measure(world: World, exposures: pa.Table, features: pa.Table) -> Signals:
    """All three signals of a world from its (pre-period) exposures and feature snapshots."""
    ml = moveline_signal(world, exposures, features)
    ll = lifelong_signal(world, exposures, features)
    corr, pairs = scenario_label_correlation(world)
    shareable, _ = scenario_label_correlation(world, subset="shareable")
    specific, _ = scenario_label_correlation(world, subset="specific")
    topic = topic_signal(world, exposures)
    return Signals(ml.ratio, ll.ratio, corr, ml, ll, pairs, user_click_icc(world, exposures), shareable, specific,
                   topic.ratio if topic is not None else float("nan"), item_intent_signal(world, exposures, features).ratio)


def item_intent_signal(world: World, exposures: pa.Table, features: pa.Table) -> RatioEstimate:
    """``item_intent_ratio`` (AMEN's item pathway): among exposures of a category the user
    clicked in a search / shop scene (an item of the AISeq at request time), the click rate on items
    closer (latent cosine at or above the median) to those clicked items over the farther
    ones; Mantel-Haenszel over (user, scenario, category) strata.  ``intent.item_level``
    raises it (a need pulls towards one wanted item, which the search clicks reveal)."""
    e = _exposure_frame(world, exposures)
    rows = _request_rows(exposures, features)
    items, mask = _ring(features, "ais_item", "ais_len")
    lat = world.catalog.latent
    a_items = items[rows].astype(np.int64)
    valid = mask[rows] & (world.catalog.category[a_items] == e["cat"][:, None])
    keep = valid.any(1)
    sim = np.where(valid, np.einsum("nd,nld->nl", lat[e["item"]], lat[a_items]), -np.inf).max(1)
    thr = np.median(sim[keep]) if keep.any() else np.inf
    group = keep & (sim >= thr)
    strata = (e["user"] * len(world.scenario_names) + e["scenario"]) * world.catalog.n_categories + e["cat"]
    return _ratio(strata, group, keep, e)


def history_topics(world: World, users: Users) -> np.ndarray:
    """[n, K]: each user's most frequent topic among the lifelong source-history events of
    each category with at least ``PRESENT_MIN_EVENTS`` of them (-1 elsewhere)."""
    K, T = world.catalog.n_categories, world.catalog.n_topics
    h = world.histories.source(users)
    out = np.full((len(users), K), -1, np.int64)
    if h.mask.shape[1] == 0:
        return out
    for i in range(len(users)):
        m = h.mask[i]
        key = h.category[i][m] * T + world.catalog.topic[h.item[i][m]]
        counts = np.bincount(key, minlength=K * T).reshape(K, T)
        ok = counts.sum(1) >= PRESENT_MIN_EVENTS
        out[i, ok] = counts[ok].argmax(1)
    return out


def topic_signal(world: World, exposures: pa.Table) -> RatioEstimate | None:
    """``topic_ratio`` (LCN below category level; ``n_topics`` > 0, else None): click rate on
    shop items whose topic is the user's most frequent topic of their category in the
    lifelong source history, over the other items of the same category; Mantel-Haenszel
    over (user, scenario, category) strata.  ~1 when the history does not reveal the
    user's topic (``lifelong.item_affinity`` = 0), above 1 when it does."""
    if not world.catalog.n_topics:
        return None
    e = _exposure_frame(world, exposures)
    uids, uinv = np.unique(e["user"], return_inverse=True)
    top = np.zeros((len(uids), world.catalog.n_categories), np.int64)
    for s in range(0, len(uids), 512):
        top[s : s + 512] = history_topics(world, world.population.users(uids[s : s + 512]))
    user_topic = top[uinv, e["cat"]]
    keep = user_topic >= 0
    group = keep & (world.catalog.topic[e["item"]] == user_topic)
    strata = (e["user"] * len(world.scenario_names) + e["scenario"]) * world.catalog.n_categories + e["cat"]
    return _ratio(strata, group, keep, e)


def user_click_icc(world: World, exposures: pa.Table) -> float:
    """Intra-class correlation, by user, of the true attraction logit
    ``logit(P(click) / P(examine | position))`` of the logged exposures (one-way ANOVA
    estimator, ICC(1): Shrout & Fleiss 1979): the share of its variance that is between
    users.  Interests alone make it positive; ``response.user_click_bias_sd`` raises it."""
    e = _exposure_frame(world, exposures)
    if e["user"].size < 10:
        return float("nan")
    pos = _col(exposures, "position").astype(np.int64)
    exam = world.oracle.examination(e["scenario"], pos[:, None])[:, 0]
    att = np.clip(e["p_click"] / exam, 1e-9, 1 - 1e-9)
    y = np.log(att) - np.log1p(-att)
    _, g, n = np.unique(e["user"], return_inverse=True, return_counts=True)
    G, N = n.size, y.size
    if G < 2 or N <= G:
        return float("nan")
    means = np.bincount(g, weights=y) / n
    msb = (n * (means - y.mean()) ** 2).sum() / (G - 1)
    msw = ((y - means[g]) ** 2).sum() / (N - G)
    n0 = (N - (n**2).sum() / N) / (G - 1)
    return float((msb - msw) / (msb + (n0 - 1) * msw))
