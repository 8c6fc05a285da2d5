"""Experiment designs: a shard's plan, ranking policies and market from the campaign's
``[design]`` (docs/interference.md).

``user``          users by hash (:mod:`simab.run.plan`); one pool of units per market, shared
                  by both arms.
``budget_split``  users by hash; each limited item's daily units split into one pool per arm
                  by the arms' shares, each arm seeing only its own pool (Liu et al.,
                  "Trustworthy Online Marketplace Experimentation with Budget-split Design",
                  KDD 2021).
``item``          item clusters (an item, its category, parent or shop) by hash; every user is
                  served by the :class:`~simab.policies.mixed.ItemSplitRanker`, each candidate
                  scored by its item's arm's policy (requests are logged under the treatment
                  arm; the analysis reads each exposure's item arm from ``items.parquet``).
``two_sided``     users by hash and item clusters by hash (``item_share`` of them treated); a
                  treatment user's slates are ranked by the ItemSplitRanker, a control user's by
                  the control policy: an interaction is treated when both sides are (Johari,
                  Li, Liskovich & Weintraub, Management Science 2022).
``switchback``    time blocks of ``block_hours`` from t = 0 by hash; every session takes the arm
                  of the block it starts in (Bojinov, Simchi-Levi & Zhao, "Design and Analysis
                  of Switchback Experiments", Management Science 2023).
``market``        whole markets (``world.market.n_markets``) by hash: cluster randomisation by
                  geography; no market holds both arms.

With several markets every market gets its own item split and its own block sequence (the
hash of the market and the cluster or block), so markets are independent replicates of the
design.  A world in which one arm serves everyone (``force_arm``: the global runs of
:mod:`simab.run.global_truth`, the counterfactual worlds) has no design: every user in that
arm from t = 0, the arm's own policy, one pool per market holding its full units.

Every assignment is a salted hash bucket (:mod:`simab.run.assignment`) of the user, of
(market, item cluster) with salt ``<salt>/items``, of (market, block) with ``<salt>/blocks``,
or of the market with ``<salt>/markets``, so it does not depend on the shard, the worker or
the order of work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from simab.run.assignment import Allocation, buckets
from simab.run.plan import plan_shard
from simab.simulators.catalog import Catalog
from simab.simulators.market import limited_items, market_of
from simab.simulators.streams import SESSION_BITS
from simab.simulators.units import DAY
from simab.simulators.world import World
from simab.spec import CampaignSpec

#: Designs whose units are not users: their analysis clusters by item cluster, time block or market.
CLUSTER_DESIGNS = ("item", "two_sided", "switchback", "market")


@dataclass
class ShardSetup:
    """What a shard simulation needs beyond the world: its plan, the policy each arm's
    service ranks with, the market and the pool each arm draws on."""

    plan: object  # simab.engine.shard.ShardPlan
    session_arm: Callable | None
    unit: str
    policies: dict
    market: object | None = None  # simab.simulators.market.Market
    market_pools: dict[str, int] = field(default_factory=dict)


def interference(spec: CampaignSpec) -> bool:
    """Whether the campaign needs the global truth: a market, or a design other than users."""
    return spec.world.market.enabled or spec.design.kind != "user"


def counterfactual_passes(spec: CampaignSpec) -> bool:
    """Whether the run's shards compute the counterfactual truth (run/truth.py): with
    ``truth = "counterfactual"`` and no interference (the passes assume none; under
    interference the global truth replaces them)."""
    return spec.truth == "counterfactual" and not interference(spec)


def interference_info(spec: CampaignSpec) -> dict:
    """run.json's ``interference`` table: the design and the market, as the analysis reads them."""
    market = spec.world.market
    return {"design": spec.design.model_dump(mode="json"), "market": market.model_dump(mode="json"),
            "truth": "global", "treatment": treatment_arm(spec) if len(spec.arms) == 2 else None}


def treatment_arm(spec: CampaignSpec) -> str:
    """The arm that is not the control (designs beyond ``user`` have two)."""
    return next(a for a in spec.arms if a != spec.control_arm)


def _salt(spec: CampaignSpec) -> str:
    return spec.salt or spec.name


def markets_of(spec: CampaignSpec, users: np.ndarray) -> np.ndarray:
    """Each user's market (0 for all without a market)."""
    m = spec.world.market
    return market_of(spec.seed, users, m.n_markets if m.enabled else 1)


def _units(markets: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Hash units of (market, id) pairs: ``market << 32 | id`` (market 0: the id itself)."""
    return (np.asarray(markets, np.int64) << 32) | np.asarray(ids, np.int64)


def item_clusters(catalog: Catalog, cluster: str) -> np.ndarray:
    """The cluster id of every item id: the item, its category, its parent category or its shop."""
    if cluster == "item":
        return np.arange(catalog.n_items, dtype=np.int64)
    if cluster == "category":
        return catalog.category.astype(np.int64)
    if cluster == "parent":
        return catalog.parent_of[catalog.category].astype(np.int64)
    return catalog.shop.astype(np.int64)  # shop (-1 for content items, which are never served)


def item_shares(spec: CampaignSpec) -> dict[str, float]:
    """The share of item clusters in each arm: the arms' shares (``item``) or ``item_share``
    treated (``two_sided``)."""
    if spec.design.kind == "two_sided":
        return {spec.control_arm: 1.0 - spec.design.item_share, treatment_arm(spec): spec.design.item_share}
    return {a: s.share for a, s in spec.arms.items()}


def item_arms(spec: CampaignSpec, catalog: Catalog, markets: np.ndarray) -> np.ndarray:
    """The arm index (into ``spec.arms``) of every item id in each of ``markets``: [M, items],
    by the hash of (market, the item's cluster)."""
    arms = list(spec.arms)
    clusters = item_clusters(catalog, spec.design.cluster)
    alloc = Allocation(arms, [(0.0, item_shares(spec))])
    out = np.empty((len(markets), len(clusters)), np.int64)
    for i, m in enumerate(markets):
        arm, _ = alloc.assign(buckets(f"{_salt(spec)}/items", _units(np.full(len(clusters), m), clusters)))
        out[i] = np.where(arm >= 0, arm, arms.index(spec.control_arm))  # (shares sum to 1: rounding only)
    return out


def block_arms(spec: CampaignSpec) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Switchback: the arm index of a session starting at ``t`` is its market's block's
    (``(sids, t) -> arm``, the signature of session-level assignment)."""
    alloc = Allocation(list(spec.arms), [(0.0, {a: s.share for a, s in spec.arms.items()})])
    block_s = spec.design.block_hours * DAY / 24.0
    key = f"{_salt(spec)}/blocks"

    def arm_of(sids: np.ndarray, t: np.ndarray) -> np.ndarray:
        block = np.floor(np.asarray(t, np.float64) / block_s).astype(np.int64)
        markets = markets_of(spec, np.asarray(sids, np.int64) >> SESSION_BITS)
        arm, _ = alloc.assign(buckets(key, _units(markets, block)))
        return np.where(arm >= 0, arm, 0)

    return arm_of


def market_arms(spec: CampaignSpec, markets: np.ndarray) -> np.ndarray:
    """Market randomisation: the arm index of each market (-1: in no arm)."""
    arm, _ = Allocation.from_spec(spec).assign(buckets(f"{_salt(spec)}/markets", markets))
    return arm


def shard_setup(spec: CampaignSpec, world: World, shard: int, force_arm: str | None, policies: dict) -> ShardSetup:
    """The plan, services' policies and market of one shard under the campaign's design."""
    from simab.engine.shard import ShardPlan

    kind = "user" if force_arm is not None else spec.design.kind
    arms = list(spec.arms)
    if kind == "switchback":
        plan, _ = plan_shard(spec, shard, arms[0])  # every user lives from t = 0; sessions take their block's arm
        setup = ShardSetup(plan, block_arms(spec), "session", dict(policies))
    else:
        plan, session_arm = plan_shard(spec, shard, force_arm)
        setup = ShardSetup(plan, session_arm, spec.unit, dict(policies))
    p = setup.plan
    markets = markets_of(spec, p.users)
    if kind == "market":
        setup.plan = ShardPlan(p.shard, p.users, market_arms(spec, markets), np.zeros(len(p.users)), p.bucket,
                               p.t_begin, p.t_end)
    if kind in ("item", "two_sided"):
        from simab.policies.mixed import item_split_ranker

        t = treatment_arm(spec)
        ids, local = np.unique(markets, return_inverse=True)
        treated = item_arms(spec, world.catalog, ids) == arms.index(t)
        group_of = None
        if len(ids) > 1:  # each market's own split: the request's user says which
            users = p.users

            def group_of(u: np.ndarray) -> np.ndarray:
                return local[np.searchsorted(users, u)]
        setup.policies[t] = item_split_ranker(policies[spec.control_arm], policies[t], treated, spec.design.merge,
                                              group_of)
        if kind == "item":  # every user sees the mixed slates
            setup.plan = ShardPlan(p.shard, p.users, np.full(len(p.users), arms.index(t)), np.zeros(len(p.users)),
                                   p.bucket, p.t_begin, p.t_end)
    if spec.world.market.enabled:
        from simab.simulators.market import Market

        if kind == "budget_split":
            total = sum(s.share for s in spec.arms.values())
            shares, names = [spec.arms[a].share / total for a in arms], arms
            setup.market_pools = {a: i for i, a in enumerate(arms)}
        else:
            shares, names = [1.0], ["shared"]
        setup.market = Market(spec.world.market, world.catalog, world.seed, markets, setup.plan.arm >= 0,
                              shares, names)
    return setup


ITEMS_SCHEMA = pa.schema([("market", pa.int64()), ("item", pa.int64()), ("category", pa.int32()),
                          ("cluster", pa.int64()), ("arm", pa.string()), ("limited", pa.bool_())])


def items_table(spec: CampaignSpec, world: World, markets: np.ndarray) -> pa.Table:
    """``items.parquet``: per market, every target item's category, design cluster, item arm
    (under ``item`` and ``two_sided``; otherwise null) and whether the market limits it."""
    c = world.catalog
    n = c.n_shop_items
    markets = np.asarray(markets, np.int64)
    arm = pa.nulls(n * len(markets), pa.string())
    if spec.design.kind in ("item", "two_sided"):
        names = np.array(list(spec.arms), object)
        arm = pa.array(names[item_arms(spec, c, np.maximum(markets, 0))[:, :n].reshape(-1)], pa.string())
    limited = np.zeros(n, bool)
    if spec.world.market.enabled:
        limited[limited_items(spec.world.market, c, world.seed)] = True
    M = len(markets)
    return pa.table({"market": np.repeat(markets, n), "item": np.tile(np.arange(n, dtype=np.int64), M),
                     "category": np.tile(c.category[:n].astype(np.int32), M),
                     "cluster": np.tile(item_clusters(c, spec.design.cluster)[:n], M), "arm": arm,
                     "limited": np.tile(limited, M)}, schema=ITEMS_SCHEMA)
