"""Serving: the latency model and the ranking of a batch of requests of one arm.

Both engines (``simab/engine/shard.py``) serve through :class:`Server`: the reference engine one
request at a time, the wave engine every due request of a wave at once (one call per arm
and shape: scenarios with the same numbers of candidates and slate size share a call).
:meth:`Server.serve` takes the batch's request arrays and the users' state (read only) and
returns the outcome and the log rows; the shard logs them and updates the state.

- Retrieval, the policy's randomness and the responses are keyed by request id: they do
  not depend on the requests a request is served with.
- Neural policies score at the model's speed (issue #29): the call's requests are packed
  (:mod:`simab.policies.packing`: sorted by history length, cut into parts of at most
  ``serving.max_batch`` requests, by default the policy's ``serve_batch``, each part's
  sequences cut to its longest real history; no zero rows).  A request's logits then
  depend on the requests it is packed with in the last float32 bits; the packing is a
  function of the wave, itself a function of the shard, so outputs stay byte-identical
  for any number of workers, and the reference engine (each request alone) agrees with
  the wave engine within float tolerance (``tests/simab/engine/test_engines.py``).

Latency model (deterministic, per request; see docs/architecture.md):

    latency_ms = wait_ms + service_ms
    wait_ms    = max_wait_ms * U1                  (where the request fell in the batching window)
    service_ms = (base_ms + us_per_candidate * C / 1000) * exp(jitter_sigma * Z - jitter_sigma^2 / 2)

with ``U1``, ``Z`` drawn from the ``serving/latency`` stream keyed by request id (common to
the arms), ``C`` the number of candidates and ``us_per_candidate`` the policy's service cost
(``Policy.service_us_per_candidate``; scoring throughput measured by ``scripts/bench_neural.py``,
recorded in docs/benchmarks.md).  The user sees the slate ``latency_ms`` after sending the request; a
request slower than ``abandon_after_ms`` is abandoned (logged, no exposures).  The measured
CPU time of each call is kept per arm (``compute_s`` in the manifest) to compare the model
with the machine.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from simab.engine.retrieval import user_contexts
from simab.policies.packing import packed_batches
from simab.policies.runtime import keep_heap
from simab.policies.world_features import GROUP_RINGS, FeatureBuilder, Snapshot
from simab.simulators import rng, streams
from simab.simulators.oracle import Response
from simab.simulators.streams import Stream
from simab.simulators.world import World

#: Service cost per candidate (microseconds) of a policy that does not declare one.
DEFAULT_US_PER_CANDIDATE = 1.0
#: Requests per scoring call of a neural policy that does not declare its own (``serve_batch``).
DEFAULT_SERVE_BATCH = 64


class Requests(NamedTuple):
    """The requests of one serving call, one entry per request (users distinct)."""

    rows: np.ndarray  # [B] the users' rows in the shard's state
    sessions: np.ndarray  # [B] each user's session number
    rids: np.ndarray  # [B] request ids
    scenarios: np.ndarray  # [B] scenario index (scenarios of one call share candidates and slate size)
    t: np.ndarray  # [B] serving time (s)
    query_cat: np.ndarray  # [B] search's category (-1 elsewhere)
    query_shop: np.ndarray  # [B] shop visit's shop (-1 elsewhere)
    latency_ms: np.ndarray  # [B] the latency model's latency of each request


class Outcome(NamedTuple):
    """What the users of one served batch see and do: slates [B, K] and their responses
    (all False / 0 for abandoned requests)."""

    items: np.ndarray
    clicked: np.ndarray
    converted: np.ndarray
    delay_s: np.ndarray
    dwell_s: np.ndarray
    abandoned: np.ndarray  # [B] bool


class ExposureRows(NamedTuple):
    """The exposure log rows of one served batch: every request's slate [B, K], with
    ``keep`` False where the request was abandoned (those rows are not logged)."""

    scenarios: np.ndarray  # [B]
    rows: np.ndarray  # [B] state rows
    sessions: np.ndarray  # [B]
    rids: np.ndarray  # [B]
    t: np.ndarray  # [B]
    slate: np.ndarray  # [B, K] items
    scores: np.ndarray  # [B, K] the policy's scores of the slate's items
    response: Response  # [B, K] the world's response to the slate
    propensity: np.ndarray  # [B, K]
    keep: np.ndarray  # [B] bool


class RequestRows(NamedTuple):
    """The request log rows of one served batch (abandoned requests included)."""

    scenarios: np.ndarray  # [B]
    rows: np.ndarray  # [B]
    sessions: np.ndarray  # [B]
    rids: np.ndarray  # [B]
    t: np.ndarray  # [B]
    n_candidates: int
    latency_ms: np.ndarray  # [B]
    batch_size: int


class Served(NamedTuple):
    """What :meth:`Server.serve` returns: the users' outcome, the log rows, and the
    candidates [B, C] the slates were drawn from (for off-policy recording)."""

    outcome: Outcome
    exposures: ExposureRows
    requests: RequestRows
    candidates: np.ndarray


def policy_uniform_key(world: World, arm: str) -> np.ndarray:
    """The stream key of the uniforms a stochastic policy of ``arm`` draws its slates from."""
    return rng.stream_key(world.seed, world.stream(Stream.POLICY_UNIFORMS.of(arm)))


class LatencyModel:
    """The deterministic latency of each request of one arm (module docstring)."""

    def __init__(self, world, serving, policy):
        self.max_wait_ms = float(serving.max_wait_ms)
        self.base_ms = float(serving.base_ms)
        self.sigma = float(serving.jitter_sigma)
        self.us_per_candidate = float(getattr(policy, "service_us_per_candidate", DEFAULT_US_PER_CANDIDATE))
        self.key = rng.stream_key(world.seed, world.stream(Stream.SERVING_LATENCY))

    def latency_ms(self, rids: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
        c_wait, c_jitter = streams.LATENCY_WAIT, streams.LATENCY_JITTER
        wait = self.max_wait_ms * rng.uniform(self.key, rids, c_wait)
        z = rng.normal(self.key, rids, c_jitter)
        service = (self.base_ms + self.us_per_candidate * np.asarray(n_candidates, np.float64) / 1000.0)
        return wait + service * np.exp(self.sigma * z - 0.5 * self.sigma**2)


class Server:
    """The ranking service of one arm.  :meth:`serve` takes a batch of requests and the
    users' state (read, never written) and returns the outcome and the log rows; the
    shard logs them and applies the exposures to the state.  Its collaborators (the
    world, the retriever, the feature builder) come in through the constructor."""

    def __init__(self, world: World, arm: str, policy, serving, retriever, builder: FeatureBuilder):
        self.world, self.arm, self.policy = world, arm, policy
        self.retriever, self.builder = retriever, builder
        self.chunk = int(serving.max_batch or getattr(policy, "serve_batch", DEFAULT_SERVE_BATCH))
        self.abandon_after_ms = serving.abandon_after_ms
        self.latency = LatencyModel(world, serving, policy)
        self.groups = tuple(policy.feature_groups)
        self.rings = tuple(dict.fromkeys(GROUP_RINGS[g] for g in self.groups if g in GROUP_RINGS))
        self.ukey = policy_uniform_key(world, arm)
        self.neural = hasattr(policy, "parameters")
        if self.neural:
            policy.eval()  # served, never trained here: no mode switches per call
            keep_heap()  # the scoring temporaries are reused, not page-faulted afresh each call
            device = getattr(serving, "device", "cpu")
            if device != "cpu":  # batches are built on the CPU and moved per call (NeuralPolicy.to_device)
                from simab.policies.trainer import resolve_device

                policy.to(resolve_device(device, key="serving.device"))
        self.surface_of_scenario = np.array(world.chain.surfaces)
        # CPU seconds (the shard runs on one thread; CPU time is what other jobs on a shared
        # machine disturb least): whole serving calls (retrieval, features, scores, slates,
        # responses), and within them the batched scoring (feature snapshots and batches,
        # packing, policy scores)
        self.compute_s = 0.0
        self.score_s = 0.0
        self.calls = 0

    def _scores(self, batch: dict) -> np.ndarray:
        """Scores [B, C]; neural policies in packed parts of at most ``chunk`` requests
        (:func:`~simab.policies.packing.packed_batches`: sorted by history length, each
        part's sequences cut to its longest real history)."""
        if not self.neural:
            return self.policy.score(batch).numpy()
        out = None
        for rows, part in packed_batches(batch, self.chunk):
            s = self.policy.score(part).numpy()
            if out is None:
                out = np.empty((next(iter(batch.values())).shape[0], s.shape[1]), s.dtype)
            out[rows] = s
        return out

    def serve(self, req: Requests, state, available=None) -> Served:
        """Serve ``req`` (users at ``state`` rows ``req.rows``): retrieval, features, scores,
        slates, the world's responses.  ``available``: the market's serving index for these
        requests (``simab.simulators.market.Availability``; None without a market):
        unavailable items are never candidates."""
        w = self.world
        st = state
        rows, rids, t = req.rows, req.rids, req.t
        B = len(rows)
        sc = np.asarray(req.scenarios, np.int64)
        spec = w.spec.scenarios[w.scenario_names[int(sc[0])]]
        n_cand = spec.n_candidates
        t0 = time.process_time()
        ctx = user_contexts(st, rows)
        cand = np.empty((B, n_cand), np.int64)
        surfaces = self.surface_of_scenario[sc]
        for surface in np.unique(surfaces):  # retrieval differs by surface
            m = surfaces == surface
            cand[m] = self.retriever.candidates_batch(str(surface), n_cand, rids[m], req.query_cat[m],
                                                      req.query_shop[m], ctx[m],
                                                      None if available is None else available.rows(m))
        C = cand.shape[1]
        K = min(spec.slate_size, C)
        users = st.users
        intent = st.intent(rows, t)
        u = st.u[rows]
        p_click_top = None
        if "oracle" in self.groups:
            pen = st.penalty(rows, w.catalog.category[cand], t)
            p_click_top, _, _ = w.oracle.probabilities(
                u, intent, sc, cand, np.zeros((B, C)), pen, users.price_sensitivity[rows],
                users.conversion_propensity[rows], users.click_bias[rows], users.profile[rows])
        t_score = time.process_time()
        snap = Snapshot.from_state(st, rows, t, sc, self.rings)
        batch = self.builder.build(snap, cand, self.groups, p_click=p_click_top)
        scores = self._scores(batch)
        self.score_s += time.process_time() - t_score
        if getattr(self.policy, "stochastic", False):
            uniforms = rng.uniform(self.ukey, rids[:, None], streams.policy_uniform_counters(C)[None, :])
            idx, prop = self.policy.slate(batch, K, uniforms)
        else:  # deterministic top-K; ties broken by candidate order
            idx = np.argsort(-scores, axis=1, kind="stable")[:, :K]
            prop = np.ones(idx.shape)
        slate = np.take_along_axis(cand, idx, axis=1)
        slate_scores = np.take_along_axis(scores, idx, axis=1)
        abandoned = (req.latency_ms > self.abandon_after_ms if self.abandon_after_ms is not None
                     else np.zeros(B, bool))
        pen = st.penalty(rows, w.catalog.category[slate], t)
        resp = w.oracle.respond(rids, u, intent, sc, slate, pen, users.price_sensitivity[rows],
                                users.conversion_propensity[rows], users.click_bias[rows], users.profile[rows])
        keep = ~abandoned
        self.compute_s += time.process_time() - t0
        self.calls += 1
        outcome = Outcome(slate, resp.clicked & keep[:, None], resp.converted & keep[:, None],
                          resp.delay_s, np.where(keep[:, None], resp.dwell_s, 0.0), abandoned)
        exposures = ExposureRows(sc, rows, req.sessions, rids, t, slate, slate_scores, resp, prop, keep)
        requests = RequestRows(sc, rows, req.sessions, rids, t, C, req.latency_ms, B)
        return Served(outcome, exposures, requests, cand)
