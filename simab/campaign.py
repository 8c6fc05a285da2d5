"""One shard of a campaign (or of the pre-period) as a SimPy simulation.

Each user is a process that reads like the story it simulates: wait for the next
session, walk the scene chain, ask the arm's ranking service for a slate on every
ranking surface, look at it, click, dwell, sometimes buy later.  All per-item work
happens vectorised in the ranking service and the oracle; the processes only carry
control flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import simpy

from simab.eventlog import SCHEMAS, ColumnBuffer, with_version
from simab.policies.world_features import SNAPSHOT_FIELDS, FeatureBuilder, Snapshot
from simab.retrieval import Retriever
from simab.serving import RankingService, Request
from simab.simulators.scenes import BUY, CART, CONTENT, DETAIL, SCENE_NAMES, SURFACE_SCENE
from simab.simulators.state import UserState
from simab.simulators.streams import Decision, request_id, session_id
from simab.simulators.units import DAY
from simab.simulators.world import World


@dataclass
class ShardPlan:
    shard: int
    users: np.ndarray  # global ids, sorted
    arm: np.ndarray  # arm index per user
    start: np.ndarray  # time the user enters the experiment (s)
    bucket: np.ndarray
    t_begin: float
    t_end: float


class ShardSimulation:
    def __init__(
        self,
        world: World,
        plan: ShardPlan,
        arms: list[str],
        policies: dict,
        *,
        campaign: str,
        serving,
        unit: str = "user",
        session_arm=None,
        record_features: bool = False,
    ):
        self.world, self.plan, self.arms, self.campaign = world, plan, arms, campaign
        self.unit, self.session_arm = unit, session_arm
        self.env = simpy.Environment(initial_time=plan.t_begin)
        users = world.population.users(plan.users)
        self.state = UserState(world.spec, users, world.catalog.centroid, plan.t_begin)
        th = world.histories.target(users, max_len=world.spec.seq_len)
        # the short sequence starts from the target-domain history, shifted to end at t_begin
        self.state.seed_history(np.arange(len(users)), th.item, th.category, th.ts + plan.t_begin, th.mask)
        self.builder = FeatureBuilder(world)
        self.retriever = Retriever(world)
        self.services = {
            a: RankingService(self.env, self, a, policies[a], serving.max_batch, serving.max_wait_ms,
                              getattr(serving, "abandon_after_ms", None))
            for a in arms
        }
        self.exposures = ExposureLog(campaign, plan.shard)
        self.requests = RequestLog()
        self.moveline_log = ColumnBuffer("moveline")
        self.first_exposure = np.full(len(users), np.nan)
        self.first_arm = np.full(len(users), -1, np.int64)
        self.record_features = record_features
        if record_features:
            self.features = ColumnBuffer("features", features_schema(world))

    # --- the story --------------------------------------------------------------------
    def run(self) -> None:
        for row in range(len(self.plan.users)):
            if self.plan.arm[row] >= 0:
                self.env.process(self.user_life(row))
        self.env.run(until=self.plan.t_end)

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
            fresh_need = self.check_needs(row, user)
            arm = self.arm_for(row, user, n)
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
                self.scene(row, CONTENT, cat, -1, domain="content")
                yield self.env.timeout(chain.scene_dwell(user, n, step))
            else:
                outcome = yield from self.visit_surface(row, user, n, step, sc, arm)
                dwell = chain.scene_dwell(user, n, step)
                if outcome is not None:
                    dwell += self.react(row, user, n, step, outcome)
                yield self.env.timeout(dwell)
            if chain.leaves(user, n, step):
                return
            kind, sc = chain.next_scene(user, n, step + 1, st.need_live(row, self.env.now))

    def visit_surface(self, row: int, user: int, n: int, step: int, sc: int, arm: int):
        st, chain, w = self.state, self.world.chain, self.world
        surface = chain.surfaces[sc]
        scene = SURFACE_SCENE[surface]
        cat, shop = -1, -1
        if surface in ("search", "shop"):
            cat = self.interest_category(row, user, n, step)
            if surface == "shop":
                shop = self.retriever.shop_for(cat, chain.draw(user, n, step, Decision.SHOP))
        self.scene(row, scene, cat, shop)
        k = int(st.requests[row])
        st.requests[row] += 1
        rid = request_id(user, k)
        ctx = retrieval_context(*st.moveline.tail(row, "cat", 10), *st.seq.tail(row, "cat", 10))
        n_cand = w.spec.scenarios[w.scenario_names[sc]].n_candidates
        cand = self.retriever.candidates(surface, n_cand, rid, cat, shop, ctx)
        arm_name = self.arms[arm]
        req = Request(row, user, session_id(user, n), rid, sc, cand, self.env.now, self.env.event())
        if self.record_features:
            self.record_snapshot(req)
        if np.isnan(self.first_exposure[row]):
            self.first_exposure[row] = self.env.now
            self.first_arm[row] = arm
        outcome = yield self.services[arm_name].request(req)
        return outcome

    def react(self, row: int, user: int, n: int, step: int, outcome) -> float:
        """Clicks lead to item detail (and sometimes the cart); conversions come later."""
        if outcome.abandoned:
            return 0.0
        st, c, chain = self.state, self.world.catalog, self.world.chain
        dwell = 0.0
        scene_now = int(st.moveline.data["scene"][row, (st.moveline.count[row] - 1) % st.moveline.length])
        for pos in np.flatnonzero(outcome.clicked):
            item = int(outcome.items[pos])
            cat, shop = int(c.category[item]), int(c.shop[item])
            st.click(row, item, cat, scene_now, self.env.now, c.latent[item])
            self.scene(row, DETAIL, cat, shop)
            dwell += float(outcome.dwell_s[pos])
            if chain.goes_to_cart(user, n, step, int(pos)):
                self.scene(row, CART, cat, shop)
            if outcome.converted[pos]:
                self.env.process(self.buy_later(row, cat, shop, float(outcome.delay_s[pos])))
        return dwell

    def buy_later(self, row: int, cat: int, shop: int, delay: float):
        yield self.env.timeout(delay)
        self.state.purchase(row, cat, self.env.now)
        self.scene(row, BUY, cat, shop)

    # --- helpers of the story ---------------------------------------------------------
    def check_needs(self, row: int, user: int) -> bool:
        """Needs arrive as a Poisson process; the newest one replaces any older one."""
        return self.state.arrive_needs(row, user, self.world.chain, self.env.now, self.world.catalog.n_categories)

    def interest_category(self, row: int, user: int, n: int, step: int) -> int:
        """What a search or shop visit is about: the live need if any, else an interest."""
        st, chain = self.state, self.world.chain
        if st.need_live(row, self.env.now):
            return int(st.need_cat[row])
        cats, w = st.users.active[row], st.users.active_w[row]
        u = chain.draw(user, n, step, Decision.INTEREST)
        return int(cats[min(np.searchsorted(np.cumsum(w) / w.sum(), u), len(cats) - 1)])

    def arm_for(self, row: int, user: int, n: int) -> int:
        """The arm index of session ``n``, or -1 when it is unassigned: under
        ``unit = "session"`` each session is assigned at its start (``session_arm(id, t)``)."""
        if self.unit == "session" and self.session_arm is not None:
            return int(self.session_arm(session_id(user, n), self.env.now))
        return int(self.plan.arm[row])

    def scene(self, row: int, scene: int, cat: int, shop: int, domain: str = "shop") -> None:
        self.state.scene(row, scene, cat, shop, self.env.now)
        self.moveline_log.append_row(  # columns of the moveline schema, in order
            int(self.plan.users[row]), self.env.now, SCENE_NAMES[scene], cat, shop,
            "content" if scene == CONTENT else domain,
        )

    def record_snapshot(self, req: Request) -> None:
        snap = Snapshot.from_state(self.state, np.array([req.row]), np.array([self.env.now]), np.array([req.scenario]))
        cols = {f: snap.arrays[f] for f in SNAPSHOT_FIELDS}
        cols.update({f"{r}_len": np.array([int(snap.masks[r].sum())]) for r in ("seq", "ais", "moveline")})
        self.features.append(request=np.array([req.request]), **cols)

    # --- logging (columnar, one append per served batch) -------------------------------
    def log_exposures(self, arm, reqs, scenario, slate, scores, resp, prop, keep, now) -> None:
        if not keep.all():
            if not keep.any():
                return
            reqs = [r for r, k in zip(reqs, keep, strict=True) if k]
            slate, scores, prop = slate[keep], scores[keep], prop[keep]
            resp = type(resp)(*(getattr(resp, f)[keep] for f in resp.__dataclass_fields__))
        self.exposures.append(arm, self.world.scenario_names[scenario], now, reqs, slate, scores, resp, prop)

    def log_requests(self, arm, reqs, scenario, n_cand, latency, batch_size, now) -> None:
        self.requests.append(arm, self.world.scenario_names[scenario], now, reqs, n_cand, latency, batch_size)

    def assignments_table(self) -> pa.Table:
        seen = ~np.isnan(self.first_exposure)
        buf = ColumnBuffer("assignments")
        if seen.any():
            buf.append(
                user=self.plan.users[seen],
                bucket=self.plan.bucket[seen].astype(np.int32),
                arm=[self.arms[a] for a in self.first_arm[seen]],
                first_exposure_ts=self.first_exposure[seen],
            )
        return buf.to_table()


class _BatchLog:
    """One shard's log of served batches: each batch's own arrays are kept (one list
    append per batch) and laid out as a table once, when the shard ends.  A batch
    starts with (arm, scenario, now, [(user, session, request), ...])."""

    table = ""

    def __init__(self):
        self.batches: list[tuple] = []
        self.rows = 0

    def _keep(self, arm: str, scenario: str, now: float, reqs, *arrays, rows: int) -> None:
        self.batches.append((arm, scenario, now, [(r.user, r.session, r.request) for r in reqs], *arrays))
        self.rows += rows

    def _common(self, counts: np.ndarray, ids_per_request: np.ndarray) -> dict:
        """Columns every log shares, each batch's values repeated ``counts`` times (and each
        request's ids ``ids_per_request`` times)."""
        b = self.batches
        ids = np.array([t for x in b for t in x[3]], np.int64).reshape(-1, 3)
        now = np.repeat(np.array([x[2] for x in b]), counts)
        return {
            "user": np.repeat(ids[:, 0], ids_per_request),
            "session": np.repeat(ids[:, 1], ids_per_request),
            "request": np.repeat(ids[:, 2], ids_per_request),
            "arm": _repeat_strings([x[0] for x in b], counts),
            "scenario": _repeat_strings([x[1] for x in b], counts),
            "ts": now,
            "day": np.floor(now / DAY).astype(np.int32),
        }

    def to_table(self) -> pa.Table:
        schema = with_version(SCHEMAS[self.table], self.table)
        if not self.batches:
            return schema.empty_table()
        cols = self._columns()
        return pa.Table.from_arrays([c if isinstance(c := cols[f.name], pa.Array) else pa.array(c, f.type)
                                     for f in schema], schema=schema)

    def _columns(self) -> dict:
        raise NotImplementedError


class ExposureLog(_BatchLog):
    """The ``exposures`` table: one row per (request, position), in serving order."""

    table = "exposures"

    def __init__(self, campaign: str, shard: int):
        super().__init__()
        self.campaign, self.shard = campaign, shard

    def append(self, arm: str, scenario: str, now: float, reqs, slate, scores, resp, prop) -> None:
        self._keep(arm, scenario, now, reqs, slate, scores, resp, prop, rows=slate.size)

    def _columns(self) -> dict:
        b = self.batches
        flat = lambda get: np.concatenate([get(x).reshape(-1) for x in b])  # noqa: E731
        sizes = np.array([x[4].size for x in b])  # exposures per batch
        per_req = np.repeat([x[4].shape[1] for x in b], [x[4].shape[0] for x in b])  # slate length per request
        cols = self._common(sizes, per_req)
        n = int(sizes.sum())
        converted = flat(lambda x: x[6].converted)
        return {
            **cols,
            "campaign": _repeat_strings([self.campaign], np.array([n])),
            "shard": np.full(n, self.shard, np.int32),
            "position": (np.arange(n) - np.repeat(np.cumsum(per_req) - per_req, per_req)).astype(np.int16),
            "item": flat(lambda x: x[4]),
            "score": flat(lambda x: x[5]).astype(np.float32),
            "p_click": flat(lambda x: x[6].p_click),
            "clicked": flat(lambda x: x[6].clicked),
            "p_convert": flat(lambda x: x[6].p_convert),
            "converted": converted,
            "conversion_ts": np.where(converted, cols["ts"] + flat(lambda x: x[6].delay_s), np.nan),
            "dwell_s": flat(lambda x: x[6].dwell_s),
            "expected_dwell_s": flat(lambda x: x[6].expected_dwell_s),
            "propensity": flat(lambda x: x[7]),
        }


class RequestLog(_BatchLog):
    """The ``requests`` table: one row per request, abandoned ones included."""

    table = "requests"

    def append(self, arm: str, scenario: str, now: float, reqs, n_cand: int, latency, batch_size: int) -> None:
        self._keep(arm, scenario, now, reqs, n_cand, np.asarray(latency, np.float64), batch_size, rows=len(reqs))

    def _columns(self) -> dict:
        b = self.batches
        sizes = np.array([len(x[3]) for x in b])
        return {
            **self._common(sizes, 1),
            "n_candidates": np.repeat(np.array([x[4] for x in b], np.int32), sizes),
            "latency_ms": np.concatenate([x[5] for x in b]),
            "batch_size": np.repeat(np.array([x[6] for x in b], np.int32), sizes),
        }


def retrieval_context(ml_cat: np.ndarray, ml_real: np.ndarray, seq_cat: np.ndarray,
                      seq_real: np.ndarray) -> np.ndarray:
    """Categories that steer home/channel retrieval: the real slots of the moveline's and the
    short sequence's last events, scene-level events without a category (-1) left out.  An
    empty slot is no event: it must not read as category 0, a real category (world v2 did,
    over-weighting category 0 for users with few target-history events)."""
    ctx = np.concatenate([ml_cat[ml_real], seq_cat[seq_real]])
    return ctx[ctx >= 0]


def _repeat_strings(values: list[str], counts: np.ndarray) -> pa.Array:
    """``values[i]`` repeated ``counts[i]`` times, as a dictionary array (the event log's
    categorical columns; no Python string per row)."""
    names = sorted(set(values))
    codes = np.repeat(np.array([names.index(v) for v in values], np.int32), counts)
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string()))


def features_schema(world: World) -> pa.Schema:
    s = world.spec
    width = {"seq": s.seq_len, "ais": s.aiseq_len, "ml": s.moveline_len}
    fields = [("request", pa.int64())]
    for f in SNAPSHOT_FIELDS:
        w = width[f.split("_")[0]]
        fields.append((f, pa.list_(pa.float64() if f.endswith("_ts") else pa.int32(), w)))
    fields += [(f"{r}_len", pa.int32()) for r in ("seq", "ais", "moveline")]
    return pa.schema(fields)

