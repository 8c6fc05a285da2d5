"""Ground truth of a campaign.

- **Counterfactual (default)**: each arm's expected metric values over *all* the campaign's
  users had every one of them been in that arm — the population quantity the A/B test
  estimates.  Every user is simulated under each arm with common random numbers (a user's
  draws are keyed by user, session and step, never by arm or by other users), and each
  world's true probabilities are summed.
- **Realised group** (``source = "oracle"`` rows, always written): each arm's expected values
  from the true probabilities on its *own* users' exposures — a sample quantity that moves
  with the randomisation; the report shows it but never judges a CI against it.

Cost (docs/benchmarks.md).  Under ``unit = "user"`` a user's trajectory in its own arm is the
same in the campaign as in that arm's counterfactual world (no interference between users,
common random numbers; ``tests/simab/run/test_truth.py`` checks it against full worlds), so
the counterfactual world of arm A reuses the campaign's exposures of A's users who were in A
from the start, and simulates only the others.  Arms with the same policy share one world.
The counterfactual passes of a shard run in the campaign's shard job, after its campaign,
sharing the world, the policies and the plan; they keep only the truth sums (``TruthLogs``:
no event-log rows are built).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simab.engine.serving import ExposureRows
from simab.errors import SimabError
from simab.eventlog import part_path, read_table

TRUTH_SCHEMA = pa.schema([("arm", pa.string()), ("metric", pa.string()), ("value", pa.float64()), ("source", pa.string())])
TRUTH_COLUMNS = ["arm", "p_click", "p_convert", "expected_dwell_s"]
#: the sums one world's truth is made of: exposures, Σp_click, Σp_click·p_convert, Σp_click·E[dwell], users
N_SUMS = 5


def _exposure_sums(t: pa.Table) -> np.ndarray:
    """[exposures, Σp_click, Σp_click·p_convert, Σp_click·E[dwell], 0] of an exposures table."""
    if t.num_rows == 0:
        return np.zeros(N_SUMS)
    pcl = t.column("p_click").to_numpy()
    return np.array([t.num_rows, pcl.sum(), (pcl * t.column("p_convert").to_numpy()).sum(),
                     (pcl * t.column("expected_dwell_s").to_numpy()).sum(), 0.0])


def truth_rows(sums: dict[str, np.ndarray], source: str) -> list[dict]:
    """truth.parquet rows of the metrics whose truth ``source`` can report, from each arm's
    sums; each metric's formula lives in the metric registry."""
    from simab.reports.metric_registry import TruthSums, truth_values

    rows = []
    for arm, a in sums.items():
        if a[0] == 0:
            continue
        ts = TruthSums(exposures=int(a[0]), users=int(a[4]), p_click=float(a[1]), p_click_convert=float(a[2]),
                       p_click_dwell=float(a[3]))
        rows += [{"arm": arm, "metric": m, "value": v, "source": source} for m, v in truth_values(ts, source).items()]
    return rows


def oracle_truth(exposures: pa.Table | Iterable[pa.Table], users_per_arm: dict[str, int],
                 source: str = "oracle") -> list[dict]:
    """Expected metric values per arm from the logged true probabilities.  ``exposures``
    is a table or an iterable of tables (a run's parts, one at a time: memory stays that of
    one part); sums are added part by part."""
    parts = [exposures] if isinstance(exposures, pa.Table) else exposures
    acc = {arm: np.zeros(N_SUMS) for arm in users_per_arm}
    for part in parts:
        arm_col = part.column("arm").combine_chunks().cast(pa.string())
        for arm, a in acc.items():
            a += _exposure_sums(part.filter(pc.equal(arm_col, arm)))
    for arm, a in acc.items():
        a[4] = users_per_arm[arm]
    return truth_rows(acc, source)


def exposure_parts(run_dir: Path, rows: int = 1 << 20) -> Iterator[pa.Table]:
    """The columns of the truth from the exposures parts of a run folder, ``rows`` at a time
    (memory stays bounded at any campaign size)."""
    for path in sorted((Path(run_dir) / "exposures").glob("shard-*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=TRUTH_COLUMNS):
            yield pa.Table.from_batches([batch])


def users_per_arm(run_dir: Path, arms: list[str]) -> dict[str, int]:
    """Users the run exposed, per arm (from its ``assignments`` table)."""
    a = read_table(run_dir, "assignments", ["arm"])
    col = a.column("arm").combine_chunks().cast(pa.string()).to_pylist() if a.num_rows else []
    return {arm: col.count(arm) for arm in arms}


def write_truth(rows: list[dict], path: Path) -> None:
    """``truth.parquet``: one row per (arm, metric, source)."""
    pq.write_table(pa.Table.from_pylist(rows, schema=TRUTH_SCHEMA), path)


# --------------------------------------------------------------------------- counterfactual
def world_groups(arms: list[str], policies: dict[str, dict]) -> dict[str, list[str]]:
    """Representative arm -> the arms whose policy is the same (one counterfactual world)."""
    groups: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for a in arms:
        key = json.dumps(policies[a], sort_keys=True, default=str)
        rep = seen.setdefault(key, a)
        groups.setdefault(rep, []).append(a)
    return groups


class TruthLogs:
    """The logs of a counterfactual pass: the engine hands it every served batch, scene and
    request as it would to :class:`simab.engine.shard.ShardLogs`, and it keeps only the truth
    sums of the exposures, per arm (no rows, no tables: a pass costs the simulation alone)."""

    flush_rows = float("inf")

    def __init__(self, arms: list[str]):
        self.arms = arms
        self.sums = np.zeros((len(arms), N_SUMS))
        self.rows = 0
        self.exposure_rows = 0

    def exposures(self, arm: str, exp: ExposureRows) -> None:
        keep, resp = exp.keep, exp.response
        if not keep.any():
            return
        p = resp.p_click[keep]
        self.sums[self.arms.index(arm)] += (p.size, p.sum(), (p * resp.p_convert[keep]).sum(),
                                            (p * resp.expected_dwell_s[keep]).sum(), 0.0)

    def requests(self, *args) -> None:
        pass

    def moveline(self, *args) -> None:
        pass

    def drain(self) -> dict:
        return {}


def shard_counterfactual(spec, world, plan, policies: dict, job_policies: dict[str, dict], run_dir: Path) -> dict:
    """The counterfactual truth sums of one shard, per representative arm (``world_groups``),
    after its campaign ran and wrote its exposures part into ``run_dir``: the campaign's
    exposures of the users who were in the arm from the start, plus a simulation of every
    other (user, world) pair (module doc).  The pairs go into as few simulations as possible:
    pass j puts each user into the j-th world it still needs (users' trajectories do not
    depend on one another, so worlds can share a simulation, and its waves are larger).
    Returns {arm: [exposures, Σp, Σp·pcv, Σp·dwell, users]}."""
    from simab.engine.shard import ShardPlan

    arms = list(spec.arms)
    groups = world_groups(arms, job_policies)
    reps = list(groups)
    sums = {rep: np.zeros(N_SUMS) for rep in reps}
    n = len(plan.users)
    reusable = (plan.arm >= 0) & (plan.start <= plan.t_begin) if spec.unit == "user" else np.zeros(n, bool)
    group_of = {arms.index(a): r for r, (rep, group) in enumerate(groups.items()) for a in group}
    own = np.array([group_of.get(int(a), -1) for a in plan.arm]) if n else np.zeros(0, np.int64)
    own = np.where(reusable, own, -1)
    if reusable.any():
        path = part_path(Path(run_dir), "exposures", plan.shard)
        campaign = pq.read_table(path, columns=["user", *TRUTH_COLUMNS[1:]]) if path.exists() else None
        seen = read_table_part(Path(run_dir), plan.shard)
        for r, rep in enumerate(reps):
            mine = plan.users[own == r]
            if len(mine) and campaign is not None:
                sums[rep] += _exposure_sums(campaign.filter(pc.is_in(campaign["user"], value_set=pa.array(mine))))
                sums[rep][4] += int(np.isin(seen, mine).sum())
    # worlds each user still needs, in representative order: all but its own (if reused)
    needs = [[r for r in range(len(reps)) if r != own[u]] for u in range(n)]
    for j in range(max((len(x) for x in needs), default=0)):
        rows = np.array([u for u in range(n) if len(needs[u]) > j], dtype=np.int64)
        if not len(rows):
            continue
        arm_index = np.array([arms.index(reps[needs[u][j]]) for u in rows], dtype=np.int64)
        sub = ShardPlan(plan.shard, plan.users[rows], arm_index, np.full(len(rows), plan.t_begin),
                        plan.bucket[rows], plan.t_begin, plan.t_end)
        per_arm = world_sums(spec, world, sub, policies)
        for rep in reps:
            sums[rep] += per_arm[arms.index(rep)]
    return {rep: v.tolist() for rep, v in sums.items()}


def world_sums(spec, world, plan, policies: dict) -> np.ndarray:
    """Truth sums per arm [arms, 5] of ``plan``'s users, each in the arm ``plan.arm`` gives it
    (one counterfactual world, or parts of several), simulated without an event log."""
    from simab.engine.engines import make_simulation

    arms = list(spec.arms)
    logs = TruthLogs(arms)
    sim = make_simulation(spec.engine, world, plan, arms, policies, campaign=spec.name,
                          serving=spec.serving, unit="user", session_arm=None, logs=logs)
    sim.run()
    sums = logs.sums.copy()
    seen = ~np.isnan(sim.first_exposure)
    for a in range(len(arms)):
        sums[a, 4] += int((seen & (plan.arm == a)).sum())
    return sums


def read_table_part(run_dir: Path, shard: int) -> np.ndarray:
    """Users listed in one shard's ``assignments`` part (the users it exposed)."""
    path = part_path(run_dir, "assignments", shard)
    if not path.exists():
        return np.zeros(0, np.int64)
    return pq.read_table(path, columns=["user"]).column("user").to_numpy()


def campaign_truth(spec, run_dir: Path, manifest_shards: dict, policies: dict[str, dict]) -> list[dict]:
    """truth.parquet's rows: the realised-group rows of the run's own exposures and, with
    ``truth = "counterfactual"``, the counterfactual rows from the shards' sums."""
    arms = list(spec.arms)
    rows = oracle_truth(exposure_parts(run_dir), users_per_arm(run_dir, arms))
    from simab.run.design import counterfactual_passes

    if not counterfactual_passes(spec):  # no counterfactual truth, or interference (the global truth)
        return rows
    groups = world_groups(arms, policies)
    sums = {rep: np.zeros(N_SUMS) for rep in groups}
    for shard in range(spec.shards):
        entry = manifest_shards.get(str(shard)) or {}
        if "truth" not in entry:
            raise SimabError(f"shard {shard} has no counterfactual truth (a run by an older simab?); "
                             "run again without --resume", source=str(run_dir / "manifest.json"))
        for rep in groups:
            sums[rep] += np.asarray(entry["truth"][rep], dtype=float)
    per_arm = {a: sums[rep] for rep, group in groups.items() for a in group}
    return rows + truth_rows({a: per_arm[a] for a in arms}, "counterfactual")
