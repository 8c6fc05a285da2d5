"""Users: profile, long-term interests (active and dormant), activity, price sensitivity
and conversion propensity.

Attributes are pure functions of (seed, user id) through the counter-based RNG, so any
subset of users is generated on demand and memory does not grow with the population.

Interest model: each user has ``n_active`` active and ``n_dormant`` dormant interest
categories with Dirichlet-like weights (normalised Exp(1) draws raised to
``1/concentration``).  The first active category's parent follows the user's profile
(age x gender) with probability ``profile_correlation``, so profile features predict
interests.  Dormant interests are a separate facet (an old hobby): the first one lies
under a parent that no active interest has; later categories share a parent with an
earlier one of their facet half of the time (related interests), so interest spills
over to related categories within a facet but a dormant facet is not predictable from
the active one.  The long-term interest vector ``u`` is the weighted sum of the
category centroids (leaning towards the user's topics, or with ``topic_level = "parent"``
mixing each dormant interest with its parent-level tag by ``topic_share``); dormant categories carry ``dormant_weight`` of it and appear only in
old lifelong history, so only a lifelong model can see them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from simab.simulators import rng, streams
from simab.simulators.catalog import Catalog
from simab.simulators.spec import WorldSpec
from simab.simulators.streams import Stream

PROFILE_SIZES = (6, 2, 4, 4)  # age bucket, gender, city tier, activity bucket


@dataclass(frozen=True)
class Users:
    ids: np.ndarray  # [n] global user ids
    profile: np.ndarray  # [n, 4]
    active: np.ndarray  # [n, n_active] categories
    active_w: np.ndarray  # [n, n_active]
    dormant: np.ndarray  # [n, n_dormant]
    dormant_w: np.ndarray  # [n, n_dormant]
    u: np.ndarray  # [n, d] long-term interest (what drives clicks)
    activity: np.ndarray  # [n] session-rate multiplier
    price_sensitivity: np.ndarray  # [n]
    conversion_propensity: np.ndarray  # [n] logit shift
    length_z: np.ndarray  # [n] standard normal of the lifelong history length (correlated with activity)
    click_bias: np.ndarray  # [n] click-logit shift (response.user_click_bias_sd; 0 by default)
    topics: np.ndarray | None = None  # [n, n_active + n_dormant] the user's topic in each interest (n_topics > 0)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows: np.ndarray) -> Users:
        """The users at positions ``rows`` (every attribute indexed alike)."""
        return Users(*(None if v is None else v[rows] for v in (getattr(self, f.name) for f in fields(self))))


class Population:
    def __init__(self, spec: WorldSpec, seed: int, catalog: Catalog):
        self.spec = spec
        self.seed = seed
        self.catalog = catalog
        self._k = {s: rng.stream_key(seed, s) for s in (Stream.POPULATION_PROFILE, Stream.POPULATION_CATS,
                                                        Stream.POPULATION_WEIGHTS, Stream.POPULATION_SCALARS,
                                                        Stream.POPULATION_TOPICS)}
        # categories of each parent, for related-interest draws
        self._by_parent = [np.flatnonzero(catalog.parent_of == p) for p in range(spec.n_parents)]

    @property
    def n_users(self) -> int:
        return self.spec.n_users

    def _unrelated_parent(self, taken: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A parent drawn uniformly among those not in ``taken`` [n, m] (-1 when none is left)."""
        P = self.spec.n_parents
        free = np.ones((taken.shape[0], P), bool)
        free[np.arange(taken.shape[0])[:, None], taken] = False
        n_free = free.sum(1)
        rank = np.minimum((u * n_free).astype(np.int64), np.maximum(n_free - 1, 0))
        pick = np.argmax(np.cumsum(free, 1) - 1 == rank[:, None], axis=1)
        return np.where(n_free > 0, pick, -1)

    def users(self, ids: np.ndarray) -> Users:
        ids = np.asarray(ids, dtype=np.int64)
        spec, cat = self.spec, self.catalog
        kp, kc, kw, ks = (self._k[s] for s in (Stream.POPULATION_PROFILE, Stream.POPULATION_CATS,
                                               Stream.POPULATION_WEIGHTS, Stream.POPULATION_SCALARS))
        n = ids.shape[0]
        sigma = spec.sessions.activity_sigma
        z_act = rng.normal(ks, ids, streams.ACTIVITY)
        act = np.exp(sigma * z_act)  # the median user has activity 1
        # buckets at fixed quantiles of log activity (0.7 / 1.0 / 1.4 at sigma 0.5)
        activity_bucket = np.clip(np.digitize(act, np.array([0.7, 1.0, 1.4]) ** (sigma / 0.5)), 0, 3)
        age = rng.integers(kp, ids, streams.PROFILE_AGE, PROFILE_SIZES[0])
        gender = rng.integers(kp, ids, streams.PROFILE_GENDER, PROFILE_SIZES[1])
        city = rng.integers(kp, ids, streams.PROFILE_CITY, PROFILE_SIZES[2])
        profile = np.stack([age, gender, city, activity_bucket], axis=1)

        ia, idm = spec.interest.n_active, spec.interest.n_dormant
        n_int = ia + idm
        K = spec.n_categories
        cats = np.empty((n, n_int), dtype=np.int64)
        preferred_parent = (age * 2 + gender) * 7 % spec.n_parents
        for j in range(n_int):
            c_choice, c_pick, c_rand = streams.interest_counters(j)
            u_choice = rng.uniform(kc, ids, c_choice)
            u_pick = rng.uniform(kc, ids, c_pick)
            rand_cat = rng.integers(kc, ids, c_rand, K)
            if j == 0:
                parent = np.where(u_choice < spec.interest.profile_correlation, preferred_parent, -1)
            elif j == ia:
                # the dormant facet starts under a parent none of the active interests has
                parent = self._unrelated_parent(cat.parent_of[cats[:, :ia]], u_choice)
            else:
                # related to an earlier interest of the same facet half of the time
                lo = 0 if j < ia else ia
                earlier = cats[np.arange(n), lo + (u_pick * (j - lo)).astype(np.int64)]
                parent = np.where(u_choice < 0.5, cat.parent_of[earlier], -1)
            pick = rand_cat.copy()
            for p in np.unique(parent[parent >= 0]):
                sel = parent == p
                members = self._by_parent[p]
                pick[sel] = members[np.minimum((u_pick[sel] * len(members)).astype(np.int64), len(members) - 1)]
            # keep categories distinct: on a clash take the next free category
            for i in range(j):
                clash = pick == cats[:, i]
                while clash.any():
                    pick[clash] = (pick[clash] + 1) % K
                    clash = np.zeros(n, bool)
                    for i2 in range(j):
                        clash |= pick == cats[:, i2]
            cats[:, j] = pick
        raw = rng.exponential(kw, ids[:, None], np.arange(n_int)[None, :]) ** (1.0 / spec.interest.concentration)
        wa = raw[:, :ia] / raw[:, :ia].sum(1, keepdims=True) * (1.0 - spec.interest.dormant_weight if idm else 1.0)
        wd = (
            raw[:, ia:] / np.maximum(raw[:, ia:].sum(1, keepdims=True), 1e-12) * spec.interest.dormant_weight
            if idm
            else np.zeros((n, 0))
        )
        active, dormant = cats[:, :ia], cats[:, ia:]
        # an interest's direction: its category centroid, leaning towards the user's topic in it
        d_active, d_dormant = cat.centroid[active], cat.centroid[dormant]
        topics = None
        if cat.n_topics:
            topics = rng.integers(self._k[Stream.POPULATION_TOPICS], ids[:, None], np.arange(n_int)[None, :], cat.n_topics)
            if spec.topic_level == "category":
                d_active = d_active + spec.topic_spread * cat.topic_vec[active, topics[:, :ia]]
                d_dormant = d_dormant + spec.topic_spread * cat.topic_vec[dormant, topics[:, ia:]]
            else:
                # tags: a dormant interest is its category's centroid and its parent-level tag's
                # direction mixed by topic_share at unit norm (0: the exact category, as without
                # topics; 1: the tag across the parent's categories); active interests stay
                # category-level, so only the old source-domain history reveals the tag
                s = spec.topic_share
                tag_dir = cat.topic_vec[cat.parent_of[dormant], topics[:, ia:]]
                d_dormant = np.sqrt(1.0 - s) * d_dormant + np.sqrt(s) * tag_dir
        u = np.einsum("nk,nkd->nd", wa, d_active)
        if idm and spec.interest.dormant_drives_clicks:
            u = u + np.einsum("nk,nkd->nd", wd, d_dormant)
        u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
        price_s = spec.response.price_sensitivity * np.exp(0.3 * rng.normal(ks, ids, streams.PRICE_SENSITIVITY))
        conv = spec.response.conversion_propensity_sd * rng.normal(ks, ids, streams.CONVERSION_PROPENSITY)
        rho = spec.lifelong.length_activity_corr
        length_z = rho * z_act + np.sqrt(1.0 - rho**2) * rng.normal(ks, ids, streams.LIFELONG_LENGTH)
        r = spec.response
        if r.user_click_bias_sd > 0:
            c = r.user_click_bias_activity_corr
            click_bias = r.user_click_bias_sd * (c * z_act + np.sqrt(1.0 - c**2) * rng.normal(ks, ids, streams.CLICK_BIAS))
            if r.user_click_bias_centered:  # E[exp(b)] = 1: the mean click odds of sd 0 (at low click rates)
                click_bias = click_bias - 0.5 * r.user_click_bias_sd**2
        else:
            click_bias = np.zeros(n)
        return Users(ids, profile, active, wa, dormant, wd, u, act, price_s, conv, length_z, click_bias, topics)
