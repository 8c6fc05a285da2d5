"""Planning a campaign's work: which users it covers, how they are split into shards,
and each shard's plan (users, arms, entry times, and under ``unit = "session"`` the arm of
each session)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simab.run.assignment import Allocation, buckets
from simab.simulators import rng
from simab.simulators.streams import Stream
from simab.simulators.units import DAY
from simab.spec import CampaignSpec


@dataclass(frozen=True)
class ShardJob:
    spec_json: str
    run_dir: str
    shard: int
    policies: dict
    force_arm: str | None  # counterfactual world: every user in this arm
    subdir: str  # "" or "counterfactual/<arm>"
    counterfactual: bool = False  # after the campaign, the shard's counterfactual truth sums (run/truth.py)


def campaign_users(spec: CampaignSpec) -> np.ndarray:
    """Global ids of the users the campaign covers (the first ``users`` of the world)."""
    n = spec.users or spec.world.n_users
    return np.arange(min(n, spec.world.n_users), dtype=np.int64)


def shard_of(seed: int, users: np.ndarray, shards: int) -> np.ndarray:
    """The shard of each user: a hash of (seed, user), so shards are balanced whatever
    the id range and a user's shard does not depend on the other users."""
    return (rng.bits(rng.stream_key(seed, Stream.SHARDS), users) % np.uint64(shards)).astype(np.int64)


def campaign_shard_of(spec: CampaignSpec, users: np.ndarray) -> np.ndarray:
    """The shard of each campaign user: :func:`shard_of` the user, or with a market
    (``world.market``) its market's number modulo the shards, since a market couples its
    users and a shard holds whole markets (markets are hashed from users already, so their
    numbers spread the users evenly)."""
    market = spec.world.market
    if market.enabled:
        from simab.simulators.market import market_of

        return market_of(spec.seed, users, market.n_markets) % spec.shards
    return shard_of(spec.seed, users, spec.shards)


def session_arms(spec: CampaignSpec) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Under ``unit = "session"``: the arm index of each session ``sids`` starting at times
    ``t`` (s), or -1 where its bucket is in no arm at that time (outside every share, or in
    a block a ramp has not opened yet): such a session is unassigned and not simulated, as
    a user outside every arm is under ``unit = "user"``."""
    alloc, salt = Allocation.from_spec(spec), spec.salt or spec.name

    def arm_of(sids: np.ndarray, t: np.ndarray) -> np.ndarray:
        arm, start = alloc.assign(buckets(salt, np.asarray(sids, np.int64)))
        return np.where((arm >= 0) & (start <= t), arm, -1)

    return arm_of


def plan_shard(spec: CampaignSpec, shard: int, force_arm: str | None = None):
    """(``ShardPlan``, session arm function or None) of shard ``shard``; ``force_arm``
    puts every user in one arm from t = 0 (a counterfactual world)."""
    from simab.engine.shard import ShardPlan

    users = campaign_users(spec)
    mine = users[campaign_shard_of(spec, users) == shard]
    arms = list(spec.arms)
    b = buckets(spec.salt or spec.name, mine)
    t_end = spec.duration_days * DAY
    if force_arm is not None:
        return ShardPlan(shard, mine, np.full(len(mine), arms.index(force_arm)), np.zeros(len(mine)), b, 0.0, t_end), None
    if spec.unit == "session":
        # every user lives from t = 0; each session is assigned on its own
        return ShardPlan(shard, mine, np.zeros(len(mine), np.int64), np.zeros(len(mine)), b, 0.0, t_end), session_arms(spec)
    arm, start = Allocation.from_spec(spec).assign(b)
    return ShardPlan(shard, mine, arm, start, b, 0.0, t_end), None
