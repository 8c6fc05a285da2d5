"""Dynamic user state within one shard: intent, satiation, fatigue, interest drift and
the ring buffers that hold the recent target-domain clicks, the Active Intention
Sequence (AISeq) and the moveline.

Intent: one need at a time, s(t) = strength * 0.5^((t - t_need)/half_life) * c_k.
Satiation: after a purchase of category k, clicks on k are penalised by
strength * 0.5^((t - t_buy)/satiation_h).  Fatigue: every exposure of category k adds
``fatigue_per_exposure`` to a per-(user, category) penalty that halves every
``fatigue_half_life_h``.  All updates are vectorised over the rows they touch.
"""

from __future__ import annotations

import numpy as np

from simab.simulators.population import Users
from simab.simulators.scenes import SEARCH, SHOP
from simab.simulators.spec import WorldSpec

H = 3600.0


class Ring:
    """Per-user ring buffers of fixed length with several int/float fields."""

    def __init__(self, n: int, length: int, fields: dict[str, type]):
        self.length = length
        self.count = np.zeros(n, np.int64)
        self.data = {k: np.zeros((n, length), dt) for k, dt in fields.items()}

    def push_one(self, row: int, **values) -> None:
        slot = self.count[row] % self.length
        for k, v in values.items():
            self.data[k][row, slot] = v
        self.count[row] += 1

    def tail(self, row: int, field: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``min(n, length)`` slots of ``gather([row])[field]`` (values, real mask),
        without gathering the whole ring."""
        m = min(n, self.length)
        pos = np.arange(int(self.count[row]) - m, int(self.count[row]))
        return self.data[field][row, pos % self.length], pos >= 0

    def gather(self, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Chronological (oldest first) copies and the mask of real entries."""
        rows = np.asarray(rows, np.int64)
        c = self.count[rows][:, None]
        j = np.arange(self.length)[None, :]
        pos = c - self.length + j
        mask = pos >= 0
        idx = np.where(mask, pos % self.length, 0)
        out = {k: np.where(mask, v[rows[:, None], idx], 0) for k, v in self.data.items()}
        return out, mask


class UserState:
    def __init__(self, spec: WorldSpec, users: Users, centroids: np.ndarray, t0: float = 0.0):
        n, K = len(users), centroids.shape[0]
        self.spec, self.users, self.centroids = spec, users, centroids
        self.index = {int(u): i for i, u in enumerate(users.ids)}
        self.u = users.u.copy()
        self.need_cat = np.full(n, -1, np.int64)
        self.need_t = np.full(n, -np.inf)
        self.sat_cat = np.full(n, -1, np.int64)
        self.sat_t = np.full(n, np.inf)
        self.fatigue = np.zeros((n, K))
        self.fatigue_t = np.full(n, t0)
        self.seq = Ring(n, spec.seq_len, {"item": np.int64, "cat": np.int64, "ts": np.float64})
        # ids are raw (category/shop -1 = none); features shift them by one (0 = padding)
        self.ais = Ring(n, spec.aiseq_len, {"item": np.int64, "cat": np.int64, "scene": np.int64, "ts": np.float64})
        self.moveline = Ring(
            n, spec.moveline_len, {"scene": np.int64, "cat": np.int64, "shop": np.int64, "ts": np.float64}
        )
        self.sessions = np.zeros(n, np.int64)
        self.requests = np.zeros(n, np.int64)
        self.t0 = t0
        self.needs = np.zeros(n, np.int64)  # needs that have arrived so far
        self.next_need_t = np.full(n, np.nan)  # arrival time of the next need (nan: not drawn yet)

    def seed_history(self, rows: np.ndarray, items: np.ndarray, cats: np.ndarray, ts: np.ndarray, mask: np.ndarray):
        """Fill the short target-domain sequence from the on-demand target history: the
        last ``seq.length`` real events of each row, oldest first."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and not self.seq.count[rows].any() and len(np.unique(rows)) == len(rows):
            self._seed_empty(rows, items, cats, ts, np.asarray(mask, bool))
            return
        for r, it, ca, t, m in zip(rows, items, cats, ts, mask, strict=True):
            k = int(m.sum())
            take = slice(max(0, k - self.seq.length), k)
            idx = np.flatnonzero(m)[take]
            for j in idx:
                self.seq.push_one(int(r), item=it[j], cat=ca[j], ts=t[j])

    def _seed_empty(self, rows, items, cats, ts, mask) -> None:
        """``seed_history`` for distinct rows whose rings are empty, vectorised: pushing k
        events into an empty ring puts them in slots 0..k-1."""
        L, width = self.seq.length, mask.shape[1]
        n_real = mask.sum(axis=1)
        real_first = np.argsort(~mask, axis=1, kind="stable")  # real positions first, in order
        src = np.maximum(n_real - L, 0)[:, None] + np.arange(L)[None, :]
        valid = src < n_real[:, None]
        pos = np.take_along_axis(real_first, np.minimum(src, width - 1), axis=1)
        slot_rows = np.broadcast_to(rows[:, None], pos.shape)[valid]
        slots = np.broadcast_to(np.arange(L)[None, :], pos.shape)[valid]
        for field, values in (("item", items), ("cat", cats), ("ts", ts)):
            self.seq.data[field][slot_rows, slots] = np.take_along_axis(np.asarray(values), pos, axis=1)[valid]
        self.seq.count[rows] = np.minimum(n_real, L)

    # --- latent quantities the oracle reads -----------------------------------------
    def intent(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        it = self.spec.intent
        out = np.zeros((len(rows), self.centroids.shape[1]))
        if not it.enabled:
            return out
        cat = self.need_cat[rows]
        has = cat >= 0
        if has.any():
            age = np.maximum(np.asarray(t)[has] - self.need_t[rows][has], 0.0)
            strength = it.strength * 0.5 ** (age / (it.half_life_h * H))
            out[has] = strength[:, None] * self.centroids[cat[has]]
        return out

    def penalty(self, rows: np.ndarray, items_cat: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Fatigue + satiation for each candidate's category: [B, C]."""
        it = self.spec.intent
        pen = np.zeros(items_cat.shape)
        if not it.enabled:
            return pen
        t = np.asarray(t, np.float64)
        if it.fatigue:
            decay = 0.5 ** ((t - self.fatigue_t[rows]) / (it.fatigue_half_life_h * H))
            pen += self.fatigue[rows[:, None], items_cat] * decay[:, None]
        if it.satiation:
            age = t - self.sat_t[rows]
            active = age >= 0
            s = np.where(active, it.satiation_strength * 0.5 ** (np.maximum(age, 0) / (it.satiation_h * H)), 0.0)
            pen += np.where(items_cat == self.sat_cat[rows][:, None], s[:, None], 0.0)
        return pen

    # --- updates ----------------------------------------------------------------------
    def expose(self, rows: np.ndarray, slate_cat: np.ndarray, t: np.ndarray) -> None:
        """Fatigue from exposures: decay to ``t`` then add per exposed category.
        ``rows`` must be distinct (a user has one outstanding request at a time)."""
        it = self.spec.intent
        if not (it.enabled and it.fatigue):
            return
        t = np.asarray(t, np.float64)
        decay = 0.5 ** ((t - self.fatigue_t[rows]) / (it.fatigue_half_life_h * H))
        self.fatigue[rows] *= decay[:, None]
        np.add.at(self.fatigue, (np.broadcast_to(rows[:, None], slate_cat.shape), slate_cat), it.fatigue_per_exposure)
        self.fatigue_t[rows] = t

    def click(self, row: int, item: int, cat: int, scene: int, t: float, latent: np.ndarray) -> None:
        self.seq.push_one(row, item=item, cat=cat, ts=t)
        if scene in (SEARCH, SHOP):
            self.ais.push_one(row, item=item, cat=cat, scene=scene, ts=t)
        drift = self.spec.intent.interest_drift
        if drift > 0:
            v = (1 - drift) * self.u[row] + drift * latent
            self.u[row] = v / max(np.linalg.norm(v), 1e-12)

    def scene(self, row: int, scene: int, cat: int, shop: int, t: float) -> None:
        self.moveline.push_one(row, scene=scene, cat=cat, shop=shop, ts=t)

    def purchase(self, row: int, cat: int, t: float) -> None:
        """Satiation on the bought category; a need for it is fulfilled."""
        self.sat_cat[row] = cat
        self.sat_t[row] = t
        if self.need_cat[row] == cat:
            self.need_cat[row] = -1

    # --- needs (a Poisson process per user; see SceneChain.need_gap) ----------------------
    def next_need(self, row: int, user: int, chain) -> float:
        if np.isnan(self.next_need_t[row]):
            self.next_need_t[row] = self.t0 + chain.need_gap(user, 0)
        return float(self.next_need_t[row])

    def need_session_time(self, row: int, user: int, chain) -> float:
        """When the next need brings the user to the app (inf when it does not)."""
        t = self.next_need(row, user, chain)
        d = chain.need_session_delay(user, int(self.needs[row])) if np.isfinite(t) else None
        return float("inf") if d is None else t + d

    def arrive_needs(self, row: int, user: int, chain, now: float, n_categories: int) -> bool:
        """Take the needs that arrived by ``now``; the newest replaces any older one.
        Returns whether a need arrived."""
        fresh = False
        while self.next_need(row, user, chain) <= now:
            j = int(self.needs[row])
            k = chain.need_category(user, j, self.users.active[row], self.users.active_w[row], n_categories)
            self.set_need(row, k, float(self.next_need_t[row]))
            self.needs[row] += 1
            self.next_need_t[row] += chain.need_gap(user, j + 1)
            fresh = True
        return fresh

    def need_live(self, row: int, t: float) -> bool:
        """A need younger than two half-lives still steers searches and shop visits."""
        return bool(self.need_cat[row] >= 0 and t - self.need_t[row] < 2 * self.spec.intent.half_life_h * H)

    def set_need(self, row: int, cat: int, t: float) -> None:
        self.need_cat[row] = cat
        self.need_t[row] = t
