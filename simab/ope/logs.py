"""The log off-policy evaluation reads: a pre-period in which a stochastic logging policy
serves the world, and, for each of its requests, what the target policies would have shown
and what that was truly worth.

The logging run is the pre-period's own simulation (``preperiod.logging_simulation``: same
phase, users, days and shards) with the logging policy in an opt-in ``mode``; the cached
pre-period that trains the arms is not touched.  While it runs, the ranking service hands
every request to :class:`OpeRecorder` before the slate is drawn (the user state is then the
one the request is served in), which records:

- each target policy's deterministic top-K over the request's candidates, scored on the
  same feature snapshot the logged request carries (what replaying the policy on the
  logged features gives, without storing the candidates and snapshots);
- the true value of those slates from the oracle: P(click) of item ``a`` at position ``k`` is
  ``examination(k) * attraction(a)`` with the attraction at the request's state, and
  P(conversion) multiplies by P(convert | click); so the truth is exact for the logged
  requests;
- the logging policy's slate, replayed from the same request-keyed uniforms the service
  draws it from (``collect`` checks it is the logged one), and the logger's marginal
  propensity of each of its (item, position): ``1 / C`` under ``uniform``, exact under
  ``epsilon``, a Monte-Carlo estimate under ``plackett_luce`` (``simab.ope.marginal``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simab.engine.serving import policy_uniform_key
from simab.errors import SimabError
from simab.ope.marginal import MC_DRAWS, epsilon_marginal, plackett_luce_marginal
from simab.policies.world_features import GROUP_RINGS, FeatureBuilder, Snapshot
from simab.progress import progress
from simab.run.preperiod import (
    logging_policy,
    logging_simulation,
    pre_period_shards,
    pre_period_users,
)
from simab.simulators import rng, streams
from simab.simulators.streams import Stream
from simab.simulators.world import World

#: Logging modes whose marginal propensities ``simab ope`` computes (simab/ope/marginal.py).
OPE_LOGGING_MODES = ("uniform", "epsilon", "plackett_luce")
#: Requests a neural target policy scores at once (bounds the memory of a large wave).
SCORE_CHUNK = 256


class OpeRecorder:
    """Per request of a logging simulation: the target policies' slates and their truth
    (module docstring).  ``world``: the logging simulation's (pre-period phase);
    ``policies``: arm -> a deterministic ranking policy; ``logger``: the logging policy that
    serves arm ``logger_arm``."""

    def __init__(self, world: World, policies: dict, logger, logger_arm: str = "logging"):
        self.world, self.policies = world, policies
        self.builder = FeatureBuilder(world)
        self.logger, self.logger_key = logger, policy_uniform_key(world, logger_arm)
        self.mc_key = rng.stream_key(world.seed, world.stream(Stream.OPE_MARGINAL.of(logger_arm)))
        self.parts: list[dict[str, np.ndarray]] = []

    def _batch(self, policy, state, rows, t, sc, cand, attraction) -> dict:
        groups = tuple(policy.feature_groups)
        rings = tuple(dict.fromkeys(GROUP_RINGS[g] for g in groups if g in GROUP_RINGS))
        snap = Snapshot.from_state(state, rows, t, sc, rings)
        return self.builder.build(snap, cand, groups, p_click=attraction if "oracle" in groups else None)

    def _logged(self, state, rows, rids, t, sc, cand, attraction, K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The logger's slate [B, K] (candidate indices) from the uniforms the service draws
        it from, each pick's marginal propensity and its Monte-Carlo standard error (0 where
        exact)."""
        B, C = cand.shape
        batch = self._batch(self.logger, state, rows, t, sc, cand, attraction)
        uniforms = rng.uniform(self.logger_key, rids[:, None], streams.policy_uniform_counters(C)[None, :])
        idx, _ = self.logger.slate(batch, K, uniforms)
        mode = self.logger.params["mode"]
        se = np.zeros((B, K))
        if mode == "uniform":
            marginal = np.full((B, K), 1.0 / C)
        elif mode == "epsilon":
            marginal = epsilon_marginal(batch["item_pop"].numpy(), idx, self.logger.params["epsilon"])
        else:
            logits = batch["item_pop"].numpy().astype(np.float64) / self.logger.params["temperature"]
            mc = rng.uniform(self.mc_key, rids[:, None], np.arange(MC_DRAWS * C)[None, :])
            marginal, se = plackett_luce_marginal(logits, idx, mc)
        return idx, marginal, se

    def _scores(self, policy, state, rows, t, sc, cand, attraction) -> np.ndarray:
        batch = self._batch(policy, state, rows, t, sc, cand, attraction)
        if not hasattr(policy, "parameters"):
            return policy.score(batch).numpy()
        import torch

        B = len(rows)
        with torch.inference_mode():  # in chunks: a wave may hold thousands of requests x C candidates
            return np.concatenate([policy.score({k: v[lo:lo + SCORE_CHUNK] for k, v in batch.items()}).numpy()
                                   for lo in range(0, B, SCORE_CHUNK)])

    def record(self, state, rows: np.ndarray, rids: np.ndarray, sc: np.ndarray, t: np.ndarray, cand: np.ndarray,
               K: int) -> None:
        """One served batch (requests of one slate size ``K``, users at ``state`` rows
        ``rows``), before the state changes."""
        w, st = self.world, state
        users = st.users
        B, C = cand.shape
        pen = st.penalty(rows, w.catalog.category[cand], t)
        attraction, p_convert, _ = w.oracle.probabilities(
            st.u[rows], st.intent(rows, t), sc, cand, np.zeros((B, C)), pen, users.price_sensitivity[rows],
            users.conversion_propensity[rows], users.click_bias[rows], users.profile[rows])
        exam = w.oracle.examination(sc, np.broadcast_to(np.arange(K), (B, K)))
        part = {"request": np.repeat(rids, K), "user": np.repeat(users.ids[rows], K),
                "scenario": np.repeat(sc, K), "position": np.tile(np.arange(K), B),
                "n_candidates": np.full(B * K, C), "examination": exam.reshape(-1)}
        idx, marginal, se = self._logged(state, rows, rids, t, sc, cand, attraction, K)
        part["replayed_item"] = np.take_along_axis(cand, idx, axis=1).reshape(-1)
        part["marginal_propensity"] = marginal.reshape(-1)
        part["marginal_se"] = se.reshape(-1)
        for arm, policy in self.policies.items():
            idx = np.argsort(-self._scores(policy, state, rows, t, sc, cand, attraction), axis=1, kind="stable")[:, :K]
            a = np.take_along_axis(attraction, idx, axis=1)
            cv = np.take_along_axis(p_convert, idx, axis=1)
            part[f"item/{arm}"] = np.take_along_axis(cand, idx, axis=1).reshape(-1)
            part[f"true_ctr/{arm}"] = (exam * a).reshape(-1)
            part[f"true_ctcvr/{arm}"] = (exam * a * cv).reshape(-1)
        self.parts.append(part)

    def table(self) -> pa.Table:
        if not self.parts:
            raise SimabError("the logging run served no request; raise world.n_users or world.pre_period_days")
        cols = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        order = np.lexsort((cols["position"], cols["request"]))
        return pa.table({k: v[order] for k, v in cols.items()})


@dataclass(frozen=True)
class OpeLog:
    """One row per logged exposure: the logged item, its rewards and marginal propensity,
    each target arm's item at that (request, position) and its true values."""

    table: pa.Table
    arms: tuple[str, ...]


def collect(world: World, policies: dict, mode: str = "uniform", temperature: float = 1.0) -> OpeLog:
    """Run the logging policy in ``mode`` (``temperature``: Plackett-Luce's) over the
    pre-period's users and days, shard by shard, recording the target ``policies``' slates
    and truth and the logger's marginal propensities; returns the joined log."""
    if mode not in OPE_LOGGING_MODES:
        raise SimabError(f"logging mode {mode!r} is not one of {list(OPE_LOGGING_MODES)}", source="--logging")
    logging = {"mode": mode, "temperature": temperature} if mode == "plackett_luce" else {"mode": mode}
    shards = pre_period_shards(world.spec.n_users)
    pre = world.with_phase("preperiod")  # the logging simulation's world
    tables = []
    for s in range(shards):
        users = pre_period_users(world, s, shards)
        if len(users) == 0:
            continue
        rec = OpeRecorder(pre, policies, logging_policy(pre, logging))
        sim = logging_simulation(world, users, world.spec.pre_period_days, s, logging=logging, ope_recorder=rec)
        sim.run()
        exp = sim.tables()["exposures"].sort_by([("request", "ascending"), ("position", "ascending")])
        if exp.num_rows == 0:
            continue
        rt = rec.table()
        for col in ("request", "position"):
            if not np.array_equal(exp.column(col).to_numpy(), rt.column(col).to_numpy().astype(exp.column(col).type.to_pandas_dtype())):
                raise RuntimeError(f"ope log: recorded requests differ from the logged exposures ({col})")
        if not np.array_equal(exp.column("item").to_numpy(), rt.column("replayed_item").to_numpy()):
            raise RuntimeError("ope log: the replayed logging slates differ from the logged ones")
        joined = rt.drop_columns(["replayed_item"])
        for col in ("item", "clicked", "converted", "p_click", "p_convert", "propensity"):
            joined = joined.append_column(f"logged_{col}" if col in ("item", "propensity") else col, exp.column(col))
        tables.append(joined)
        progress(f"  ope logging shard {s + 1}/{shards}: {exp.num_rows:,} exposures")
    if not tables:
        raise SimabError("the logging run served no request; raise world.n_users or world.pre_period_days")
    return OpeLog(pa.concat_tables(tables), tuple(policies))
