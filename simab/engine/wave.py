"""The wave engine: every due user of a shard advances one event per wave, vectorised.

Users are struct-of-arrays: per user the kind of its next event (``pc``), its time
(``t_next``), the session number, scene step and pending scene, the arm of the session,
and the pending request (query category / shop, request id, latency).  A SimPy process
is the clock: it advances tick by tick (``tick_s`` simulated seconds, a day by default);
within a tick, every user whose next event falls before the tick's end advances one event
in one vectorised pass, repeated in waves until no user has an event before the tick's end.
A user never appears twice in one wave, each user's events run in its own time order, and
every draw is keyed by (user, session, step, slot) or request id, so a user's trajectory
does not depend on the tick length, on which users share a wave, on the shard count or
on the worker count.  Logs go to the sink after a wave once they are large.

The events are those of :mod:`simab.engine.reference` (the readable version):

    START  session start: needs arrive, the session's arm, its first scene
    SCENE  a content visit (dwell) or a ranking surface (the request is sent)
    SERVE  the slate arrives ``latency`` later: ranking, response, clicks, cart, purchases
    END    the scene's dwell is over: leave (-> next session) or the next scene
    PARKED a request waiting for its neural arm's batch (below)

Delayed purchases are per-user pending slots, applied in time order before the user's
next event whose time is at or after them, and at the end for those before ``t_end``.

A neural arm's requests are parked until the arm's serving batch fills (the policy's
``serve_batch``, or ``serving.max_batch``) or nothing else is left to do in the tick: a
wave holds only the users whose event is due, often a few, and a model scores a few
requests far below its speed.  A parked user has no other event meanwhile and no user's
state depends on another's, so the request is served at its own time on the state it was
sent in; only the calls' composition changes, a function of the shard's waves (issue #29).
Fixed policies are served in the wave, as before.
"""

from __future__ import annotations

import numpy as np
import simpy

from simab.engine.serving import Requests
from simab.engine.shard import ShardSimulation
from simab.simulators.scenes import CART, CONTENT, DETAIL
from simab.simulators.streams import Decision, request_ids

START, SCENE, SERVE, END, DONE, PARKED = range(6)
#: Requests per serving call at most: a wave of a large shard is served in slices so that the
#: call's temporaries (candidates x latent dimensions per request) stay bounded.
MAX_SERVE_ROWS = 8192
SEARCH_SURFACES = ("search", "shop")


class PendingPurchases:
    """Per-user slots of conversions waiting for their time (``inf``: free slot)."""

    def __init__(self, n: int, slots: int = 2):
        self.t = np.full((n, slots), np.inf)
        self.cat = np.zeros((n, slots), np.int64)
        self.shop = np.zeros((n, slots), np.int64)
        self.next = np.full(n, np.inf)  # earliest pending time per user

    def add(self, rows: np.ndarray, t: np.ndarray, cats: np.ndarray, shops: np.ndarray) -> None:
        """Add purchases (rows may repeat), growing the slots when a user's are full."""
        if not len(rows):
            return
        order = np.argsort(rows, kind="stable")
        rows, t, cats, shops = rows[order], t[order], cats[order], shops[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        rank = np.arange(len(rows)) - np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
        for r in range(int(rank.max()) + 1):
            sel = rank == r
            rr = rows[sel]
            free = np.isinf(self.t[rr])
            if not free.any(axis=1).all():
                self._grow()
                free = np.isinf(self.t[rr])
            slot = np.argmax(free, axis=1)
            self.t[rr, slot] = t[sel]
            self.cat[rr, slot] = cats[sel]
            self.shop[rr, slot] = shops[sel]
            self.next[rr] = np.minimum(self.next[rr], t[sel])

    def _grow(self) -> None:
        n, s = self.t.shape
        self.t = np.concatenate([self.t, np.full((n, s), np.inf)], axis=1)
        self.cat = np.concatenate([self.cat, np.zeros((n, s), np.int64)], axis=1)
        self.shop = np.concatenate([self.shop, np.zeros((n, s), np.int64)], axis=1)

    def take(self, rows: np.ndarray, until: np.ndarray, strict: bool = False):
        """Yield (rows, cats, shops, t) of the purchases of ``rows`` due by ``until`` (per
        row; ``strict``: before it), earliest first per row, one purchase per row per
        round; the slots are freed."""
        due_rows = self.next[rows] < until if strict else self.next[rows] <= until
        rows, until = rows[due_rows], until[due_rows]
        while len(rows):
            t = self.t[rows]
            slot = np.argmin(t, axis=1)
            tt = t[np.arange(len(rows)), slot]
            due = tt < until if strict else tt <= until
            rows, until, slot, tt = rows[due], until[due], slot[due], tt[due]
            if not len(rows):
                break
            yield rows, self.cat[rows, slot], self.shop[rows, slot], tt
            self.t[rows, slot] = np.inf
            self.next[rows] = self.t[rows].min(axis=1)


class WaveSimulation(ShardSimulation):
    def run(self) -> None:
        n = len(self.plan.users)
        # per user, in the smallest dtypes that hold the values (scene steps < 64, arms and
        # scenarios < 32k; session numbers, ids, times in 64 bits)
        self.pc = np.full(n, DONE, np.int8)
        self.t_next = np.full(n, np.inf)
        self.sess = np.zeros(n, np.int64)
        self.step = np.zeros(n, np.int8)
        self.sc = np.zeros(n, np.int16)  # pending scene: scenario index, -1 content
        self.arm_now = np.zeros(n, np.int16)
        self.q_cat = np.full(n, -1, np.int32)
        self.q_shop = np.full(n, -1, np.int32)
        self.rid = np.zeros(n, np.int64)
        self.lat = np.zeros(n)
        self.buys = PendingPurchases(n)
        self.park_t = np.zeros(n)  # a parked request's serving time
        self.parked: dict[int, list[np.ndarray]] = {}  # (arm, shape) key -> parked rows, in order
        specs = [self.world.spec.scenarios[name] for name in self.world.scenario_names]
        shapes = [(s.n_candidates, s.slate_size) for s in specs]
        self.shape_of_scenario = np.array([sorted(set(shapes)).index(x) for x in shapes], np.int64)
        self.waves = 0
        self.wave_rows = 0
        rows = np.flatnonzero(self.plan.arm >= 0)
        tb = self.plan.t_begin
        t = np.maximum(self.plan.start[rows], tb)
        self.next_session(rows, tb + (t - tb))  # (the reference's timeout from t_begin)
        self.env = simpy.Environment(initial_time=tb)
        self.env.process(self.clock())
        self.env.run(until=self.plan.t_end)
        all_rows = np.arange(n)
        for r, cats, shops, tt in self.buys.take(all_rows, np.full(n, self.plan.t_end), strict=True):
            self.purchase(r, cats, shops, tt)
        self.flush(final=True)

    def clock(self):
        """The SimPy process of the shard: one tick after another."""
        t_end = self.plan.t_end
        while self.env.now < t_end:
            tick_end = min(self.env.now + self.tick_s, t_end)
            self.advance(tick_end)
            yield self.env.timeout(tick_end - self.env.now)

    def advance(self, tick_end: float) -> None:
        """Waves until no user has an event before ``tick_end``."""
        steps = ((START, self.start_session), (SCENE, self.begin_scene), (SERVE, self.serve), (END, self.end_scene))
        while True:
            due = np.flatnonzero(self.t_next < tick_end)
            if not len(due):
                if not self.parked:
                    return
                self.serve_parked()  # nothing else to do in the tick: the waiting requests go now
                continue
            self.waves += 1
            self.wave_rows += len(due)
            t = self.t_next[due]
            for r, cats, shops, tt in self.buys.take(due, t):
                self.purchase(r, cats, shops, tt)
            pc = self.pc[due]
            for code, step in steps:
                sel = pc == code
                if sel.any():
                    step(due[sel], t[sel])
            self.flush()  # to the sink once the logs are large

    def set_next(self, rows: np.ndarray, t: np.ndarray, pc: int) -> None:
        """The next event of ``rows``: ``pc`` at ``t``; none at or after ``t_end``."""
        live = t < self.plan.t_end
        self.t_next[rows] = np.where(live, t, np.inf)
        self.pc[rows] = np.where(live, pc, DONE)

    # --- events -----------------------------------------------------------------------
    def next_session(self, rows: np.ndarray, t: np.ndarray) -> None:
        """When the next session opens: a regular arrival or a need that brings the user."""
        st, chain = self.state, self.world.chain
        users = self.plan.users[rows]
        regular = chain.next_session_batch(users, st.users.activity[rows], t, st.sessions[rows])
        need = st.need_session_time_batch(rows, users, chain)
        t_next = np.minimum(regular, np.maximum(need, t))
        self.set_next(rows, t + (t_next - t), START)  # (the reference's timeout from t)

    def start_session(self, rows: np.ndarray, t: np.ndarray) -> None:
        st, chain = self.state, self.world.chain
        users = self.plan.users[rows]
        n = st.sessions[rows].copy()
        st.sessions[rows] += 1
        fresh = st.arrive_needs_batch(rows, users, chain, t, self.world.catalog.n_categories)
        arm = self.arms_of(rows, n, t)
        out = arm < 0  # an unassigned session (unit = "session") is outside the experiment
        if out.any():
            self.next_session(rows[out], t[out])
        go = ~out
        rows, t, n = rows[go], t[go], n[go]
        self.sess[rows] = n
        self.arm_now[rows] = arm[go]
        self.step[rows] = 0
        self.sc[rows] = chain.first_scene_batch(users[go], n, fresh[go])
        self.set_next(rows, t, SCENE)

    def begin_scene(self, rows: np.ndarray, t: np.ndarray) -> None:
        st, chain = self.state, self.world.chain
        users, n, s, sc = self.plan.users[rows], self.sess[rows], self.step[rows], self.sc[rows]
        content = sc < 0
        if content.any():
            r, tc = rows[content], t[content]
            cat = st.interest_category_batch(r, users[content], n[content], s[content], tc, chain)
            self.scene(r, CONTENT, cat, -1, tc)
            self.set_next(r, tc + chain.scene_dwell_batch(users[content], n[content], s[content]), END)
        surf = ~content
        if not surf.any():
            return
        rows, t, users, n, s, sc = rows[surf], t[surf], users[surf], n[surf], s[surf], sc[surf]
        kind = self.surface_of_scenario[sc]
        cat = np.full(len(rows), -1, np.int64)
        shop = np.full(len(rows), -1, np.int64)
        q = np.isin(kind, SEARCH_SURFACES)
        if q.any():
            cat[q] = st.interest_category_batch(rows[q], users[q], n[q], s[q], t[q], chain)
        sh = kind == "shop"
        if sh.any():
            shop[sh] = self.retriever.shop_for_batch(cat[sh], chain.draw_batch(users[sh], n[sh], s[sh], Decision.SHOP))
        self.scene(rows, self.scene_of_scenario[sc], cat, shop, t)
        k = st.requests[rows].copy()
        st.requests[rows] += 1
        rid = request_ids(users, k)
        first = np.isnan(self.first_exposure[rows])
        self.first_exposure[rows[first]] = t[first]
        self.first_arm[rows[first]] = self.arm_now[rows[first]]
        self.q_cat[rows], self.q_shop[rows], self.rid[rows] = cat, shop, rid
        arm = self.arm_now[rows]
        lat = np.empty(len(rows))
        for a in np.unique(arm):
            m = arm == a
            lat[m] = self.services[self.arms[a]].latency.latency_ms(rid[m], self.n_candidates[sc[m]])
        self.lat[rows] = lat
        self.set_next(rows, t + lat / 1000.0, SERVE)

    def serve(self, rows: np.ndarray, t: np.ndarray) -> None:
        """Every request of the wave, one call per (arm, shape): scenarios with the same
        numbers of candidates and slate size share a call.  A neural arm's requests wait
        (parked) until its serving batch fills or the tick has nothing else to do
        (:meth:`serve_parked`)."""
        n_shapes = int(self.shape_of_scenario.max()) + 1
        key = self.arm_now[rows] * n_shapes + self.shape_of_scenario[self.sc[rows]]
        for k in np.unique(key):
            m = np.flatnonzero(key == k)
            arm = self.arms[int(k) // n_shapes]
            server = self.services[arm]
            if server.neural:
                r = rows[m]
                self.park_t[r] = t[m]
                self.pc[r] = PARKED
                self.t_next[r] = np.inf
                pool = self.parked.setdefault(int(k), [])
                pool.append(r)
                if sum(len(x) for x in pool) >= server.chunk:
                    self.serve_parked(int(k))
                continue
            self.serve_now(arm, rows[m], t[m])

    def serve_now(self, arm: str, rows: np.ndarray, t: np.ndarray) -> None:
        for lo in range(0, len(rows), MAX_SERVE_ROWS):  # bounded temporaries ([B, C, d] in the oracle)
            r, tt = rows[lo:lo + MAX_SERVE_ROWS], t[lo:lo + MAX_SERVE_ROWS]
            out = self.serve_requests(arm, Requests(r, self.sess[r], self.rid[r], self.sc[r], tt, self.q_cat[r],
                                                    self.q_shop[r], self.lat[r]))
            self.react(r, tt, out)

    def serve_parked(self, key: int | None = None) -> None:
        """Serve the parked requests of pool ``key`` (every pool when None), each at its
        own time.  A parked user has no other event meanwhile and no user's story reads
        another's, so a request served a few waves later sees the state it was sent in; the
        pools are emptied before a tick ends.  The composition of a call is a function of
        the shard's waves, so outputs stay the same for any number of workers."""
        n_shapes = int(self.shape_of_scenario.max()) + 1
        for k in sorted(self.parked) if key is None else [key]:
            rows = np.concatenate(self.parked.pop(k))
            self.serve_now(self.arms[k // n_shapes], rows, self.park_t[rows])

    def react(self, rows: np.ndarray, t: np.ndarray, out) -> None:
        """Clicks (in slate order per user): the item joins the short sequence (and the
        AISeq after a search / shop visit), item detail, sometimes the cart; conversions
        become pending purchases.  The scene ends after its dwell plus the items' dwell."""
        st, c, chain = self.state, self.world.catalog, self.world.chain
        users, n, s = self.plan.users[rows], self.sess[rows], self.step[rows]
        dwell = chain.scene_dwell_batch(users, n, s)
        for p in range(out.dwell_s.shape[1]):  # summed in slate order, as the reference does
            dwell = dwell + out.dwell_s[:, p]
        ci, cp = np.nonzero(out.clicked)  # row-major: per user, in slate order
        if len(ci):
            rc, tc = rows[ci], t[ci]
            items = out.items[ci, cp]
            cats, shops = c.category[items], c.shop[items]
            st.click_batch(rc, items, cats, self.scene_of_scenario[self.sc[rc]], tc, c.latent[items])
            cart = chain.goes_to_cart_batch(users[ci], n[ci], s[ci], cp)
            # per click: item detail, then (sometimes) the cart
            idx = np.repeat(np.arange(len(ci)), 1 + cart)
            second = np.r_[False, idx[1:] == idx[:-1]]
            self.scene(rc[idx], np.where(second, CART, DETAIL), cats[idx], shops[idx], tc[idx])
            conv = out.converted[ci, cp]
            if conv.any():
                when = tc[conv] + out.delay_s[ci, cp][conv]
                live = when < self.plan.t_end  # none after the campaign ends
                self.buys.add(rc[conv][live], when[live], cats[conv][live], shops[conv][live])
        self.set_next(rows, t + dwell, END)

    def end_scene(self, rows: np.ndarray, t: np.ndarray) -> None:
        st, chain = self.state, self.world.chain
        users, n, s = self.plan.users[rows], self.sess[rows], self.step[rows]
        stay = ~chain.leaves_batch(users, n, s) & (s + 1 < self.world.spec.sessions.max_scenes)
        if stay.any():
            r = rows[stay]
            self.sc[r] = chain.next_scene_batch(users[stay], n[stay], s[stay] + 1, st.need_live_batch(r, t[stay]))
            self.step[r] = s[stay] + 1
            self.set_next(r, t[stay], SCENE)
        if (~stay).any():
            self.next_session(rows[~stay], t[~stay])
