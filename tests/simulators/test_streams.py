"""Random-stream slots (simulators/streams.py): no two draws share a key over the ranges
the specs allow, specs that would overflow a slot are refused, and no caller packs
counters by hand."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from simab.errors import SimabError
from simab.simulators import streams as s
from simab.simulators.spec import LifelongSpec, ScenarioSpec, WorldSpec, world_spec
from simab.simulators.streams import Decision, HistoryDraw

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = range(4)  # every layout is linear in the session number: four consecutive ones show the boundaries
MAX_SLATE = ScenarioSpec.model_fields["slate_size"].metadata[1].le  # the spec's upper bound (200)
MAX_INTERESTS = 2 * 20  # interest.n_active and interest.n_dormant are each at most 20
MAX_HISTORY = max(LifelongSpec.model_fields[f].metadata[1].le for f in ("source_length", "target_length"))


def _disjoint(slots: dict[str, np.ndarray]) -> None:
    """Every counter is used by one draw only: within a slot (distinct indices give
    distinct counters) and across the slots of one stream."""
    for name, c in slots.items():
        assert len(np.unique(c)) == len(c), f"{name}: two draws of the slot share a counter"
    allc = np.concatenate(list(slots.values()))
    assert len(np.unique(allc)) == len(allc), "two slots of the stream share a counter"


def _uniforms_of_normals(c) -> np.ndarray:
    """rng.normal(key, unit, c) reads the uniforms at 2c and 2c + 1."""
    c = np.asarray(c)
    return np.concatenate([2 * c, 2 * c + 1])


def test_scene_chain_slots_are_disjoint_up_to_max_scenes():
    steps = range(s.MAX_SCENES + 1)  # the step after the last scene still draws whether the session goes on
    slots = {d.name: np.array([s.step_counter(n, t, d) for n in SESSIONS for t in steps])
             for d in Decision if d != Decision.CART}
    # clicks at positions p and p + 8 share a cart draw by design: positions 0..7 are the sub-steps
    slots["CART"] = np.array([s.cart_counter(n, t, p) for n in SESSIONS for t in range(s.MAX_SCENES) for p in range(8)])
    _disjoint(slots)
    # one more scene and the last step's carts reach the next session's chain draws
    over = {s.cart_counter(0, s.MAX_SCENES, p) for p in range(8)}
    assert over & {s.cart_counter(1, t, p) for t in range(s.MAX_SCENES) for p in range(8)}


def test_arrival_need_and_dwell_slots_are_disjoint():
    _disjoint({"arrival": np.array([c for n in SESSIONS for j in range(s.ARRIVAL_TRIES) for c in s.arrival_counters(n, j)])})
    _disjoint({"need gap": np.array([s.need_gap_counter(j) for j in range(1000)]),
               "need category": np.array([s.need_category_counter(j) for j in range(1000)])})
    _disjoint({"need session": np.array([c for j in range(1000) for c in s.need_session_counters(j)])})
    _disjoint({"dwell": _uniforms_of_normals([s.dwell_counter(n, t) for n in SESSIONS for t in range(s.MAX_SCENES)])})


def _retrieval_slots(n: int) -> dict[str, np.ndarray]:
    n_pop, n_ctx = s.pool_sizes(n)
    rounds = s.fill_rounds(n)
    # top-up round j re-reads the sequence FILL_BASE + i from i = 64 j: the slot is that sequence
    fill = np.unique(np.concatenate([s.fill_counters(j, n) for j in range(rounds)]))
    return {
        "fill": fill,
        "search tail": s.block_counters(s.SEARCH_TAIL, n),
        "popular": s.block_counters(s.POPULAR, n_pop),
        "context category": s.block_counters(s.CONTEXT, n_ctx),
        "context item": s.block_counters(s.CONTEXT, n_ctx, s.CONTEXT_ITEM_OFFSET),
        "random": s.block_counters(s.RANDOM, n),
    }


@pytest.mark.parametrize("n", [1, 60, 500, s.MAX_CANDIDATES])
def test_retrieval_slots_are_disjoint_up_to_max_candidates(n):
    _disjoint(_retrieval_slots(n))
    with pytest.raises(SimabError, match="n_shop_items"):
        s.fill_counters(s.fill_rounds(n), n)


def test_max_candidates_is_the_largest_that_fits():
    slots = _retrieval_slots(s.MAX_CANDIDATES + 1)
    both = np.intersect1d(slots["context category"], slots["context item"])
    assert len(both) > 0


def test_per_request_and_population_slots_are_disjoint():
    pos = np.arange(MAX_SLATE)
    click, conv, delay, u1, u2 = s.response_counters(pos)
    for c in (click, conv, delay):  # one stream each
        _disjoint({"position": c})
    _disjoint({"dwell u1": u1, "dwell u2": u2})
    _disjoint({"policy uniforms": s.policy_uniform_counters(s.MAX_CANDIDATES)})
    _disjoint({"profile": np.array([s.PROFILE_AGE, s.PROFILE_GENDER, s.PROFILE_CITY])})
    _disjoint({"interests": np.array([c for j in range(MAX_INTERESTS) for c in s.interest_counters(j)])})
    _disjoint({"scalars": _uniforms_of_normals([s.ACTIVITY, s.PRICE_SENSITIVITY, s.CONVERSION_PROPENSITY])})


def test_history_slots_are_disjoint_up_to_the_longest_history():
    c = s.history_counters(MAX_HISTORY)
    _disjoint({d.name: c[:, d] for d in HistoryDraw})
    # a shorter history (max_len) reads the newest events' counters of the full one
    np.testing.assert_array_equal(s.history_counters(30), c[:30])


def test_request_and_session_ids_are_unique_and_fit_int64():
    top_user = WorldSpec.model_fields["n_users"].metadata[1].le - 1
    for make, cap in ((s.request_id, s.MAX_REQUESTS_PER_USER), (s.session_id, s.MAX_SESSIONS_PER_USER)):
        assert make(5, cap - 1) < make(6, 0)  # a user's ids stay below the next user's
        assert make(top_user, cap - 1) < 2**63
        with pytest.raises(SimabError) as ei:
            make(5, cap)
        assert ei.value.key == "duration_days"


def test_world_specs_that_overflow_a_slot_are_refused():
    world_spec({"sessions": {"max_scenes": s.MAX_SCENES}})
    with pytest.raises(SimabError) as ei:
        world_spec({"sessions": {"max_scenes": s.MAX_SCENES + 1}})
    assert ei.value.key == "world.sessions.max_scenes"
    name = next(iter(world_spec({}).scenarios))
    world_spec({"n_shop_items": 5000, "scenarios": {name: {"n_candidates": s.MAX_CANDIDATES}}})
    with pytest.raises(SimabError) as ei:
        world_spec({"n_shop_items": 5000, "scenarios": {name: {"n_candidates": s.MAX_CANDIDATES + 1}}})
    assert ei.value.key == f"world.scenarios.{name}.n_candidates"
    with pytest.raises(SimabError, match="n_shop_items") as ei:  # retrieval could never fill the request
        world_spec({"n_shop_items": 50, "scenarios": {name: {"n_candidates": 60}}})
    assert ei.value.key == f"world.scenarios.{name}.n_candidates"


def test_no_caller_packs_stream_counters_by_hand():
    """The layouts live in streams.py only: no shifted ids or counter strides elsewhere."""
    packed = re.compile(r"\b[A-Za-z_]\w*\s*<<\s*(20|24)\b|\*\s*(8|64|4096)\s*\+|\b(64|4096)\s*\*\s*\w")
    offenders = []
    for folder in ("simab", "simulators"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "streams.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if packed.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_vectorised_ids_pack_as_the_scalar_ones_and_refuse_overflow():
    from simab.simulators.streams import request_id, request_ids, session_id, session_ids

    users, k = np.array([0, 3, 70_000]), np.array([5, 0, 1_000])
    assert session_ids(users, k).tolist() == [session_id(int(u), int(n)) for u, n in zip(users, k, strict=True)]
    assert request_ids(users, k).tolist() == [request_id(int(u), int(n)) for u, n in zip(users, k, strict=True)]
    for fn, limit in ((session_ids, 1 << 20), (request_ids, 1 << 24)):
        with pytest.raises(SimabError, match="duration_days"):
            fn(users, np.array([0, limit, 1]))


# --------------------------------------------------------------------------- names
def test_every_stream_has_its_own_name():
    """An enum member whose value repeats another's is an alias: two purposes would share
    every draw."""
    assert len(s.Stream.__members__) == len({m.value for m in s.Stream.__members__.values()})
    assert s.Stream.POLICY_UNIFORMS.of("treatment") == "policy-uniforms/treatment"
    assert f"{s.Stream.RETRIEVAL}" == "retrieval"  # what rng.stream_key hashes: the value


# (function, position of the stream argument) of the calls that name a stream
_NAMED = {"stream_key": 1, "generator": 1, "phase_stream": 1, "stream": 0}


def _spelled_names(tree: ast.AST) -> list[int]:
    """Lines that pass a stream name spelled as a string (a literal or an f-string)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        pos = _NAMED.get(name)
        if pos is None or len(node.args) <= pos:
            continue
        arg = node.args[pos]
        if isinstance(arg, ast.JoinedStr) or (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            lines.append(node.lineno)
    return lines


def test_stream_names_come_from_the_enum():
    """Every call that names a stream takes a ``Stream`` member (or a name built from one),
    never a string spelled at the call."""
    found = {}
    for folder in ("simab", "simulators", "policies", "reports", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = _spelled_names(ast.parse(path.read_text()))
            if lines:
                found[str(path.relative_to(ROOT))] = lines
    assert not found, f"stream names spelled as strings (use simulators/streams.py's Stream): {found}"
    assert _spelled_names(ast.parse('rng.stream_key(1, f"x/{a}"); w.stream("retrieval")')) == [1, 1]
