"""Dynamic user state within one shard: intent, satiation, fatigue, interest drift and
the ring buffers that hold the recent target-domain clicks, the Active Intention
Sequence (AISeq) and the moveline.

Intent: one need at a time, s(t) = strength * 0.5^((t - t_need)/half_life) * c_k, or with
``intent.item_level`` = l > 0, ``... * ((1 - l) c_k + l v_i)`` for the need's wanted item i.
Satiation: after a purchase of category k, clicks on k are penalised by
strength * 0.5^((t - t_buy)/satiation_h).  Fatigue: every exposure of category k adds
``fatigue_per_exposure`` to a per-(user, category) penalty that halves every
``fatigue_half_life_h``.  All updates are vectorised over the rows they touch.
"""

from __future__ import annotations

import numpy as np

from simab.simulators.population import Users
from simab.simulators.scenes import (
    BUY,
    CART,
    DETAIL,
    SEARCH,
    SHOP,
    float_rows,
    int_rows,
    weighted_pick,
)
from simab.simulators.spec import WorldSpec
from simab.simulators.streams import Decision

H = 3600.0


def rank_within(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per entry of ``rows``: how many earlier entries have the same row (its rank) and
    how many entries its row has in all."""
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    new = np.ones(len(rows), bool)
    new[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    rank, total = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    rank[order] = np.arange(len(rows)) - starts[group]
    total[order] = np.diff(np.append(starts, len(rows)))[group]
    return rank, total


class Ring:
    """Per-user ring buffers of fixed length with several int/float fields."""

    def __init__(self, n: int, length: int, fields: dict[str, type]):
        self.length = length
        self.count = np.zeros(n, np.int64)
        self.data = {k: np.zeros((n, length), dt) for k, dt in fields.items()}

    def push_rows(self, rows: np.ndarray, **values) -> None:
        """Push one value per entry of ``rows`` (values broadcast).  Rows may repeat: a
        row's entries go to consecutive slots in the order given, as pushing them one at
        a time does (when a row gets more entries than the ring holds, its last
        ``length`` entries stay)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        if not len(rows):
            return
        rank, total = rank_within(rows)
        keep = rank >= total - self.length  # a row's older entries would be overwritten anyway
        slots = (self.count[rows] + rank) % self.length
        for k, v in values.items():
            self.data[k][rows[keep], slots[keep]] = np.broadcast_to(np.asarray(v), rows.shape)[keep]
        first = rank == 0
        self.count[rows[first]] += total[first]

    def push_one(self, row: int, **values) -> None:
        self.push_rows(np.array([row]), **{k: np.array([v]) for k, v in values.items()})

    def tail_rows(self, rows: np.ndarray, field: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``m = min(n, length)`` slots of ``gather(rows)[field]``: values [B, m]
        and the real mask [B, m], without gathering the whole rings."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        m = min(n, self.length)
        pos = self.count[rows][:, None] - m + np.arange(m)[None, :]
        return self.data[field][rows[:, None], pos % self.length], pos >= 0

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

    def gather_as(self, rows: np.ndarray, dtypes: dict[str, type]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:meth:`gather` of the fields named in ``dtypes`` only, each copied once out of
        the ring straight into its dtype (0 where the row holds fewer entries), and each
        row's number of real entries ``n`` (the mask is ``arange(length) >= length - n``)."""
        rows = np.asarray(rows, np.int64)
        L = self.length
        count = self.count[rows]
        # entry j (oldest first) of a row is in slot (count + j) % L; wrap[s, j] = (s + j) % L
        wrap = np.add.outer(np.arange(L), np.arange(L)) % L
        flat = (rows * L)[:, None] + wrap[count % L]  # into the row-major [n, L] data
        hole = np.arange(L)[None, :] < (L - count)[:, None]
        out = {}
        for k, dtype in dtypes.items():
            v = out[k] = np.empty(flat.shape, dtype)
            # "wrap" (the indices are in range) takes straight into ``v``; "raise" would buffer
            np.take(self.data[k].reshape(-1), flat, out=v, mode="wrap")
            np.copyto(v, 0, where=hole)
        return out, np.minimum(count, L)


class UserState:
    def __init__(self, spec: WorldSpec, users: Users, centroids: np.ndarray, t0: float = 0.0, catalog=None):
        n, K = len(users), centroids.shape[0]
        self.spec, self.users, self.centroids = spec, users, centroids
        # item-level intent (intent.item_level > 0) needs the catalog: the wanted item's latent
        self.catalog = catalog if spec.intent.item_level > 0 else None
        if spec.intent.item_level > 0 and catalog is None:
            raise ValueError("intent.item_level > 0 needs the catalog")
        self.need_item = np.full(n, -1, np.int64)
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
        # the moveline as logged (``moveline_visible`` < 1 leaves some events out of the log)
        self.moveline = Ring(
            n, spec.moveline_len, {"scene": np.int64, "cat": np.int64, "shop": np.int64, "ts": np.float64,
                                   "world_cat": np.int64}
        )
        # every moveline event's category (what the scene was about), which the world's own
        # retrieval reads; the logged ring itself when every event is logged (the default)
        self.world_moveline = self.moveline if spec.moveline_visible >= 1.0 else \
            Ring(n, spec.moveline_len, {"world_cat": np.int64})
        # whether the user's current visit (latest scene-level event) is logged: a click in
        # a search / shop visit enters the AISeq only then (the AISeq is the moveline's items)
        self.visit_logged = np.ones(n, bool)
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
            if self.catalog is None:
                out[has] = strength[:, None] * self.centroids[cat[has]]
            else:
                lv = it.item_level
                wanted = self.catalog.latent[self.need_item[rows][has]]
                out[has] = strength[:, None] * ((1.0 - lv) * self.centroids[cat[has]] + lv * wanted)
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

    def click_batch(self, rows: np.ndarray, items: np.ndarray, cats: np.ndarray, scenes: np.ndarray, t: np.ndarray,
                    latent: np.ndarray) -> None:
        """Clicks (rows may repeat: several clicks of one user, applied in the order
        given): the short sequence, the AISeq for clicks on a search / shop scene, and
        the pull of long-term interest towards each clicked item (``latent`` [B, d]),
        click r of a row seeing the drift of its earlier clicks."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        items, cats, scenes = int_rows(items, cats, scenes, size=len(rows))
        (t,) = float_rows(t, size=len(rows))
        self.seq.push_rows(rows, item=items, cat=cats, ts=t)
        on = ((scenes == SEARCH) | (scenes == SHOP)) & self.visit_logged[rows]
        self.ais.push_rows(rows[on], item=items[on], cat=cats[on], scene=scenes[on], ts=t[on])
        drift = self.spec.intent.interest_drift
        if drift > 0 and len(rows):
            latent = np.asarray(latent).reshape(len(rows), -1)
            rank, _ = rank_within(rows)
            for r in range(int(rank.max()) + 1):  # the rows of one rank are distinct
                sel = np.flatnonzero(rank == r)
                v = (1 - drift) * self.u[rows[sel]] + drift * latent[sel]
                # vecdot sums like the dot product of np.linalg.norm on one vector (BLAS ddot),
                # so each row's norm does not depend on the batch it is in
                norm = np.sqrt(np.vecdot(v, v))
                self.u[rows[sel]] = v / np.maximum(norm, 1e-12)[:, None]

    def click(self, row: int, item: int, cat: int, scene: int, t: float, latent: np.ndarray) -> None:
        self.click_batch(np.array([row]), item, cat, scene, t, np.asarray(latent)[None])

    def scene_batch(self, rows: np.ndarray, scenes: np.ndarray, cats: np.ndarray, shops: np.ndarray,
                    t: np.ndarray, chain=None) -> np.ndarray:
        """Moveline events (rows may repeat: pushed in the order given).  Returns which
        events are logged: with ``moveline_visible`` < 1 (``chain`` draws it, keyed by the
        event's index in its user's moveline) an event is left out of the log at
        probability 1 - ``moveline_visible``; the clicks of a visit left out do not enter
        the AISeq.  The world's retrieval sees every event (``world_moveline``)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        scenes, cats, shops = (np.broadcast_to(np.asarray(x, np.int64), rows.shape) for x in (scenes, cats, shops))
        if self.spec.moveline_visible >= 1.0 or not len(rows):
            self.moveline.push_rows(rows, scene=scenes, cat=cats, shop=shops, ts=t, world_cat=cats)
            return np.ones(len(rows), bool)
        events = self.world_moveline.count[rows] + rank_within(rows)[0]
        logged = chain.logged_in_full_batch(self.users.ids[rows], events)
        self.world_moveline.push_rows(rows, world_cat=cats)
        ts = np.broadcast_to(np.asarray(t, np.float64), rows.shape)
        self.moveline.push_rows(rows[logged], scene=scenes[logged], cat=cats[logged], shop=shops[logged],
                                ts=ts[logged], world_cat=cats[logged])
        visit = np.flatnonzero(~np.isin(scenes, (DETAIL, CART, BUY)))
        rank, total = rank_within(rows[visit])
        last = visit[rank == total - 1]  # a row's last visit in this call decides
        self.visit_logged[rows[last]] = logged[last]
        return logged

    def scene(self, row: int, scene: int, cat: int, shop: int, t: float, chain=None) -> None:
        self.scene_batch(np.array([row]), scene, cat, shop, t, chain)

    def purchase_batch(self, rows: np.ndarray, cats: np.ndarray, t: np.ndarray) -> None:
        """Purchases (rows may repeat, applied in the order given): satiation on the
        last bought category of each row; a need for any bought category is fulfilled
        (fulfilling only clears a need, so the order of a row's purchases does not
        change which needs end)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        (cats,) = int_rows(cats, size=len(rows))
        (t,) = float_rows(t, size=len(rows))
        fulfilled = rows[self.need_cat[rows] == cats]
        rank, total = rank_within(rows)
        last = rank == total - 1
        self.sat_cat[rows[last]] = cats[last]
        self.sat_t[rows[last]] = t[last]
        self.need_cat[fulfilled] = -1

    def purchase(self, row: int, cat: int, t: float) -> None:
        """Satiation on the bought category; a need for it is fulfilled."""
        self.purchase_batch(np.array([row]), cat, t)

    # --- needs (a Poisson process per user; see SceneChain.need_gap) ----------------------
    def next_need_batch(self, rows: np.ndarray, users: np.ndarray, chain) -> np.ndarray:
        """Arrival time of each row's next need (drawn on first use)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        (users,) = int_rows(users, size=len(rows))
        new = np.isnan(self.next_need_t[rows])
        if new.any():
            self.next_need_t[rows[new]] = self.t0 + chain.need_gap_batch(users[new], 0)
        return self.next_need_t[rows]

    def need_session_time_batch(self, rows: np.ndarray, users: np.ndarray, chain) -> np.ndarray:
        """When each row's next need brings the user to the app (inf when it does not)."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        (users,) = int_rows(users, size=len(rows))
        t = self.next_need_batch(rows, users, chain)
        out = np.full(len(rows), np.inf)
        due = np.flatnonzero(np.isfinite(t))
        d = chain.need_session_delay_batch(users[due], self.needs[rows[due]])
        opens = ~np.isnan(d)
        out[due[opens]] = t[due[opens]] + d[opens]
        return out

    def need_session_time(self, row: int, user: int, chain) -> float:
        """When the next need brings the user to the app (inf when it does not)."""
        return float(self.need_session_time_batch(np.array([row]), user, chain)[0])

    def arrive_needs_batch(self, rows: np.ndarray, users: np.ndarray, chain, now: np.ndarray,
                           n_categories: int) -> np.ndarray:
        """Take the needs that arrived by ``now`` (per row; ``rows`` distinct); the newest
        replaces any older one.  Returns whether a need arrived, per row.  Each round
        takes one need of every row whose next need is due."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        (users,) = int_rows(users, size=len(rows))
        (now,) = float_rows(now, size=len(rows))
        fresh = np.zeros(len(rows), bool)
        due = np.flatnonzero(self.next_need_batch(rows, users, chain) <= now)
        while len(due):
            r, u = rows[due], users[due]
            j = self.needs[r]
            k = chain.need_category_batch(u, j, self.users.active[r], self.users.active_w[r], n_categories)
            self.set_need(r, k, self.next_need_t[r])
            if self.catalog is not None:
                self.need_item[r] = chain.need_item_batch(u, j, k, self.catalog)
            self.needs[r] += 1
            self.next_need_t[r] += chain.need_gap_batch(u, j + 1)
            fresh[due] = True
            due = due[self.next_need_t[r] <= now[due]]
        return fresh

    def arrive_needs(self, row: int, user: int, chain, now: float, n_categories: int) -> bool:
        """Take the needs that arrived by ``now``; the newest replaces any older one.
        Returns whether a need arrived."""
        return bool(self.arrive_needs_batch(np.array([row]), user, chain, now, n_categories)[0])

    def need_live_batch(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """A need younger than two half-lives still steers searches and shop visits."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        (t,) = float_rows(t, size=len(rows))
        return (self.need_cat[rows] >= 0) & (t - self.need_t[rows] < 2 * self.spec.intent.half_life_h * H)

    def need_live(self, row: int, t: float) -> bool:
        return bool(self.need_live_batch(np.array([row]), t)[0])

    def interest_category_batch(self, rows: np.ndarray, users: np.ndarray, sessions: np.ndarray, steps: np.ndarray,
                                t: np.ndarray, chain) -> np.ndarray:
        """What a search or shop visit at ``steps`` of ``sessions`` is about: the live need
        if any, else an active interest picked by weight with the step's INTEREST draw."""
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        users, sessions, steps = int_rows(users, sessions, steps, size=len(rows))
        out = self.need_cat[rows].copy()
        other = np.flatnonzero(~self.need_live_batch(rows, t))
        u = chain.draw_batch(users[other], sessions[other], steps[other], Decision.INTEREST)
        r = rows[other]
        out[other] = weighted_pick(self.users.active[r], self.users.active_w[r], u)
        return out

    def set_need(self, row, cat, t) -> None:
        """Row(s) ``row`` now have a need for ``cat`` that arrived at ``t``."""
        self.need_cat[row] = cat
        self.need_t[row] = t
