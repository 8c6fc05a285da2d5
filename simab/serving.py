"""The ranking service of one arm: a SimPy process that micro-batches requests.

Requests wait until ``max_batch`` are pending or ``max_wait_ms`` (simulated) has passed
since the first of them; the batch is then scored in one call per scenario, slates are
cut, the world responds to every slate at once (vectorised) and each waiting user gets
its outcome.  Latency per request = simulated queueing delay + the measured compute time
of its batch (wall clock, so it varies between machines; it never changes exposures
unless ``abandon_after_ms`` is set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from simab.policies.world_features import GROUP_RINGS, Snapshot
from simab.simulators import rng, streams


@dataclass
class Request:
    row: int  # local user row in the shard state
    user: int
    session: int
    request: int  # globally unique request id (streams.request_id)
    scenario: int
    candidates: np.ndarray
    submitted: float
    event: simpy.Event = field(repr=False)


@dataclass
class Outcome:
    """What the user sees and does for one slate (only the clicked part is per item)."""

    items: np.ndarray
    clicked: np.ndarray
    converted: np.ndarray
    delay_s: np.ndarray
    dwell_s: np.ndarray
    abandoned: bool = False


class RankingService:
    def __init__(self, env: simpy.Environment, shard, arm: str, policy, max_batch: int, max_wait_ms: float,
                 abandon_after_ms: float | None = None):
        self.env, self.shard, self.arm, self.policy = env, shard, arm, policy
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self.abandon_after_ms = abandon_after_ms
        self.pending: list[Request] = []
        self.generation = 0
        self.groups = tuple(policy.feature_groups)
        self.rings = tuple(dict.fromkeys(GROUP_RINGS[g] for g in self.groups if g in GROUP_RINGS))
        self.ukey = rng.stream_key(shard.world.seed, shard.world.stream(f"policy-uniforms/{arm}"))
        self.compute_s = 0.0
        self.batches = 0

    def request(self, req: Request) -> simpy.Event:
        self.pending.append(req)
        if len(self.pending) >= self.max_batch:
            self.flush()
        elif len(self.pending) == 1:
            self.env.process(self._timer(self.generation))
        return req.event

    def _timer(self, generation: int):
        yield self.env.timeout(self.max_wait)
        if generation == self.generation and self.pending:
            self.flush()

    def flush(self) -> None:
        reqs, self.pending = self.pending, []
        self.generation += 1
        self.batches += 1
        scen = np.array([r.scenario for r in reqs])
        for s in np.unique(scen):
            self._serve([r for r in reqs if r.scenario == s], int(s), len(reqs))

    def _serve(self, reqs: list[Request], scenario: int, batch_size: int) -> None:
        sh, w = self.shard, self.shard.world
        now = self.env.now
        rows = np.array([r.row for r in reqs], np.int64)
        rid = np.array([r.request for r in reqs], np.int64)
        cand = np.stack([r.candidates for r in reqs])  # [B, C]
        B, C = cand.shape
        K = min(w.spec.scenarios[w.scenario_names[scenario]].slate_size, C)
        sc = np.full(B, scenario, np.int64)
        ts = np.full(B, now)
        st = sh.state
        users = st.users
        intent = st.intent(rows, ts)
        u = st.u[rows]
        t0 = time.perf_counter()
        p_click_top = None
        if "oracle" in self.groups:
            pen = st.penalty(rows, w.catalog.category[cand], ts)
            p_click_top, _, _ = w.oracle.probabilities(
                u, intent, sc, cand, np.zeros((B, C)), pen, users.price_sensitivity[rows], users.conversion_propensity[rows]
            )
        snap = Snapshot.from_state(st, rows, ts, sc, self.rings)
        batch = sh.builder.build(snap, cand, self.groups, p_click=p_click_top)
        scores = self.policy.score(batch).numpy()
        if getattr(self.policy, "stochastic", False):
            uniforms = rng.uniform(self.ukey, rid[:, None], streams.policy_uniform_counters(C)[None, :])
            idx, prop = self.policy.slate(batch, K, uniforms)
        else:  # deterministic top-K; ties broken by candidate order
            idx = np.argsort(-scores, axis=1, kind="stable")[:, :K]
            prop = np.ones(idx.shape)
        compute_ms = (time.perf_counter() - t0) * 1000.0
        self.compute_s += compute_ms / 1000.0
        slate = np.take_along_axis(cand, idx, axis=1)
        slate_scores = np.take_along_axis(scores, idx, axis=1)
        latency = (now - np.array([r.submitted for r in reqs])) * 1000.0 + compute_ms
        abandoned = (
            latency > self.abandon_after_ms if self.abandon_after_ms is not None else np.zeros(B, bool)
        )
        slate_cat = w.catalog.category[slate]
        pen = st.penalty(rows, slate_cat, ts)
        resp = w.oracle.respond(
            rid, u, intent, sc, slate, pen, users.price_sensitivity[rows], users.conversion_propensity[rows]
        )
        keep = ~abandoned
        sh.log_exposures(self.arm, reqs, scenario, slate, slate_scores, resp, prop, keep, now)
        sh.log_requests(self.arm, reqs, scenario, C, latency, batch_size, now)
        st.expose(rows[keep], slate_cat[keep], ts[keep])
        for i, r in enumerate(reqs):
            if abandoned[i]:
                r.event.succeed(Outcome(slate[i], np.zeros(K, bool), np.zeros(K, bool), np.full(K, np.inf), np.zeros(K), True))
            else:
                r.event.succeed(
                    Outcome(slate[i], resp.clicked[i], resp.converted[i], resp.delay_s[i], resp.dwell_s[i])
                )
