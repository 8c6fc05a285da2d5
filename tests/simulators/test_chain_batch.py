"""The batch (vectorised) scene-chain decisions and user-state updates against the
one-at-a-time code they replaced.

The oracle below is the scalar code of ``simulators/scenes.py`` and ``simulators/state.py``
(and ``ShardSimulation.interest_category`` of ``simab/engine/shard.py``) as it was before the
batch versions, pasted here: the library's scalar methods are now thin wrappers over the
batch ones, so comparing against them would compare the batch code with itself.  The
oracle reads the stream keys and the spec of the objects under test, nothing else.

Both paths do the same float operations per row (the same counter-based uniforms, the
same elementwise numpy ufuncs, a 1-D and a row-wise sum over at most 20 interest weights,
a BLAS dot and ``vecdot`` for the drift norm), so every comparison is exact
(``np.array_equal``): a difference in the last bit would make a user's trajectory depend
on the wave it is served in.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from simab.simulators import rng, streams
from simab.simulators.scenes import SEARCH, SHOP, SceneChain
from simab.simulators.spec import world_spec
from simab.simulators.state import UserState
from simab.simulators.streams import Decision, Stream
from simab.simulators.world import World

N_USERS = 400

VARIANTS = {
    "default": ("default", {}),
    "intent_off": ("default", {"intent": {"enabled": False}}),
    "no_needs": ("default", {"intent": {"needs_per_day": 0.0}}),
    # many needs a day (several arrival rounds per row), no novel needs, 12 active interests
    # (more than the 8 a pairwise sum adds one by one), interest drift on, a steep diurnal
    # curve (many thinning tries)
    "busy": ("default", {"intent": {"needs_per_day": 6.0, "need_novelty": 0.0, "interest_drift": 0.3},
                         "interest": {"n_active": 12}, "sessions": {"diurnal_amplitude": 0.97},
                         "seq_len": 5, "aiseq_len": 3, "moveline_len": 4}),
    "novel_only": ("default", {"intent": {"need_novelty": 0.99, "pursuit": 1.0, "scene_first": 0.2}}),
    "multiscenario3": ("multiscenario3", {}),
}


def _world(name: str) -> World:
    preset, over = VARIANTS[name]
    return _build(preset, json.dumps(over))


_WORLDS: dict = {}


def _build(preset: str, over: str) -> World:
    if (preset, over) not in _WORLDS:
        _WORLDS[preset, over] = World.build(world_spec({"preset": preset, "n_users": N_USERS, **json.loads(over)}), 5)
    return _WORLDS[preset, over]


# --------------------------------------------------------------------------- the oracle
class OldChain:
    """The scalar ``SceneChain`` methods before the batch versions (unchanged bodies)."""

    def __init__(self, chain: SceneChain):
        self.spec, self.k, self.names = chain.spec, chain.k, chain.names
        self.search_scenarios, self.shop_scenarios = chain.search_scenarios, chain.shop_scenarios
        self.traffic_cdf, self.diurnal = chain.traffic_cdf, chain.diurnal
        self._rate, self._amp = chain._rate, chain._amp

    def next_session(self, user: int, activity: float, t: float, n: int) -> float:
        lam_max = self._rate * activity * (1.0 + self._amp)
        j = 0
        while True:
            c_gap, c_accept = streams.arrival_counters(n, j)
            t = t + rng.exponential(self.k[Stream.SCENES_ARRIVAL], user, c_gap) / lam_max
            if rng.uniform(self.k[Stream.SCENES_ARRIVAL], user, c_accept) <= self.diurnal(t) / (1.0 + self._amp):
                return float(t)
            j += 1
            if j >= streams.ARRIVAL_TRIES:
                return float(t)

    def need_gap(self, user: int, j: int) -> float:
        it = self.spec.intent
        if not it.enabled or it.needs_per_day <= 0:
            return float("inf")
        return float(rng.exponential(self.k[Stream.SCENES_NEED], user, streams.need_gap_counter(j))) * 86400.0 / it.needs_per_day

    def need_session_delay(self, user: int, j: int) -> float | None:
        it = self.spec.intent
        c_opens, c_delay = streams.need_session_counters(j)
        if rng.uniform(self.k[Stream.SCENES_NEED_SESSION], user, c_opens) >= it.scene_first:
            return None
        return float(rng.exponential(self.k[Stream.SCENES_NEED_SESSION], user, c_delay)) * 60.0 * it.need_session_delay_min

    def need_category(self, user: int, n: int, active: np.ndarray, active_w: np.ndarray, n_categories: int) -> int:
        u = float(rng.uniform(self.k[Stream.SCENES_NEED], user, streams.need_category_counter(n)))
        q = self.spec.intent.need_novelty
        if u < q:
            return int(u / q * n_categories) % n_categories
        cdf = np.cumsum(active_w) / active_w.sum()
        return int(active[min(np.searchsorted(cdf, (u - q) / (1.0 - q)), len(active) - 1)])

    def draw(self, user: int, session: int, step: int, decision: int) -> float:
        return float(rng.uniform(self.k[Stream.SCENES_STEP], user, streams.step_counter(session, step, decision)))

    def first_scene(self, user: int, session: int, fresh_need: bool) -> tuple[str, int]:
        if fresh_need:
            pool = self.search_scenarios + self.shop_scenarios
            if pool:
                return "surface", pool[int(self.draw(user, session, 0, Decision.PICK_SURFACE) * len(pool)) % len(pool)]
        return self.next_scene(user, session, 0)

    def next_scene(self, user: int, session: int, step: int, live_need: bool = False) -> tuple[str, int]:
        pool = self.search_scenarios + self.shop_scenarios
        if live_need and pool and self.draw(user, session, step, Decision.PURSUE_NEED) < self.spec.intent.pursuit:
            return "surface", pool[int(self.draw(user, session, step, Decision.PICK_SURFACE) * len(pool)) % len(pool)]
        if self.draw(user, session, step, Decision.CONTENT) < self.spec.sessions.content_prob:
            return "content", -1
        i = int(np.searchsorted(self.traffic_cdf, self.draw(user, session, step, Decision.TRAFFIC) * 0.9999999))
        return "surface", min(i, len(self.names) - 1)

    def leaves(self, user: int, session: int, step: int) -> bool:
        return self.draw(user, session, step, Decision.LEAVE) < self.spec.sessions.leave_prob

    def goes_to_cart(self, user: int, session: int, step: int, position: int) -> bool:
        u = rng.uniform(self.k[Stream.SCENES_STEP], user, streams.cart_counter(session, step, position))
        return float(u) < self.spec.sessions.cart_prob

    def scene_dwell(self, user: int, session: int, step: int) -> float:
        return float(np.exp(np.log(20.0) + 0.8 * rng.normal(self.k[Stream.SCENES_DWELL], user, streams.dwell_counter(session, step))))


def old_push_one(ring, row: int, **values) -> None:
    slot = ring.count[row] % ring.length
    for k, v in values.items():
        ring.data[k][row, slot] = v
    ring.count[row] += 1


def old_tail(ring, row: int, field: str, n: int):
    m = min(n, ring.length)
    pos = np.arange(int(ring.count[row]) - m, int(ring.count[row]))
    return ring.data[field][row, pos % ring.length], pos >= 0


class OldState:
    """The scalar ``UserState`` updates before the batch versions, acting on ``st``."""

    def __init__(self, st: UserState):
        self.st = st

    def click(self, row, item, cat, scene, t, latent) -> None:
        st = self.st
        old_push_one(st.seq, row, item=item, cat=cat, ts=t)
        if scene in (SEARCH, SHOP):
            old_push_one(st.ais, row, item=item, cat=cat, scene=scene, ts=t)
        drift = st.spec.intent.interest_drift
        if drift > 0:
            v = (1 - drift) * st.u[row] + drift * latent
            st.u[row] = v / max(np.linalg.norm(v), 1e-12)

    def scene(self, row, scene, cat, shop, t) -> None:
        old_push_one(self.st.moveline, row, scene=scene, cat=cat, shop=shop, ts=t, world_cat=cat)

    def purchase(self, row, cat, t) -> None:
        st = self.st
        st.sat_cat[row] = cat
        st.sat_t[row] = t
        if st.need_cat[row] == cat:
            st.need_cat[row] = -1

    def next_need(self, row, user, chain) -> float:
        st = self.st
        if np.isnan(st.next_need_t[row]):
            st.next_need_t[row] = st.t0 + chain.need_gap(user, 0)
        return float(st.next_need_t[row])

    def need_session_time(self, row, user, chain) -> float:
        t = self.next_need(row, user, chain)
        d = chain.need_session_delay(user, int(self.st.needs[row])) if np.isfinite(t) else None
        return float("inf") if d is None else t + d

    def arrive_needs(self, row, user, chain, now, n_categories) -> bool:
        st = self.st
        fresh = False
        while self.next_need(row, user, chain) <= now:
            j = int(st.needs[row])
            k = chain.need_category(user, j, st.users.active[row], st.users.active_w[row], n_categories)
            st.need_cat[row] = k
            st.need_t[row] = float(st.next_need_t[row])
            st.needs[row] += 1
            st.next_need_t[row] += chain.need_gap(user, j + 1)
            fresh = True
        return fresh

    def need_live(self, row, t) -> bool:
        st = self.st
        return bool(st.need_cat[row] >= 0 and t - st.need_t[row] < 2 * st.spec.intent.half_life_h * 3600.0)

    def interest_category(self, row, user, n, step, now, chain) -> int:
        """``ShardSimulation.interest_category`` (simab/engine/shard.py) with ``env.now = now``."""
        st = self.st
        if self.need_live(row, now):
            return int(st.need_cat[row])
        cats, w = st.users.active[row], st.users.active_w[row]
        u = chain.draw(user, n, step, Decision.INTEREST)
        return int(cats[min(np.searchsorted(np.cumsum(w) / w.sum(), u), len(cats) - 1)])


# --------------------------------------------------------------------------- helpers
def _rows(g, b: int):
    """Random users with many sessions (counters far from 0) and steps / positions."""
    users = g.integers(0, N_USERS, b)
    sessions = np.where(g.random(b) < 0.3, g.integers(0, 3, b), g.integers(0, 5000, b))
    steps = g.integers(0, streams.MAX_SCENES + 1, b)
    return users, sessions, steps


def _state(w: World, t0: float = 0.0) -> UserState:
    users = w.population.users(np.arange(N_USERS))
    return UserState(w.spec, users, w.catalog.centroid, t0)


def _state_arrays(st: UserState) -> dict:
    out = {k: v for k, v in vars(st).items() if isinstance(v, np.ndarray) and k != "centroids"}
    for name in ("seq", "ais", "moveline"):
        ring = getattr(st, name)
        out[f"{name}.count"] = ring.count
        out.update({f"{name}.{k}": v for k, v in ring.data.items()})
    return out


def _assert_same_state(a: UserState, b: UserState) -> None:
    sa, sb = _state_arrays(a), _state_arrays(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k], sb[k], equal_nan=True), k


def _with_needs(w: World, g, days: float = 4.0) -> tuple[UserState, np.ndarray]:
    """A state whose users took their needs up to random times (needs of all ages)."""
    st = _state(w)
    now = g.random(N_USERS) * days * 86400.0
    st.arrive_needs_batch(np.arange(N_USERS), np.arange(N_USERS), w.chain, now, w.catalog.n_categories)
    return st, now


# --------------------------------------------------------------------------- the chain
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chain_batch_equals_the_scalar_oracle(variant):
    w = _world(variant)
    chain, old = w.chain, OldChain(w.chain)
    g = np.random.default_rng(11)
    b = 600
    users, sessions, steps = _rows(g, b)
    activity = np.exp(g.normal(0, 0.7, b))
    t = g.random(b) * 5 * 86400.0
    live = g.random(b) < 0.5
    positions = g.integers(0, 64, b)
    j = np.where(g.random(b) < 0.2, 0, g.integers(0, 3000, b))
    pop = w.population.users(users)
    K = w.catalog.n_categories

    def scalar(f, *cols):
        return [f(*(c[i].item() if isinstance(c, np.ndarray) and c.ndim == 1 else c for c in cols)) for i in range(b)]

    assert np.array_equal(chain.next_session_batch(users, activity, t, sessions),
                          scalar(old.next_session, users, activity, t, sessions))
    assert np.array_equal(chain.need_gap_batch(users, j), scalar(old.need_gap, users, j))
    d = [np.nan if x is None else x for x in scalar(old.need_session_delay, users, j)]
    assert np.array_equal(chain.need_session_delay_batch(users, j), d, equal_nan=True)
    cats = [old.need_category(int(users[i]), int(j[i]), pop.active[i], pop.active_w[i], K) for i in range(b)]
    assert np.array_equal(chain.need_category_batch(users, j, pop.active, pop.active_w, K), cats)
    for dec in Decision:
        assert np.array_equal(chain.draw_batch(users, sessions, steps, dec),
                              scalar(lambda u, s, st, dec=dec: old.draw(u, s, st, dec), users, sessions, steps))
    code = lambda kind_sc: -1 if kind_sc[0] == "content" else kind_sc[1]  # noqa: E731
    assert np.array_equal(chain.first_scene_batch(users, sessions, live),
                          [code(x) for x in scalar(old.first_scene, users, sessions, live)])
    assert np.array_equal(chain.next_scene_batch(users, sessions, steps, live),
                          [code(x) for x in scalar(old.next_scene, users, sessions, steps, live)])
    assert np.array_equal(chain.leaves_batch(users, sessions, steps), scalar(old.leaves, users, sessions, steps))
    assert np.array_equal(chain.goes_to_cart_batch(users, sessions, steps, positions),
                          scalar(old.goes_to_cart, users, sessions, steps, positions))
    assert np.array_equal(chain.scene_dwell_batch(users, sessions, steps),
                          scalar(old.scene_dwell, users, sessions, steps))
    # the inputs reach the loops' edge cases: rows rejected on their first thinning try,
    # novel and interest needs (where the variant has both)
    c_gap, c_acc = streams.arrival_counters(sessions, 0)
    t1 = t + rng.exponential(chain.k[Stream.SCENES_ARRIVAL], users, c_gap) / (chain._rate * activity * (1.0 + chain._amp))
    assert (rng.uniform(chain.k[Stream.SCENES_ARRIVAL], users, c_acc) > chain.diurnal(t1) / (1.0 + chain._amp)).sum() > 10
    q = w.spec.intent.need_novelty
    novel = rng.uniform(chain.k[Stream.SCENES_NEED], users, streams.need_category_counter(j)) < q
    assert novel.any() == (q > 0) and (~novel).any()
    # the scalar wrappers keep their old results and types
    i = 7
    u, s, st = int(users[i]), int(sessions[i]), int(steps[i])
    assert chain.next_scene(u, s, st, bool(live[i])) == old.next_scene(u, s, st, bool(live[i]))
    assert chain.first_scene(u, s, bool(live[i])) == old.first_scene(u, s, bool(live[i]))
    assert chain.next_session(u, float(activity[i]), float(t[i]), s) == old.next_session(
        u, float(activity[i]), float(t[i]), s)


def test_chain_without_a_search_or_shop_surface():
    """No search / shop scenario: fresh and live needs fall back to the plain chain."""
    w = _build("default", json.dumps({"scenarios": {"home_feed": {"surface": "home", "traffic": 1.0}}}))
    if w.chain.search_scenarios or w.chain.shop_scenarios:  # the override merged into the preset's scenarios
        w = World.build(w.spec.model_copy(update={"scenarios": {"home_feed": w.spec.scenarios["home_feed"]}}), 5)
    assert not (w.chain.search_scenarios or w.chain.shop_scenarios)
    old, g = OldChain(w.chain), np.random.default_rng(3)
    users, sessions, steps = _rows(g, 300)
    live = np.ones(300, bool)
    code = lambda kind_sc: -1 if kind_sc[0] == "content" else kind_sc[1]  # noqa: E731
    assert np.array_equal(w.chain.first_scene_batch(users, sessions, live),
                          [code(old.first_scene(int(u), int(s), True)) for u, s in zip(users, sessions, strict=True)])
    assert np.array_equal(w.chain.next_scene_batch(users, sessions, steps, live),
                          [code(old.next_scene(int(u), int(s), int(st), True))
                           for u, s, st in zip(users, sessions, steps, strict=True)])


def test_chain_rows_do_not_depend_on_the_batch():
    """A row's result is the same in the full batch, in a shuffled subset and alone."""
    w = _world("busy")
    chain = w.chain
    g = np.random.default_rng(5)
    b = 500
    users, sessions, steps = _rows(g, b)
    activity, t = np.exp(g.normal(0, 0.7, b)), g.random(b) * 86400.0 * 3
    live, positions = g.random(b) < 0.5, g.integers(0, 64, b)
    pop = w.population.users(users)
    K = w.catalog.n_categories
    calls = {
        "next_session": lambda r: chain.next_session_batch(users[r], activity[r], t[r], sessions[r]),
        "need_gap": lambda r: chain.need_gap_batch(users[r], sessions[r]),
        "need_session_delay": lambda r: chain.need_session_delay_batch(users[r], sessions[r]),
        "need_category": lambda r: chain.need_category_batch(users[r], sessions[r], pop.active[r], pop.active_w[r], K),
        "first_scene": lambda r: chain.first_scene_batch(users[r], sessions[r], live[r]),
        "next_scene": lambda r: chain.next_scene_batch(users[r], sessions[r], steps[r], live[r]),
        "leaves": lambda r: chain.leaves_batch(users[r], sessions[r], steps[r]),
        "goes_to_cart": lambda r: chain.goes_to_cart_batch(users[r], sessions[r], steps[r], positions[r]),
        "scene_dwell": lambda r: chain.scene_dwell_batch(users[r], sessions[r], steps[r]),
    }
    sub = g.permutation(b)[: b // 3]
    for name, f in calls.items():
        full = f(np.arange(b))
        assert np.array_equal(f(sub), full[sub], equal_nan=True), name
        assert np.array_equal(f(sub[:1]), full[sub[:1]], equal_nan=True), name
        assert len(f(sub[:0])) == 0, name


# --------------------------------------------------------------------------- the rings
def test_ring_push_rows_equals_pushing_one_at_a_time():
    from simab.simulators.state import Ring

    g = np.random.default_rng(2)
    for length in (1, 3, 7):
        a = Ring(40, length, {"v": np.int64, "ts": np.float64})
        b = copy.deepcopy(a)
        for _ in range(30):
            k = int(g.integers(0, 60))
            rows = g.integers(0, 40, k)
            rows[: k // 3] = rows[0] if k else rows[: k // 3]  # one row repeated more often than the ring holds
            v, ts = g.integers(0, 1000, k), g.random(k)
            a.push_rows(rows, v=v, ts=ts)
            for r, vv, tt in zip(rows, v, ts, strict=True):
                old_push_one(b, int(r), v=vv, ts=tt)
            assert np.array_equal(a.count, b.count)
            for f in ("v", "ts"):
                assert np.array_equal(a.data[f], b.data[f])
            rows_t = g.integers(0, 40, 25)
            for n in (1, length, length + 5):
                vals, real = a.tail_rows(rows_t, "v", n)
                for i, r in enumerate(rows_t):
                    ov, oreal = old_tail(b, int(r), "v", n)
                    assert np.array_equal(vals[i], ov) and np.array_equal(real[i], oreal)


# --------------------------------------------------------------------------- the state
@pytest.mark.parametrize("variant", ["default", "intent_off", "busy", "novel_only"])
def test_need_batches_equal_the_scalar_oracle(variant):
    w = _world(variant)
    oc = OldChain(w.chain)
    K = w.catalog.n_categories
    g = np.random.default_rng(17)
    a = _state(w, t0=1000.0)
    b = copy.deepcopy(a)
    ob = OldState(b)
    rows = g.permutation(N_USERS)[:300]  # distinct rows (a user arrives once per wave)
    users = a.users.ids[rows]
    for days in (0.2, 1.0, 3.0, 3.5):
        now = 1000.0 + g.random(300) * days * 86400.0
        nst = a.need_session_time_batch(rows, users, w.chain)
        assert np.array_equal(nst, [ob.need_session_time(int(r), int(u), oc) for r, u in zip(rows, users, strict=True)])
        fresh = a.arrive_needs_batch(rows, users, w.chain, now, K)
        assert np.array_equal(fresh, [ob.arrive_needs(int(r), int(u), oc, float(x), K)
                                      for r, u, x in zip(rows, users, now, strict=True)])
        _assert_same_state(a, b)
        probe = now + g.random(300) * 9 * 3600.0
        assert np.array_equal(a.need_live_batch(rows, probe),
                              [ob.need_live(int(r), float(x)) for r, x in zip(rows, probe, strict=True)])
        sessions, steps = g.integers(0, 3000, 300), g.integers(0, 9, 300)
        got = a.interest_category_batch(rows, users, sessions, steps, probe, w.chain)
        want = [ob.interest_category(int(r), int(u), int(s), int(st), float(x), oc)
                for r, u, s, st, x in zip(rows, users, sessions, steps, probe, strict=True)]
        assert np.array_equal(got, want)
    if variant == "busy":
        assert a.needs.max() > 5  # rows that took several needs in one call
    if variant == "intent_off":
        assert not a.needs.any()


@pytest.mark.parametrize("variant", ["default", "busy"])
def test_updates_with_repeated_rows_equal_the_scalar_oracle(variant):
    """Clicks, moveline scenes and purchases with rows repeated (several clicks of one
    user in one slate) leave the state exactly as the scalar updates in the given order."""
    w = _world(variant)
    g = np.random.default_rng(23)
    a, _ = _with_needs(w, g)
    b = copy.deepcopy(a)
    ob = OldState(b)
    lat = w.catalog.latent
    for _ in range(6):
        k = 400
        rows = g.integers(0, N_USERS, k)
        rows[:40] = rows[0]  # one user clicks many items (more than the short rings hold)
        items = g.integers(0, w.spec.n_shop_items, k)
        cats, shops = w.catalog.category[items], w.catalog.shop[items]
        scenes = g.integers(0, 9, k)
        t = 5 * 86400.0 + g.random(k) * 3600.0
        a.click_batch(rows, items, cats, scenes, t, lat[items])
        for i in range(k):
            ob.click(int(rows[i]), int(items[i]), int(cats[i]), int(scenes[i]), float(t[i]), lat[items[i]])
        _assert_same_state(a, b)
        a.scene_batch(rows, scenes, cats, shops, t)
        for i in range(k):
            ob.scene(int(rows[i]), int(scenes[i]), int(cats[i]), int(shops[i]), float(t[i]))
        _assert_same_state(a, b)
        # purchases: some of the categories users currently need
        pc = np.where(g.random(k) < 0.5, a.need_cat[rows], cats)
        pc = np.where(pc < 0, cats, pc)
        a.purchase_batch(rows, pc, t)
        for i in range(k):
            ob.purchase(int(rows[i]), int(pc[i]), float(t[i]))
        _assert_same_state(a, b)
    if variant == "busy":
        assert not np.array_equal(a.u, a.users.u)  # the drift ran


def test_state_rows_do_not_depend_on_the_batch():
    """A row's need arrivals, session time and interest do not change when other rows
    join or leave the batch (rows taken in a different order and subset)."""
    w = _world("busy")
    K = w.catalog.n_categories
    g = np.random.default_rng(29)
    rows = np.arange(N_USERS)
    now = g.random(N_USERS) * 2 * 86400.0
    sessions, steps = g.integers(0, 3000, N_USERS), g.integers(0, 9, N_USERS)
    full, part = _state(w), _state(w)
    sub = g.permutation(N_USERS)[:120]
    r_full = (full.need_session_time_batch(rows, rows, w.chain),
              full.arrive_needs_batch(rows, rows, w.chain, now, K),
              full.interest_category_batch(rows, rows, sessions, steps, now, w.chain))
    r_part = (part.need_session_time_batch(sub, sub, w.chain),
              part.arrive_needs_batch(sub, sub, w.chain, now[sub], K),
              part.interest_category_batch(sub, sub, sessions[sub], steps[sub], now[sub], w.chain))
    for x, y in zip(r_full, r_part, strict=True):
        assert np.array_equal(x[sub], y)
    for k, v in _state_arrays(full).items():
        assert np.array_equal(v[sub], _state_arrays(part)[k][sub], equal_nan=True), k


def test_next_session_accepts_at_the_try_bound(monkeypatch):
    """With the try bound lowered to 2, many rows reach it (and accept there): the batch
    loop stops at the same try as the scalar one."""
    monkeypatch.setattr(streams, "ARRIVAL_TRIES", 2)
    w = _world("busy")
    old, g = OldChain(w.chain), np.random.default_rng(31)
    users, sessions, _ = _rows(g, 400)
    activity, t = np.exp(g.normal(0, 0.7, 400)), g.random(400) * 86400.0
    want = [old.next_session(int(u), float(a), float(x), int(n)) for u, a, x, n in zip(users, activity, t, sessions,
                                                                                         strict=True)]
    assert np.array_equal(w.chain.next_session_batch(users, activity, t, sessions), want)


def test_hidden_moveline_events_in_one_batch_equal_one_at_a_time():
    """``moveline_visible`` < 1 (issue #30): scene events with rows repeated in one call leave
    the logged moveline, the world's own ring, the current-visit flag and, through the flag,
    the AISeq exactly as pushing them one at a time in the same order (each event's draw is
    keyed by its index in the user's moveline, not by the batch)."""
    w = _build("default", json.dumps({"moveline_visible": 0.5, "moveline_len": 6, "aiseq_len": 4}))
    g = np.random.default_rng(31)
    a, _ = _with_needs(w, g)
    b = copy.deepcopy(a)
    lat = w.catalog.latent
    for _ in range(4):
        k = 300
        rows = g.integers(0, 50, k)
        rows[:30] = rows[0]
        items = g.integers(0, w.spec.n_shop_items, k)
        cats, shops = w.catalog.category[items], w.catalog.shop[items]
        scenes = g.integers(1, 9, k)
        t = 5 * 86400.0 + np.sort(g.random(k)) * 3600.0
        logged = a.scene_batch(rows, scenes, cats, shops, t, w.chain)
        for i in range(k):
            b.scene(int(rows[i]), int(scenes[i]), int(cats[i]), int(shops[i]), float(t[i]), w.chain)
        a.click_batch(rows, items, cats, scenes, t, lat[items])
        for i in range(k):
            b.click(int(rows[i]), int(items[i]), int(cats[i]), int(scenes[i]), float(t[i]), lat[items[i]])
        assert 0.3 < logged.mean() < 0.7  # binomial(300, 0.5): 0.5 +/- 0.03 sd
        for ring in ("moveline", "world_moveline", "ais"):
            ra, rb = getattr(a, ring), getattr(b, ring)
            assert np.array_equal(ra.count, rb.count), ring
            for f in ra.data:
                assert np.array_equal(ra.data[f], rb.data[f]), (ring, f)
        assert np.array_equal(a.visit_logged, b.visit_logged)
    assert (a.world_moveline.count > a.moveline.count).any()
