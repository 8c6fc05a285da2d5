"""Random streams: the one place that names every stream (:class:`Stream`) and says
which counters every draw uses.

A draw is a pure function of (seed, stream, unit, counter) (``simulators/rng.py``).  A
stream's unit is a user, a session id or a request id; several decisions share a stream
by packing their indices (session number, scene step, decision, position, ...) into the
counter.  Two draws meant to be independent must never get the same key, so each packing
is written here once, with the ranges its indices may take; the callers use these
functions, ``check_world`` rejects a world spec that would overflow them, and
``tests/simulators/test_streams.py`` enumerates every slot over those ranges and checks
that no two keys coincide.

``rng.normal(key, unit, c)`` itself reads the uniforms at counters ``2c`` and ``2c + 1``
(Box-Muller); the layouts below give each normal draw its own ``c``.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

import numpy as np

from simab.errors import SimabError


# --------------------------------------------------------------------------- names
class Stream(StrEnum):
    """Every random stream's name: the ``stream`` of ``rng.stream_key(seed, stream)`` and
    ``rng.generator``.  The behaviour streams (scenes, responses, retrieval, policy
    uniforms, latency) get the simulation phase's prefix through ``World.stream`` /
    ``rng.phase_stream``; a stream kept per arm or per salt is named by :meth:`of`.  A
    name is part of every draw's key: renaming a stream changes the world's draws."""

    CATALOG = "catalog"  # unit 0: a numpy generator for the whole catalogue
    CATALOG_TOPICS = "catalog/topics"
    POPULATION_PROFILE = "population/profile"  # unit user (no phase: the same person in every phase)
    POPULATION_CATS = "population/cats"
    POPULATION_WEIGHTS = "population/weights"
    POPULATION_SCALARS = "population/scalars"
    POPULATION_TOPICS = "population/topics"
    HISTORY_SOURCE = "history/source"  # unit user: the lifelong histories
    HISTORY_TARGET = "history/target"
    ORACLE_SPECIFIC = "oracle/specific"  # unit 0: the scenario-specific preference matrices
    ORACLE_SPECIFIC_CATEGORIES = "oracle/specific_categories"
    ORACLE_SPECIFIC_FEATURES = "oracle/specific_features"  # unit 0: the feature tables (specific_features)
    ORACLE_SEGMENT = "oracle/segment"  # unit 0: the order of the profile cells (shared_segment)
    SCENES_ARRIVAL = "scenes/arrival"  # unit user: the scene chain (phase-prefixed)
    SCENES_NEED = "scenes/need"
    SCENES_NEED_SESSION = "scenes/need_session"
    SCENES_NEED_ITEM = "scenes/need_item"
    SCENES_VISIBLE = "scenes/visible"  # unit user, counter: the event's index in the user's moveline
    SCENES_STEP = "scenes/step"
    SCENES_DWELL = "scenes/dwell"
    RESPONSE_CLICK = "response/click"  # unit request id: the responses (phase-prefixed)
    RESPONSE_CONV = "response/conv"
    RESPONSE_DELAY = "response/delay"
    RESPONSE_DWELL = "response/dwell"
    RETRIEVAL = "retrieval"  # unit request id (phase-prefixed)
    SERVING_LATENCY = "serving/latency"  # unit request id (phase-prefixed)
    POLICY_UNIFORMS = "policy-uniforms"  # per arm; unit request id (phase-prefixed)
    OPE_MARGINAL = "ope-marginal"  # per logging arm: Monte-Carlo marginal propensities
    SHARDS = "shards"  # unit user: a user's shard
    ASSIGNMENT = "assignment"  # per salt, seed 0: a unit's hash bucket
    MARKET_OF = "market/of"  # unit user: a user's market (world.market.n_markets)
    MARKET_LIMITED = "market/limited"  # unit shop item: the keyed random set of limited items

    def of(self, name: str) -> str:
        """The stream of this family for one arm or salt: ``<stream>/<name>``."""
        return f"{self.value}/{name}"


# --------------------------------------------------------------------------- unit ids
REQUEST_BITS = 24  # request id = user << 24 | (the user's request number)
SESSION_BITS = 20  # session id = user << 20 | (the user's session number)
MAX_REQUESTS_PER_USER = 1 << REQUEST_BITS
MAX_SESSIONS_PER_USER = 1 << SESSION_BITS


def request_id(user: int, k: int) -> int:
    """The globally unique id of user ``user``'s request number ``k`` (the unit of the
    retrieval, policy-uniform and response streams)."""
    if k >= MAX_REQUESTS_PER_USER:
        raise SimabError(
            f"user {user} reached {MAX_REQUESTS_PER_USER:,} ranking requests, the most a request id holds "
            "(24 bits per user); lower duration_days (or world.sessions.per_day)", key="duration_days")
    return (user << REQUEST_BITS) | k


def session_id(user: int, n: int) -> int:
    """The id of user ``user``'s session number ``n`` (the unit of ``unit = "session"``
    assignment)."""
    if n >= MAX_SESSIONS_PER_USER:
        raise SimabError(
            f"user {user} reached {MAX_SESSIONS_PER_USER:,} sessions, the most a session id holds "
            "(20 bits per user); lower duration_days (or world.sessions.per_day)", key="duration_days")
    return (user << SESSION_BITS) | n


# --------------------------------------------------------------------------- scene chain
# stream scenes/step, unit user: counter (session * 64 + step) * 8 + decision
STEPS_PER_SESSION = 64
DECISIONS_PER_STEP = 8


class Decision(IntEnum):
    """The decisions drawn at each step of a session's scene chain."""

    PURSUE_NEED = 0  # a live need turns the next scene into a search / shop visit
    PICK_SURFACE = 1  # which search / shop scenario a need leads to
    CONTENT = 2  # the next scene is a content visit
    TRAFFIC = 3  # which scenario (by traffic share) the next scene is
    LEAVE = 4  # the session ends after this scene
    CART = 5  # a click goes on to the cart (sub-steps: see cart_counter)
    INTEREST = 6  # which active interest a search / shop visit is about
    SHOP = 7  # which shop of that category a shop visit opens


CARTS_PER_STEP = 8  # clicks at positions p and p + 8 of one slate share their cart draw
# Chain steps run 0..max_scenes (the step after the last scene still draws whether the
# session continues) and cart sub-steps 1..8 * max_scenes, both below 64 per session
# (a cart sub-step of 64 reads (session + 1, step 0), where no cart is ever drawn).
MAX_SCENES = STEPS_PER_SESSION // CARTS_PER_STEP


def step_counter(session: int, step: int, decision: int) -> int:
    """Counter of ``decision`` at chain step ``step`` of session ``session`` (decisions
    other than ``CART``)."""
    return (session * STEPS_PER_SESSION + step) * DECISIONS_PER_STEP + decision


def cart_counter(session: int, step: int, position: int) -> int:
    """Counter of the cart decision after a click at slate ``position`` of step ``step``:
    cart sub-step ``step * 8 + position % 8 + 1`` of the ``CART`` decision."""
    return step_counter(session, step * CARTS_PER_STEP + position % CARTS_PER_STEP + 1, Decision.CART)


def dwell_counter(session: int, step: int) -> int:
    """Normal-draw counter of the scene dwell time (stream scenes/dwell, unit user)."""
    return session * STEPS_PER_SESSION + step


# stream scenes/arrival, unit user: Lewis-Shedler thinning of session ``n``'s arrival,
# try j: the gap at n * 64 + 2j, the acceptance uniform at n * 64 + 2j + 1
ARRIVAL_TRIES = 31  # (2 * 31 - 1 < 64)


def arrival_counters(n: int, j: int) -> tuple[int, int]:
    """(gap, acceptance) counters of try ``j`` for session ``n`` (``j < ARRIVAL_TRIES``)."""
    base = n * STEPS_PER_SESSION + 2 * j
    return base, base + 1


# stream scenes/need, unit user: need j's gap at 2j, its category at 2j + 1
def need_gap_counter(j: int) -> int:
    return 2 * j


def need_category_counter(j: int) -> int:
    return 2 * j + 1


# stream scenes/need_session, unit user: whether need j opens a session (2j), its delay (2j + 1)
def need_session_counters(j: int) -> tuple[int, int]:
    return 2 * j, 2 * j + 1


# --------------------------------------------------------------------------- retrieval
# stream retrieval, unit request id: blocks of 4096 counters per pool
RETRIEVAL_BLOCK = 4096
SEARCH_TAIL, POPULAR, CONTEXT, RANDOM = 1, 2, 3, 4  # blocks
CONTEXT_ITEM_OFFSET = 512  # context categories at 3 * 4096 + i, their items at + 512 + i
FILL_BASE, FILL_STRIDE = 1000, 64  # top-up round j draws FILL_BASE + 64 j + [0, 2 n)
POOL_SHARE = 0.4  # popular and context pools of home / channel are 40 % of n each
# The largest n_candidates whose pools fit their blocks: the context categories
# (int(0.4 n) = floor(2 n / 5) of them) must stay below the context items' offset.
MAX_CANDIDATES = (5 * (CONTEXT_ITEM_OFFSET + 1) - 1) // 2


def pool_sizes(n: int) -> tuple[int, int]:
    """(popular, context) pool sizes of a home / channel request for ``n`` candidates."""
    return int(POOL_SHARE * n), int(POOL_SHARE * n)


def block_counters(block: int, m: int, offset: int = 0) -> np.ndarray:
    """Counters ``block * 4096 + offset + [0, m)``."""
    return block * RETRIEVAL_BLOCK + offset + np.arange(m)


def fill_rounds(n: int) -> int:
    """Top-up rounds that fit below the first block for ``n`` candidates."""
    return (RETRIEVAL_BLOCK - FILL_BASE - 2 * n) // FILL_STRIDE + 1


def fill_counters(j: int, n: int, *, key: str = "world.n_shop_items") -> np.ndarray:
    """Counters of top-up round ``j`` (``2 n`` draws); rounds that would reach the first
    block are refused."""
    if j >= fill_rounds(n):
        raise SimabError(
            f"retrieval found fewer than {n} distinct items in {j} random top-up rounds; the catalogue is too "
            "small for n_candidates: raise world.n_shop_items or lower world.scenarios.*.n_candidates", key=key)
    return FILL_BASE + j * FILL_STRIDE + np.arange(2 * n)


# --------------------------------------------------------------------------- per request
# stream policy-uniforms/<arm>, unit request id: counters [0, 2 C) for C candidates
def policy_uniform_counters(n_candidates: int) -> np.ndarray:
    return np.arange(2 * n_candidates)


# streams response/{click,conv,delay}, unit request id: counter = slate position;
# response/dwell: its Box-Muller pair at 2 p and 2 p + 1
def response_counters(positions: np.ndarray) -> tuple:
    """Counters of the (click, conv, delay, dwell u1, dwell u2) uniforms per position."""
    return positions, positions, positions, 2 * positions, 2 * positions + 1


# --------------------------------------------------------------------------- population
# streams population/*, unit user (no phase: a user is the same person in every phase)
PROFILE_AGE, PROFILE_GENDER, PROFILE_CITY = 0, 1, 2  # population/profile
ACTIVITY, PRICE_SENSITIVITY, CONVERSION_PROPENSITY = 1, 2, 3  # population/scalars (normal draws)
LIFELONG_LENGTH = 4  # population/scalars: the user's own part of the lifelong history length
CLICK_BIAS = 5  # population/scalars: the user's own part of the click-logit bias


def interest_counters(j: int) -> tuple[int, int, int]:
    """population/cats: (facet choice, pick within the parent, random category) of interest ``j``."""
    return 3 * j, 3 * j + 1, 3 * j + 2


# population/weights: counter j = interest j's weight


# --------------------------------------------------------------------------- histories
# streams history/source and history/target, unit user: event k of the history counted
# from the newest (k = 0 is the most recent) draws at k * 4 + draw, for k below the
# history's length (LifelongSpec caps it at 100,000 events).
class HistoryDraw(IntEnum):
    """The uniforms drawn for each event of a lifelong history."""

    GAP = 0  # the next-older timestamp (descending order statistics)
    CATEGORY = 1  # exploration of a random category, else which interest
    ITEM = 2  # the popularity-skewed item within the category
    ACTION = 3  # view / like / share / comment


DRAWS_PER_EVENT = len(HistoryDraw)


def history_counters(n_events: int) -> np.ndarray:
    """Counters of the newest ``n_events`` events, shape ``[n_events, DRAWS_PER_EVENT]``:
    ``out[k, d]`` is event ``k``'s draw ``d``."""
    return np.arange(n_events * DRAWS_PER_EVENT).reshape(n_events, DRAWS_PER_EVENT)


# --------------------------------------------------------------------------- spec check
def check_world(spec, *, source: str | None = None, key: str = "world") -> None:
    """Refuse a world whose chain or retrieval would overflow its counter slots."""
    if spec.sessions.max_scenes > MAX_SCENES:
        raise SimabError(
            f"at most {MAX_SCENES} scenes per session fit the random-stream layout (64 chain steps, 8 cart draws "
            f"per scene), got {spec.sessions.max_scenes}", source=source, key=f"{key}.sessions.max_scenes")
    for name, sc in spec.scenarios.items():
        k = f"{key}.scenarios.{name}.n_candidates"
        if sc.n_candidates > MAX_CANDIDATES:
            raise SimabError(f"at most {MAX_CANDIDATES} candidates fit the retrieval's random-stream blocks, "
                             f"got {sc.n_candidates}", source=source, key=k)
        if sc.n_candidates > spec.n_shop_items:
            raise SimabError(f"{sc.n_candidates} candidates exceed the {spec.n_shop_items} shop items "
                             f"({key}.n_shop_items)", source=source, key=k)


# --------------------------------------------------------------------------- serving
# stream serving/latency, unit request id: the batching-window uniform at counter 0, the
# service-time jitter a normal draw at normal-counter 1 (uniforms 2 and 3)
LATENCY_WAIT = 0
LATENCY_JITTER = 1


def session_ids(users: np.ndarray, n: np.ndarray) -> np.ndarray:
    """:func:`session_id` of arrays of users and session numbers."""
    return _packed_ids(users, n, SESSION_BITS, session_id)


def request_ids(users: np.ndarray, k: np.ndarray) -> np.ndarray:
    """:func:`request_id` of arrays of users and request numbers."""
    return _packed_ids(users, k, REQUEST_BITS, request_id)


def _packed_ids(users: np.ndarray, k: np.ndarray, bits: int, one) -> np.ndarray:
    """``user << bits | k``; a ``k`` past its bits raises ``one``'s error (naming duration_days)."""
    k = np.asarray(k, np.int64)
    if k.size and k.max() >= 1 << bits:
        i = int(np.argmax(k))
        one(int(np.asarray(users)[i]), int(k[i]))
    return (np.asarray(users, np.int64) << bits) | k
