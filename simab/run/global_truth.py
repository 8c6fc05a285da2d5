"""The global treatment effect (GTE) as truth: the whole market under each arm.

With interference (a market whose units every arm shares, or a design whose slates mix the
arms) one user's arm changes another's outcome, so "the true lift" must say which lift.  The
estimand interference breaks is the *global* effect: the market with everyone in control
against the market with everyone in treatment, shared units included.  simab runs both worlds:
every shard again with every user in one arm (``force_arm``: :func:`simab.run.design.shard_setup`
then ignores the design and gives each market one pool with its full units), written to
``global/<arm>/`` like a campaign, and each world's expected metric values are summed from the
true probabilities logged with its exposures.  They are the ``source = "global"`` rows of
``truth.parquet``; the report judges every design's interval against them.

Beside them the report shows the *in-experiment* truth: each design arm's expected values on
its own exposures in the experiment (from the same logged true probabilities,
:mod:`simab.reports.designs`), the quantity the experiment's comparison targets.  The gap
between the two is the interference bias of the design (docs/interference.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simab.eventlog import PART_TABLES, TABLES, Manifest, read_table
from simab.run.design import items_table, markets_of
from simab.run.executor import Executor
from simab.run.plan import ShardJob, campaign_users
from simab.run.shards import execute
from simab.run.truth import exposure_parts, oracle_truth
from simab.simulators.world import World
from simab.spec import CampaignSpec

SOURCE = "global"


def global_truth(spec: CampaignSpec, run_dir: Path, policies: dict, executor: Executor,
                 resume: bool = False) -> list[dict]:
    """truth.parquet rows (``source = "global"``) of the worlds in which each arm serves the
    whole market; the worlds' event logs go to ``run_dir/global/<arm>/``."""
    spec_json = spec.model_dump_json()
    rows: list[dict] = []
    for arm in spec.arms:
        sub = f"global/{arm}"  # a child of the run's record, with a campaign record of its own
        (Path(run_dir) / sub).mkdir(parents=True, exist_ok=True)
        manifest = Manifest(Path(run_dir) / sub)
        manifest.plan_parts(PART_TABLES if spec.world.market.enabled else TABLES, spec.shards)
        jobs = [ShardJob(spec_json, str(run_dir), s, policies, arm, sub) for s in range(spec.shards)]
        jobs = [j for j in jobs if not (resume and manifest.complete(j.shard))]
        for j in jobs:
            manifest.drop(j.shard)
        manifest.save()
        execute(jobs, executor, f"global all-{arm}", manifest)
        manifest.save()
        n_users = read_table(Path(run_dir) / sub, "assignments", ["user"]).num_rows
        # a global world knows what a counterfactual replay knows (exposures per user included)
        for row in oracle_truth(exposure_parts(Path(run_dir) / sub), {arm: n_users}, source="counterfactual"):
            rows.append({**row, "source": SOURCE})
    return rows


def write_items(spec: CampaignSpec, world: World, run_dir: Path) -> list[str]:
    """``items.parquet``: the design's item clusters and arms (per market under item-side
    designs) and the market's limited items; with several markets ``markets.parquet``, each
    user's market: for the analysis (:mod:`simab.reports.design_run`).  Returns the names
    written (for the run's record)."""
    if spec.design.kind in ("item", "two_sided"):
        markets = np.unique(markets_of(spec, campaign_users(spec)))
    else:
        markets = np.array([-1])  # the same in every market
    pq.write_table(items_table(spec, world, markets), Path(run_dir) / "items.parquet")
    written = ["items.parquet"]
    if spec.world.market.n_markets > 1:  # each user's market: the analysis' clusters
        users = campaign_users(spec)
        pq.write_table(pa.table({"user": users, "market": markets_of(spec, users)}), Path(run_dir) / "markets.parquet")
        written.append("markets.parquet")
    return written
