"""One shard of a campaign (or of the pre-period): the shared parts of both engines.

A shard simulates its users over ``[t_begin, t_end)``.  Two engines tell the same story
(docs/architecture.md, "Data flow of one campaign", step 5):

- ``engine = "wave"`` (default, :mod:`simab.engine.wave`): users are struct-of-arrays; a
  SimPy process advances the clock tick by tick and, within a tick, every user whose next
  event falls before the tick's end advances one event in one vectorised pass (a wave);
  every ranking request of a wave is served in one call per (arm, scenario).
- ``engine = "reference"`` (:mod:`simab.engine.reference`): one SimPy process per user that
  reads like the story it simulates, each request served alone.

A user's events, in its own time order: session start (needs arrive, the session is
assigned, the first scene is drawn) -> scene (content visit, or a ranking surface whose
request is sent) -> serve (latency later: retrieval, ranking and the user's response;
clicks lead to item detail and sometimes the cart, conversions are pending purchases) ->
scene end (dwell later: leave, or the next scene) -> ... -> the next session.  A pending
purchase is applied (satiation, the need fulfilled, a ``buy`` scene) when the user's
clock passes it, before the user's next event, and at the end of the shard; none after
the campaign ends.  Every draw is keyed by (user, session, step, slot) or request id, so
both engines give the same exposures and moveline (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from simab.engine.retrieval import Retriever
from simab.engine.serving import ExposureRows, Outcome, RequestRows, Requests, Server
from simab.eventlog import SCHEMAS, ColumnBuffer, with_version
from simab.policies.world_features import SNAPSHOT_FIELDS, FeatureBuilder
from simab.simulators.scenes import BUY, CONTENT, SCENE_NAMES, SURFACE_SCENE
from simab.simulators.state import UserState
from simab.simulators.streams import session_ids
from simab.simulators.units import DAY
from simab.simulators.world import World

DOMAINS = ("shop", "content")


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
    """State, services and logs of one shard; the engines subclass it (``run``)."""

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
        sink=None,
        ope_recorder=None,
        logs=None,
        market=None,
        market_pools: dict[str, int] | None = None,
    ):
        """``sink``: where the logs go during the run (``sink.write(table, pa.Table)``, e.g. a
        ``ShardSink``); without one they stay in memory (:meth:`tables`).  ``ope_recorder``:
        called with every served batch before the state changes (``simab ope``).  ``logs``:
        what receives the served batches, scenes and requests in place of the event log's
        :class:`ShardLogs` (the counterfactual truth keeps only sums: ``run.truth.TruthLogs``).
        ``market``: the shard's shared budgets or stock (``simab.simulators.market.Market``;
        None: no interference), ``market_pools`` the pool each arm draws on (default: pool 0)."""
        self.world, self.plan, self.arms, self.campaign = world, plan, arms, campaign
        self.sink, self.ope_recorder = sink, ope_recorder
        self.unit, self.session_arm = unit, session_arm
        self.market, self.market_pools = market, market_pools or {}
        self.tick_s = float(serving.tick_s)  # the wave engine's tick (outputs do not depend on it)
        if market is not None:  # a tick boundary is where the market's serving index is refreshed
            self.tick_s = market.refresh_s
        users = world.population.users(plan.users)
        self.state = UserState(world.spec, users, world.catalog.centroid, plan.t_begin, world.catalog)
        th = world.histories.target(users, max_len=world.spec.seq_len)
        # the short sequence starts from the target-domain history, shifted to end at t_begin
        self.state.seed_history(np.arange(len(users)), th.item, th.category, th.ts + plan.t_begin, th.mask)
        self.builder = FeatureBuilder(world)
        self.retriever = Retriever(world)
        self.record_features = record_features
        self.logs = logs if logs is not None else ShardLogs(world, arms, campaign, plan.shard, plan.users,
                                                             self.state, record_features)
        self.services = {a: Server(world, a, policies[a], serving, self.retriever, self.builder) for a in arms}
        self.first_exposure = np.full(len(users), np.nan)
        self.first_arm = np.full(len(users), -1, np.int64)
        surfaces = world.chain.surfaces
        self.scene_of_scenario = np.array([SURFACE_SCENE[s] for s in surfaces], np.int64)
        self.surface_of_scenario = np.array(surfaces)
        self.n_candidates = np.array([world.spec.scenarios[n].n_candidates for n in world.scenario_names], np.int64)

    def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- shared steps ---------------------------------------------------------------
    def arms_of(self, rows: np.ndarray, sessions: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The arm index of each row's session number ``sessions`` starting at ``t``, or -1
        when it is unassigned: under ``unit = "session"`` each session is assigned at its
        start (``session_arm(ids, t)``)."""
        if self.unit == "session" and self.session_arm is not None:
            return self.session_arm(session_ids(self.plan.users[rows], sessions), t)
        return self.plan.arm[rows].astype(np.int64)

    def serve_requests(self, arm: str, req: Requests) -> Outcome:
        """Serve ``req`` by ``arm``'s service; log the requests and exposures and apply the
        exposures' fatigue; returns what the users see."""
        available = self._market_index(arm, req) if self.market is not None else None
        served = self.services[arm].serve(req, self.state, available)
        if self.market is not None:
            self._consume(available, req, served.outcome)
        if self.ope_recorder is not None:  # opt-in (simab ope): candidates and truth before the state changes
            self.ope_recorder.record(self.state, req.rows, req.rids, req.scenarios, req.t, served.candidates,
                                     served.outcome.items.shape[1])
        exp = served.exposures
        self.logs.exposures(arm, exp)
        self.logs.requests(arm, served.requests)
        keep = exp.keep
        self.state.expose(req.rows[keep], self.world.catalog.category[exp.slate[keep]], req.t[keep])
        return served.outcome

    def _market_index(self, arm: str, req: Requests):
        """The market's serving index for the batch (one refresh interval: the wave engine's
        ticks are the intervals, the reference engine serves one request at a time)."""
        self.market.catch_up(float(req.t.min()))
        if np.floor(req.t.max() / self.market.refresh_s) != self.market.k:
            raise RuntimeError("a served batch spans a market refresh boundary")  # a bug in an engine
        return self.market.index(self.market.pools(req.rows, self.market_pools.get(arm, 0)))

    def _consume(self, available, req: Requests, out: Outcome) -> None:
        """The batch's clicks (budget) or purchases (stock) consume their items' units."""
        t = np.broadcast_to(np.asarray(req.t, np.float64)[:, None], out.items.shape)
        if self.market.spec.resource == "budget":
            self.market.record(available.pool, out.items, out.clicked, t, req.rids)
        else:
            self.market.record(available.pool, out.items, out.converted, t + out.delay_s, req.rids)

    def scene(self, rows: np.ndarray, scenes: np.ndarray, cats: np.ndarray, shops: np.ndarray,
              t: np.ndarray) -> None:
        """Scene-level events (rows may repeat; pushed in the order given) into the
        users' movelines and the moveline log."""
        scenes = np.broadcast_to(np.asarray(scenes, np.int64), rows.shape)
        cats = np.broadcast_to(np.asarray(cats, np.int64), rows.shape)
        shops = np.broadcast_to(np.asarray(shops, np.int64), rows.shape)
        t = np.broadcast_to(np.asarray(t, np.float64), rows.shape)
        logged = self.state.scene_batch(rows, scenes, cats, shops, t, self.world.chain)
        if logged.all():
            self.logs.moveline(self.plan.users[rows], t, scenes, cats, shops)
        else:  # ``moveline_visible`` < 1: the log holds the logged events only
            self.logs.moveline(self.plan.users[rows[logged]], t[logged], scenes[logged], cats[logged], shops[logged])

    def purchase(self, rows: np.ndarray, cats: np.ndarray, shops: np.ndarray, t: np.ndarray) -> None:
        """Delayed conversions land: satiation, the need fulfilled, a ``buy`` scene."""
        self.state.purchase_batch(rows, cats, t)
        self.scene(rows, BUY, cats, shops, t)

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

    def flush(self, final: bool = False) -> None:
        """Hand the logged rows to the sink (``sink.write(table, pa.Table)``) when they are
        many, or at the end; without a sink they stay in memory (``tables``).  At the end the
        market (if any) charges its last events and closes its last day."""
        if final and self.market is not None:
            self.market.close(self.plan.t_end)
        if self.sink is not None and (final or self.logs.rows >= self.logs.flush_rows):
            for name, table in self.logs.drain().items():
                self.sink.write(name, table)

    def tables(self) -> dict[str, pa.Table]:
        """Every table of the shard (when run without a sink)."""
        out = self.logs.drain()
        out["assignments"] = self.assignments_table()
        return out


class _ExposureBatch(NamedTuple):
    """The kept exposures of one served batch, as the logs hold them until a drain."""

    arm: int
    scenario: np.ndarray  # [B]
    user: np.ndarray  # [B]
    session: np.ndarray  # [B] session ids
    request: np.ndarray  # [B]
    ts: np.ndarray  # [B]
    item: np.ndarray  # [B, K]
    score: np.ndarray  # [B, K]
    p_click: np.ndarray  # [B, K]
    clicked: np.ndarray
    p_convert: np.ndarray
    converted: np.ndarray
    delay_s: np.ndarray
    dwell_s: np.ndarray
    expected_dwell_s: np.ndarray
    propensity: np.ndarray


class _RequestBatch(NamedTuple):
    """The requests of one served batch, as the logs hold them until a drain."""

    arm: int
    scenario: np.ndarray
    user: np.ndarray
    session: np.ndarray
    request: np.ndarray
    ts: np.ndarray
    n_candidates: int
    latency_ms: np.ndarray
    batch_size: int


class ShardLogs:
    """The shard's logs, columnar: every served batch / scene batch appends its arrays;
    :meth:`drain` lays out the rows gathered since the last drain as tables (categorical
    columns as dictionaries over fixed vocabularies)."""

    flush_rows = 1_000_000  # exposures + moveline rows held before a flush to the sink

    def __init__(self, world: World, arms: list[str], campaign: str, shard: int, users: np.ndarray,
                 state: UserState, record_features: bool):
        self.world, self.arms, self.campaign, self.shard = world, arms, campaign, shard
        self.users, self.state = users, state  # global id of each state row; the state (feature snapshots)
        self.scenarios = list(world.scenario_names)
        self.record_features = record_features
        self.features_schema = features_schema(world) if record_features else None
        if record_features:  # ring -> {ring field: the features column's value dtype}
            value_type = {f.name: f.type.value_type.to_pandas_dtype() for f in self.features_schema
                          if pa.types.is_fixed_size_list(f.type)}
            self._feature_dtypes = {ring: {rf: value_type[f] for f, (rn, rf) in SNAPSHOT_FIELDS.items() if rn == ring}
                                    for ring in FEATURE_RINGS}
        self._reset()

    def _reset(self) -> None:
        self._exp: list[_ExposureBatch] = []
        self._req: list[_RequestBatch] = []
        self._ml: list[tuple] = []
        self._feat: list[dict[str, np.ndarray]] = []
        self.rows = 0
        self.exposure_rows = 0

    # --- appends ------------------------------------------------------------------------
    def exposures(self, arm: str, exp: ExposureRows) -> None:
        """One served batch's exposures: the slates of the requests ``exp.keep`` holds."""
        users = self._users(exp.rows)
        if self.record_features:
            self._features(exp.rows, exp.rids)
        if not exp.keep.any():
            return
        k, r = exp.keep, exp.response
        self._exp.append(_ExposureBatch(
            arm=self.arms.index(arm), scenario=exp.scenarios[k], user=users[k],
            session=session_ids(users[k], exp.sessions[k]), request=exp.rids[k], ts=exp.t[k], item=exp.slate[k],
            score=exp.scores[k], p_click=r.p_click[k], clicked=r.clicked[k], p_convert=r.p_convert[k],
            converted=r.converted[k], delay_s=r.delay_s[k], dwell_s=r.dwell_s[k],
            expected_dwell_s=r.expected_dwell_s[k], propensity=exp.propensity[k]))
        self.rows += exp.slate[k].size
        self.exposure_rows += exp.slate[k].size

    def requests(self, arm: str, req: RequestRows) -> None:
        """One served batch's requests (abandoned ones too)."""
        users = self._users(req.rows)
        self._req.append(_RequestBatch(
            arm=self.arms.index(arm), scenario=req.scenarios, user=users, session=session_ids(users, req.sessions),
            request=req.rids, ts=req.t, n_candidates=req.n_candidates,
            latency_ms=np.asarray(req.latency_ms, np.float64), batch_size=req.batch_size))

    def moveline(self, users, t, scenes, cats, shops) -> None:
        self._ml.append((np.asarray(users, np.int64), t.copy(), scenes.copy(), cats.copy(), shops.copy()))
        self.rows += len(users)

    def _users(self, rows):
        return self.users[rows]

    def _features(self, rows, rids) -> None:
        """One served batch's feature snapshots (the users' rings at request time), kept
        as the features table's columns: one [B, width] array per snapshot field, copied
        once out of the state in the column's dtype, and each ring's real length."""
        cols = {"request": np.asarray(rids, np.int64)}
        for ring, dtypes in self._feature_dtypes.items():
            values, n = getattr(self.state, ring).gather_as(rows, dtypes)
            cols.update({f: values[rf] for f, (rn, rf) in SNAPSHOT_FIELDS.items() if rn == ring})
            cols[f"{ring}_len"] = n.astype(np.int32)
        self._feat.append(cols)

    # --- tables -------------------------------------------------------------------------
    def drain(self) -> dict[str, pa.Table]:
        out = {"exposures": self._exposures_table(), "requests": self._requests_table(),
               "moveline": self._moveline_table()}
        if self.record_features:
            out["features"] = self._features_table()
        self._reset()
        return out

    def _exposures_table(self) -> pa.Table:
        b = self._exp
        schema = with_version(SCHEMAS["exposures"], "exposures")
        if not b:
            return schema.empty_table()
        K = np.concatenate([np.full(x.item.shape[0], x.item.shape[1]) for x in b])  # slate length per request
        n = int(K.sum())
        per = lambda f: np.concatenate([np.repeat(getattr(x, f), x.item.shape[1]) for x in b])  # noqa: E731
        flat = lambda f: np.concatenate([np.asarray(getattr(x, f)).reshape(-1) for x in b])  # noqa: E731
        ts = per("ts")
        converted = flat("converted")
        cols = {
            "campaign": _categorical(np.zeros(n, np.int32), [self.campaign], schema.field("campaign").type),
            "shard": np.full(n, self.shard, np.int32),
            "arm": _categorical(np.concatenate([np.full(x.item.size, x.arm, np.int32) for x in b]), self.arms,
                                schema.field("arm").type),
            "user": per("user"), "session": per("session"), "request": per("request"), "ts": ts,
            "day": np.floor(ts / DAY).astype(np.int32),
            "scenario": _categorical(per("scenario").astype(np.int32), self.scenarios, schema.field("scenario").type),
            "position": (np.arange(n) - np.repeat(np.cumsum(K) - K, K)).astype(np.int16),
            "item": flat("item"), "score": flat("score").astype(np.float32), "p_click": flat("p_click"),
            "clicked": flat("clicked"), "p_convert": flat("p_convert"), "converted": converted,
            "conversion_ts": np.where(converted, ts + flat("delay_s"), np.nan),
            "dwell_s": flat("dwell_s"), "expected_dwell_s": flat("expected_dwell_s"), "propensity": flat("propensity"),
        }
        return _table(schema, cols)

    def _features_table(self) -> pa.Table:
        """The snapshots in request order (what the pre-period cache keeps; a numpy take
        of the 2-D arrays costs far less than Arrow's take of fixed-size lists).  Each
        batch's arrays are dropped once their column is built, so the batches and the table
        are not both held in full."""
        b = self._feat
        schema = with_version(self.features_schema, "features")
        if not b:
            return schema.empty_table()
        order = np.argsort(np.concatenate([x["request"] for x in b]), kind="stable")
        arrays = []
        for f in schema:
            col = np.concatenate([x.pop(f.name) for x in b])[order]
            if pa.types.is_fixed_size_list(f.type):
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(col.reshape(-1), f.type.value_type),
                                                                f.type.list_size))
            else:
                arrays.append(pa.array(col, f.type))
        return pa.Table.from_arrays(arrays, schema=schema)

    def _requests_table(self) -> pa.Table:
        b = self._req
        schema = with_version(SCHEMAS["requests"], "requests")
        if not b:
            return schema.empty_table()
        size = np.array([len(x.user) for x in b])
        cat = lambda f: np.concatenate([np.asarray(getattr(x, f)) for x in b])  # noqa: E731
        ts = cat("ts")
        cols = {
            "request": cat("request"), "user": cat("user"), "session": cat("session"),
            "arm": _categorical(np.repeat([x.arm for x in b], size).astype(np.int32), self.arms,
                                schema.field("arm").type),
            "ts": ts, "day": np.floor(ts / DAY).astype(np.int32),
            "scenario": _categorical(cat("scenario").astype(np.int32), self.scenarios, schema.field("scenario").type),
            "n_candidates": np.repeat([x.n_candidates for x in b], size).astype(np.int32),
            "latency_ms": cat("latency_ms"),
            "batch_size": np.repeat([x.batch_size for x in b], size).astype(np.int32),
        }
        return _table(schema, cols)

    def _moveline_table(self) -> pa.Table:
        b = self._ml
        schema = with_version(SCHEMAS["moveline"], "moveline")
        if not b:
            return schema.empty_table()
        cat = lambda i: np.concatenate([x[i] for x in b])  # noqa: E731
        scenes = cat(2)
        cols = {
            "user": cat(0), "ts": cat(1),
            "scene": _categorical(scenes.astype(np.int32), list(SCENE_NAMES), schema.field("scene").type),
            "category": cat(3).astype(np.int32), "shop": cat(4).astype(np.int32),
            "domain": _categorical((scenes == CONTENT).astype(np.int32), list(DOMAINS), schema.field("domain").type),
        }
        return _table(schema, cols)


def _categorical(codes: np.ndarray, vocabulary: list[str], type_: pa.DataType) -> pa.Array:
    """Codes into ``vocabulary`` as the schema's type (a dictionary column, or plain strings)."""
    arr = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocabulary, pa.string()))
    return arr if pa.types.is_dictionary(type_) else arr.cast(type_)


def _table(schema: pa.Schema, cols: dict) -> pa.Table:
    return pa.Table.from_arrays([c if isinstance(c := cols[f.name], pa.Array) else pa.array(c, f.type)
                                 for f in schema], schema=schema)


#: the user-state rings a feature snapshot copies (``<ring>_len`` columns)
FEATURE_RINGS = ("seq", "ais", "moveline")


def features_schema(world: World) -> pa.Schema:
    s = world.spec
    width = {"seq": s.seq_len, "ais": s.aiseq_len, "ml": s.moveline_len}
    fields = [("request", pa.int64())]
    for f in SNAPSHOT_FIELDS:
        w = width[f.split("_")[0]]
        fields.append((f, pa.list_(pa.float64() if f.endswith("_ts") else pa.int32(), w)))
    fields += [(f"{r}_len", pa.int32()) for r in FEATURE_RINGS]
    return pa.schema(fields)
