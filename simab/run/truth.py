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
    sums of the exposures (no rows, no tables: a pass costs the simulation alone)."""

    flush_rows = float("inf")

    def __init__(self):
        self.sums = np.zeros(N_SUMS)
        self.rows = 0
        self.exposure_rows = 0

    def exposures(self, arm, scenario, rows, sessions, rids, t, slate, scores, resp, prop, keep) -> None:
        if not keep.any():
            return
        p = resp.p_click[keep]
        self.sums += (p.size, p.sum(), (p * resp.p_convert[keep]).sum(), (p * resp.expected_dwell_s[keep]).sum(), 0.0)

    def requests(self, *args) -> None:
        pass

    def moveline(self, *args) -> None:
        pass

    def drain(self) -> dict:
        return {}


def shard_counterfactual(spec, world, plan, policies: dict, job_policies: dict[str, dict], run_dir: Path) -> dict:
    """The counterfactual truth sums of one shard, per representative arm (``world_groups``),
    after its campaign ran and wrote its exposures part into ``run_dir``: the campaign's
    exposures of the users who were in the arm from the start, plus a simulation of the
    others in that arm (module doc).  Returns {arm: [exposures, Σp, Σp·pcv, Σp·dwell, users]}."""
    from simab.engine.shard import ShardPlan

    arms = list(spec.arms)
    reuse_ok = spec.unit == "user"
    campaign = None
    if reuse_ok:
        path = part_path(Path(run_dir), "exposures", plan.shard)
        campaign = pq.read_table(path, columns=["user", *TRUTH_COLUMNS[1:]]) if path.exists() else None
        seen = read_table_part(Path(run_dir), plan.shard)
    out = {}
    for rep, group in world_groups(arms, job_policies).items():
        idx = [arms.index(a) for a in group]
        reused = np.isin(plan.arm, idx) & (plan.start <= plan.t_begin) if reuse_ok else np.zeros(len(plan.users), bool)
        sums = np.zeros(N_SUMS)
        if reused.any() and campaign is not None:
            mine = pa.array(plan.users[reused])
            sums += _exposure_sums(campaign.filter(pc.is_in(campaign["user"], value_set=mine)))
            sums[4] += int(np.isin(seen, plan.users[reused]).sum())
        rest = ~reused
        if rest.any():
            sub = ShardPlan(plan.shard, plan.users[rest], np.full(int(rest.sum()), arms.index(rep)),
                            np.full(int(rest.sum()), plan.t_begin), plan.bucket[rest], plan.t_begin, plan.t_end)
            sums += world_sums(spec, world, sub, policies)
        out[rep] = sums.tolist()
    return out


def world_sums(spec, world, plan, policies: dict) -> np.ndarray:
    """Truth sums of ``plan``'s users, each in the arm ``plan.arm`` gives it (a counterfactual
    world, or a part of one), simulated without an event log."""
    from simab.engine.engines import make_simulation

    sim = make_simulation(spec.engine, world, plan, list(spec.arms), policies, campaign=spec.name,
                          serving=spec.serving, unit="user", session_arm=None)
    sim.logs = logs = TruthLogs()
    sim.run()
    sums = logs.sums.copy()
    sums[4] += int((~np.isnan(sim.first_exposure)).sum())
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
    if spec.truth != "counterfactual":
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
