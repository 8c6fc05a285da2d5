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
from simab.simulators.streams import Decision
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
        self.k = {n: rng.stream_key(seed, phase_stream(phase, f"scenes/{n}")) for n in ("arrival", "need", "need_session", "step", "dwell")}
        s = spec.sessions
        self._rate = s.per_day / DAY
        self._amp = s.diurnal_amplitude
        self._peak = s.peak_hour * 3600.0

    # --- arrivals -------------------------------------------------------------------
    def diurnal(self, t: np.ndarray | float) -> np.ndarray | float:
        return 1.0 + self._amp * np.cos(2 * np.pi * (np.asarray(t) - self._peak) / DAY)

    def next_session(self, user: int, activity: float, t: float, n: int) -> float:
        """Next arrival after ``t`` of a non-homogeneous Poisson process with rate
        ``per_day * activity * diurnal(t)`` (Lewis-Shedler thinning; draws keyed by the
        user's session count ``n``)."""
        lam_max = self._rate * activity * (1.0 + self._amp)
        j = 0
        while True:
            c_gap, c_accept = streams.arrival_counters(n, j)
            t = t + rng.exponential(self.k["arrival"], user, c_gap) / lam_max
            if rng.uniform(self.k["arrival"], user, c_accept) <= self.diurnal(t) / (1.0 + self._amp):
                return float(t)
            j += 1
            if j >= streams.ARRIVAL_TRIES:  # (probability < 1e-9 for amplitude < 1): accept to bound the loop
                return float(t)

    def need_gap(self, user: int, j: int) -> float:
        """Seconds from need ``j - 1`` (or the start of the simulation) to need ``j``:
        needs form a homogeneous Poisson process of rate ``needs_per_day`` per user,
        one fresh draw per need (keyed by the need's number); inf when intent is off."""
        it = self.spec.intent
        if not it.enabled or it.needs_per_day <= 0:
            return float("inf")
        return float(rng.exponential(self.k["need"], user, streams.need_gap_counter(j))) * DAY / it.needs_per_day

    def need_session_delay(self, user: int, j: int) -> float | None:
        """A need brings the user to the app: with probability ``scene_first`` a session
        opens Exp(mean ``need_session_delay_min``) after need ``j`` arrives; None otherwise
        (the need then waits for the next regular session)."""
        it = self.spec.intent
        c_opens, c_delay = streams.need_session_counters(j)
        if rng.uniform(self.k["need_session"], user, c_opens) >= it.scene_first:
            return None
        return float(rng.exponential(self.k["need_session"], user, c_delay)) * 60.0 * it.need_session_delay_min

    def need_category(self, user: int, n: int, active: np.ndarray, active_w: np.ndarray, n_categories: int) -> int:
        """A need is for any category with probability ``need_novelty`` (a need unrelated
        to long-term interest: only the moveline reveals it), else for an active interest."""
        u = float(rng.uniform(self.k["need"], user, streams.need_category_counter(n)))
        q = self.spec.intent.need_novelty
        if u < q:
            return int(u / q * n_categories) % n_categories
        cdf = np.cumsum(active_w) / active_w.sum()
        return int(active[min(np.searchsorted(cdf, (u - q) / (1.0 - q)), len(active) - 1)])

    # --- the chain ------------------------------------------------------------------
    def draw(self, user: int, session: int, step: int, decision: int) -> float:
        """The uniform of ``decision`` (a ``streams.Decision``) at ``step`` of ``session``."""
        return float(rng.uniform(self.k["step"], user, streams.step_counter(session, step, decision)))

    def first_scene(self, user: int, session: int, fresh_need: bool) -> tuple[str, int]:
        """('surface', scenario index) or ('content', -1).  A session that a fresh need
        brought about opens with a search or a shop visit (the need shows first at scene
        level); any other session starts anywhere on the chain."""
        if fresh_need:
            pool = self.search_scenarios + self.shop_scenarios
            if pool:
                return "surface", pool[int(self.draw(user, session, 0, Decision.PICK_SURFACE) * len(pool)) % len(pool)]
        return self.next_scene(user, session, 0)

    def next_scene(self, user: int, session: int, step: int, live_need: bool = False) -> tuple[str, int]:
        """The next scene; a user with a live need pursues it (a search or a shop visit)
        with probability ``intent.pursuit``."""
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
        """Whether a click at slate ``position`` of ``step`` goes on to the cart."""
        u = rng.uniform(self.k["step"], user, streams.cart_counter(session, step, position))
        return float(u) < self.spec.sessions.cart_prob

    def scene_dwell(self, user: int, session: int, step: int) -> float:
        """Seconds spent on a scene before acting: LogNormal(log 20 s, 0.8)."""
        return float(np.exp(np.log(20.0) + 0.8 * rng.normal(self.k["dwell"], user, streams.dwell_counter(session, step))))
