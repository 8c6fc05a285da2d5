"""Scene types, the session's scene chain, session arrivals and need arrivals.

A session walks a Markov chain of scenes: it opens on a surface (or on a search / shop
visit for a fresh need), each scene may lead to item detail, cart (and later, delayed,
a buy), a content visit in the source domain, another surface, or leaving.  The time
of every scene and every choice are drawn from the counter-based RNG keyed by
(user, session number, step), so one user's trajectory does not depend on any other
user's.
"""

from __future__ import annotations

import numpy as np

from simab.simulators import rng, streams
from simab.simulators.rng import phase_stream
from simab.simulators.spec import WorldSpec
from simab.simulators.streams import Decision, Stream
from simab.simulators.units import DAY

PAD, HOME, SEARCH, SHOP, CHANNEL, DETAIL, CART, BUY, CONTENT = range(9)
N_SCENE_TYPES = 9
SCENE_NAMES = ("pad", "home", "search", "shop", "channel", "detail", "cart", "buy", "content")
SURFACE_SCENE = {"home": HOME, "search": SEARCH, "shop": SHOP, "channel": CHANNEL}
N_GAP_BUCKETS = 18


def gap_bucket(gap_s: np.ndarray) -> np.ndarray:
    """Log2 buckets of a time gap in minutes: 1 + clip(floor(log2(1 + minutes)), 0, 16)."""
    m = np.maximum(np.asarray(gap_s, dtype=np.float64), 0.0) / 60.0
    return (1 + np.clip(np.floor(np.log2(1.0 + m)), 0, N_GAP_BUCKETS - 2)).astype(np.int64)


class SceneChain:
    """Pure decision functions of the session process (no SimPy in here)."""

    def __init__(self, spec: WorldSpec, seed: int, phase: str = "campaign"):
        self.spec = spec
        self.names = list(spec.scenarios)
        self.surfaces = [s.surface for s in spec.scenarios.values()]
        traffic = np.array([s.traffic for s in spec.scenarios.values()], dtype=np.float64)
        self.traffic_cdf = np.cumsum(traffic / traffic.sum())
        self.search_scenarios = [i for i, s in enumerate(self.surfaces) if s == "search"]
        self.shop_scenarios = [i for i, s in enumerate(self.surfaces) if s == "shop"]
        self.k = {s: rng.stream_key(seed, phase_stream(phase, s))
                  for s in (Stream.SCENES_ARRIVAL, Stream.SCENES_NEED, Stream.SCENES_NEED_SESSION, Stream.SCENES_STEP,
                            Stream.SCENES_DWELL, Stream.SCENES_NEED_ITEM, Stream.SCENES_VISIBLE)}
        s = spec.sessions
        self._rate = s.per_day / DAY
        self._amp = s.diurnal_amplitude
        self._peak = s.peak_hour * 3600.0

    # --- arrivals -------------------------------------------------------------------
    def diurnal(self, t: np.ndarray | float) -> np.ndarray | float:
        return 1.0 + self._amp * np.cos(2 * np.pi * (np.asarray(t) - self._peak) / DAY)

    def next_session_batch(self, users, activity, t, n) -> np.ndarray:
        """Next arrival after ``t`` of a non-homogeneous Poisson process with rate
        ``per_day * activity * diurnal(t)`` (Lewis-Shedler thinning; draws keyed by the
        user's session count ``n``), per row.  Each try draws only for the rows not yet
        accepted; after ``ARRIVAL_TRIES`` tries a row accepts (probability < 1e-9 for
        amplitude < 1) to bound the loop."""
        size = batch_size(users, activity, t, n)
        users, n = int_rows(users, n, size=size)
        activity, t = float_rows(activity, t, size=size)
        lam_max = self._rate * activity * (1.0 + self._amp)
        out = np.empty(len(users))
        todo = np.arange(len(users))
        for j in range(streams.ARRIVAL_TRIES):
            if not len(todo):
                break
            k = self.k[Stream.SCENES_ARRIVAL]
            u_gap, u_accept = rng.uniforms((k, k), users[todo], streams.arrival_counters(n[todo], j))
            tj = t[todo] + -np.log(u_gap) / lam_max[todo]  # an Exp(1) gap, as rng.exponential draws it
            ok = u_accept <= self.diurnal(tj) / (1.0 + self._amp)
            if j == streams.ARRIVAL_TRIES - 1:
                ok[:] = True
            out[todo[ok]] = tj[ok]
            t[todo] = tj
            todo = todo[~ok]
        return out

    def next_session(self, user: int, activity: float, t: float, n: int) -> float:
        """:meth:`next_session_batch` for one user."""
        return float(self.next_session_batch(user, activity, t, n)[0])

    def need_gap_batch(self, users, j) -> np.ndarray:
        """Seconds from need ``j - 1`` (or the start of the simulation) to need ``j``:
        needs form a homogeneous Poisson process of rate ``needs_per_day`` per user,
        one fresh draw per need (keyed by the need's number); inf when intent is off."""
        users, j = int_rows(users, j)
        it = self.spec.intent
        if not it.enabled or it.needs_per_day <= 0:
            return np.full(len(users), np.inf)
        return rng.exponential(self.k[Stream.SCENES_NEED], users, streams.need_gap_counter(j)) * DAY / it.needs_per_day

    def need_session_delay_batch(self, users, j) -> np.ndarray:
        """A need brings the user to the app: with probability ``scene_first`` a session
        opens Exp(mean ``need_session_delay_min``) seconds after need ``j`` arrives; NaN
        otherwise (the need then waits for the next regular session)."""
        users, j = int_rows(users, j)
        it = self.spec.intent
        c_opens, c_delay = streams.need_session_counters(j)
        opens = rng.uniform(self.k[Stream.SCENES_NEED_SESSION], users, c_opens) < it.scene_first
        delay = rng.exponential(self.k[Stream.SCENES_NEED_SESSION], users, c_delay) * 60.0 * it.need_session_delay_min
        return np.where(opens, delay, np.nan)

    def need_category_batch(self, users, j, active: np.ndarray, active_w: np.ndarray, n_categories: int) -> np.ndarray:
        """A need is for any category with probability ``need_novelty`` (a need unrelated
        to long-term interest: only the moveline reveals it), else for an active interest
        (``active`` / ``active_w``: [B, A], one row per user)."""
        users, j = int_rows(users, j)
        u = rng.uniform(self.k[Stream.SCENES_NEED], users, streams.need_category_counter(j))
        q = self.spec.intent.need_novelty
        novel = u < q
        out = np.empty(len(users), np.int64)
        out[novel] = (u[novel] / q * n_categories).astype(np.int64) % n_categories
        old = ~novel
        out[old] = weighted_pick(np.asarray(active)[old], np.asarray(active_w)[old], (u[old] - q) / (1.0 - q))
        return out

    def need_item_batch(self, users, j, cats: np.ndarray, catalog) -> np.ndarray:
        """The wanted item of need ``j`` (category ``cats``): a popularity-skewed shop item of
        the category (``history.pick_items``), drawn from its own stream (unit user, counter j)."""
        from simab.simulators.history import pick_items

        users, j = int_rows(users, j)
        u = rng.uniform(self.k[Stream.SCENES_NEED_ITEM], users, np.asarray(j, np.int64))
        return pick_items(catalog.target_by_category, np.asarray(cats, np.int64), u)

    def logged_in_full_batch(self, users, events) -> np.ndarray:
        """Whether a moveline event is logged with its category and shop (probability
        ``moveline_visible``), per row: ``events`` is the event's index in its user's
        moveline (the stream's counter).  No draw at 1, the default."""
        users, events = int_rows(users, events)
        p = self.spec.moveline_visible
        if p >= 1.0:
            return np.ones(len(users), bool)
        return rng.uniform(self.k[Stream.SCENES_VISIBLE], users, events) < p

    # --- the chain ------------------------------------------------------------------
    def draw_batch(self, users, sessions, steps, decision: int) -> np.ndarray:
        """The uniform of ``decision`` (a ``streams.Decision``) at ``steps`` of ``sessions``."""
        users, sessions, steps = int_rows(users, sessions, steps)
        return rng.uniform(self.k[Stream.SCENES_STEP], users, streams.step_counter(sessions, steps, int(decision)))

    def draw(self, user: int, session: int, step: int, decision: int) -> float:
        return float(self.draw_batch(user, session, step, decision)[0])

    def _pick_need_surface(self, users, sessions, steps) -> np.ndarray:
        """The search / shop scenario a need leads to (the pool must not be empty)."""
        pool = np.array(self.search_scenarios + self.shop_scenarios, np.int64)
        u = self.draw_batch(users, sessions, steps, Decision.PICK_SURFACE)
        return pool[(u * len(pool)).astype(np.int64) % len(pool)]

    def first_scene_batch(self, users, sessions, fresh_need) -> np.ndarray:
        """The scenario index of each session's first scene, -1 for a content visit.  A
        session that a fresh need brought about opens with a search or a shop visit (the
        need shows first at scene level); any other session starts anywhere on the chain."""
        size = batch_size(users, sessions, fresh_need)
        users, sessions = int_rows(users, sessions, size=size)
        fresh = np.broadcast_to(np.asarray(fresh_need, bool), (size,))
        out = self.next_scene_batch(users, sessions, 0, np.zeros(len(users), bool))
        if fresh.any() and (self.search_scenarios or self.shop_scenarios):
            out[fresh] = self._pick_need_surface(users[fresh], sessions[fresh], 0)
        return out

    def first_scene(self, user: int, session: int, fresh_need: bool) -> tuple[str, int]:
        """:meth:`first_scene_batch` for one session: ('surface', scenario) or ('content', -1)."""
        return _kind(int(self.first_scene_batch(user, session, fresh_need)[0]))

    def next_scene_batch(self, users, sessions, steps, live_need) -> np.ndarray:
        """The next scene's scenario index, -1 for a content visit; a user with a live
        need pursues it (a search or a shop visit) with probability ``intent.pursuit``."""
        size = batch_size(users, sessions, steps, live_need)
        users, sessions, steps = int_rows(users, sessions, steps, size=size)
        live = np.broadcast_to(np.asarray(live_need, bool), (size,))
        content = self.draw_batch(users, sessions, steps, Decision.CONTENT) < self.spec.sessions.content_prob
        u = self.draw_batch(users, sessions, steps, Decision.TRAFFIC)
        i = np.minimum(np.searchsorted(self.traffic_cdf, u * 0.9999999), len(self.names) - 1).astype(np.int64)
        out = np.where(content, -1, i)
        if live.any() and (self.search_scenarios or self.shop_scenarios):
            r = np.flatnonzero(live)
            pursue = r[self.draw_batch(users[r], sessions[r], steps[r], Decision.PURSUE_NEED) < self.spec.intent.pursuit]
            out[pursue] = self._pick_need_surface(users[pursue], sessions[pursue], steps[pursue])
        return out

    def next_scene(self, user: int, session: int, step: int, live_need: bool = False) -> tuple[str, int]:
        """:meth:`next_scene_batch` for one session: ('surface', scenario) or ('content', -1)."""
        return _kind(int(self.next_scene_batch(user, session, step, live_need)[0]))

    def leaves_batch(self, users, sessions, steps) -> np.ndarray:
        return self.draw_batch(users, sessions, steps, Decision.LEAVE) < self.spec.sessions.leave_prob

    def leaves(self, user: int, session: int, step: int) -> bool:
        return bool(self.leaves_batch(user, session, step)[0])

    def goes_to_cart_batch(self, users, sessions, steps, positions) -> np.ndarray:
        """Whether a click at slate ``positions`` of ``steps`` goes on to the cart."""
        users, sessions, steps, positions = int_rows(users, sessions, steps, positions)
        u = rng.uniform(self.k[Stream.SCENES_STEP], users, streams.cart_counter(sessions, steps, positions))
        return u < self.spec.sessions.cart_prob

    def goes_to_cart(self, user: int, session: int, step: int, position: int) -> bool:
        return bool(self.goes_to_cart_batch(user, session, step, position)[0])

    def scene_dwell_batch(self, users, sessions, steps) -> np.ndarray:
        """Seconds spent on a scene before acting: LogNormal(log 20 s, 0.8)."""
        users, sessions, steps = int_rows(users, sessions, steps)
        return np.exp(np.log(20.0) + 0.8 * rng.normal(self.k[Stream.SCENES_DWELL], users, streams.dwell_counter(sessions, steps)))

    def scene_dwell(self, user: int, session: int, step: int) -> float:
        return float(self.scene_dwell_batch(user, session, step)[0])


def weighted_pick(cats: np.ndarray, w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per row, the category of ``cats`` [B, A] where ``u`` [B] falls on the cumulative
    normalised weights ``w`` [B, A]: the first index whose cdf is >= u (numpy's
    ``searchsorted``, left side, on a non-decreasing cdf), at most the last index."""
    cdf = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    i = np.minimum((cdf < u[:, None]).sum(axis=1), cats.shape[1] - 1)
    return cats[np.arange(len(u)), i].astype(np.int64)


def batch_size(*xs) -> int:
    """The common length of the batch arguments ``xs`` (1-D arrays or scalars)."""
    if xs and all(isinstance(x, np.ndarray) and x.ndim == 1 and len(x) == len(xs[0]) for x in xs):
        return len(xs[0])
    return int(np.broadcast(*(np.atleast_1d(np.asarray(x)) for x in xs)).size) if xs else 0


def int_rows(*xs, size: int | None = None) -> list[np.ndarray]:
    """Arguments as fresh int64 arrays of one length (``size``, else their broadcast
    length; scalars broadcast)."""
    size = batch_size(*xs) if size is None else size
    return [_rows(x, np.int64, size) for x in xs]


def float_rows(*xs, size: int | None = None) -> list[np.ndarray]:
    """:func:`int_rows` for float64 arguments."""
    size = batch_size(*xs) if size is None else size
    return [_rows(x, np.float64, size) for x in xs]


def _rows(x, dtype, size: int) -> np.ndarray:
    """A fresh ``dtype`` array of ``size`` rows from ``x`` (an array of that length, or a
    scalar to broadcast); arrays that already fit are copied without broadcasting (the
    engine's hot path)."""
    if isinstance(x, np.ndarray) and x.dtype == dtype and x.shape == (size,):
        return x.copy()
    return np.array(np.broadcast_to(np.asarray(x, dtype), (size,)))


def _kind(scenario: int) -> tuple[str, int]:
    return ("content", -1) if scenario < 0 else ("surface", scenario)
