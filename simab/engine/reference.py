"""The reference engine: one SimPy process per user, each request served alone.

Each user is a process that reads like the story it simulates: wait for the next
session, walk the scene chain, send a request on every ranking surface and see the slate
``latency`` later, look at it, click, dwell, sometimes buy later.  It is slow (per-call
overhead on every event) and kept as the readable statement of what the wave engine
(:mod:`simab.engine.wave`) computes; tests check that both give the same exposures and
moveline.
"""

from __future__ import annotations

import numpy as np
import simpy

from simab.engine.serving import Requests
from simab.engine.shard import ShardSimulation
from simab.simulators.scenes import CART, CONTENT, DETAIL
from simab.simulators.streams import Decision, request_id


def _one(x, dtype=np.int64) -> np.ndarray:
    return np.array([x], dtype)


class ReferenceSimulation(ShardSimulation):
    def run(self) -> None:
        self.env = simpy.Environment(initial_time=self.plan.t_begin)
        for row in range(len(self.plan.users)):
            if self.plan.arm[row] >= 0:
                self.env.process(self.user_life(row))
        self.env.run(until=self.plan.t_end)
        self.flush(final=True)

    # --- the story --------------------------------------------------------------------
    def user_life(self, row: int):
        st, chain = self.state, self.world.chain
        user = int(self.plan.users[row])
        activity = float(st.users.activity[row])
        t = max(self.plan.start[row], self.plan.t_begin)
        if t > self.env.now:
            yield self.env.timeout(t - self.env.now)
        while True:
            n = int(st.sessions[row])
            t_next = min(chain.next_session(user, activity, self.env.now, n),
                         max(st.need_session_time(row, user, chain), self.env.now))
            if t_next >= self.plan.t_end:
                return
            yield self.env.timeout(t_next - self.env.now)
            st.sessions[row] += 1
            fresh_need = st.arrive_needs(row, user, chain, self.env.now, self.world.catalog.n_categories)
            arm = int(self.arms_of(_one(row), _one(n), _one(self.env.now, np.float64))[0])
            if arm >= 0:  # an unassigned session (unit = "session") is outside the experiment
                yield from self.session(row, user, n, fresh_need, arm)

    def session(self, row: int, user: int, n: int, fresh_need: bool, arm: int):
        st, chain, spec = self.state, self.world.chain, self.world.spec
        kind, sc = chain.first_scene(user, n, fresh_need)
        for step in range(spec.sessions.max_scenes):
            if self.env.now >= self.plan.t_end:
                return
            if kind == "content":
                cat = self.interest_category(row, user, n, step)
                self.scene(_one(row), CONTENT, cat, -1, self.env.now)
                yield self.env.timeout(chain.scene_dwell(user, n, step))
            else:
                dwell = yield from self.visit_surface(row, user, n, step, sc, arm)
                yield self.env.timeout(dwell)
            if chain.leaves(user, n, step):
                return
            kind, sc = chain.next_scene(user, n, step + 1, st.need_live(row, self.env.now))

    def visit_surface(self, row: int, user: int, n: int, step: int, sc: int, arm: int):
        """Send the request, see the slate ``latency`` later, react; returns the time
        spent on the scene."""
        st, chain = self.state, self.world.chain
        surface = chain.surfaces[sc]
        cat, shop = -1, -1
        if surface in ("search", "shop"):
            cat = self.interest_category(row, user, n, step)
            if surface == "shop":
                shop = self.retriever.shop_for(cat, chain.draw(user, n, step, Decision.SHOP))
        self.scene(_one(row), int(self.scene_of_scenario[sc]), cat, shop, self.env.now)
        k = int(st.requests[row])
        st.requests[row] += 1
        rid = request_id(user, k)
        if np.isnan(self.first_exposure[row]):
            self.first_exposure[row] = self.env.now
            self.first_arm[row] = arm
        server = self.services[self.arms[arm]]
        latency = server.latency.latency_ms(_one(rid), _one(self.n_candidates[sc]))
        yield self.env.timeout(float(latency[0]) / 1000.0)
        out = self.serve_requests(self.arms[arm], Requests(_one(row), _one(n), _one(rid), _one(sc),
                                                           _one(self.env.now, np.float64), _one(cat), _one(shop),
                                                           latency))
        dwell = chain.scene_dwell(user, n, step)
        for pos in np.flatnonzero(out.clicked[0]):  # nothing is clicked on an abandoned request
            dwell += self.react(row, user, n, step, sc, int(pos), out)
        return dwell

    def react(self, row: int, user: int, n: int, step: int, sc: int, pos: int, out) -> float:
        """A click leads to item detail (and sometimes the cart); a conversion comes later.
        Returns the dwell on the item."""
        st, c, chain = self.state, self.world.catalog, self.world.chain
        item = int(out.items[0, pos])
        cat, shop = int(c.category[item]), int(c.shop[item])
        st.click(row, item, cat, int(self.scene_of_scenario[sc]), self.env.now, c.latent[item])
        self.scene(_one(row), DETAIL, cat, shop, self.env.now)
        if chain.goes_to_cart(user, n, step, pos):
            self.scene(_one(row), CART, cat, shop, self.env.now)
        if out.converted[0, pos]:
            self.env.process(self.buy_later(row, cat, shop, float(out.delay_s[0, pos])))
        return float(out.dwell_s[0, pos])

    def buy_later(self, row: int, cat: int, shop: int, delay: float):
        yield self.env.timeout(delay)
        self.purchase(_one(row), _one(cat), _one(shop), _one(self.env.now, np.float64))

    def interest_category(self, row: int, user: int, n: int, step: int) -> int:
        """What a scene is about: the live need if any, else an active interest."""
        return int(self.state.interest_category_batch(_one(row), _one(user), _one(n), _one(step),
                                                      _one(self.env.now, np.float64), self.world.chain)[0])
