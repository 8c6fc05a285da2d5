"""The pre-period's feature snapshots: recorded per served batch, columnar, they are the
same table as snapshots taken through the policies' ``Snapshot.from_state`` and laid out
by the generic ``ColumnBuffer`` (ids and copied timestamps: compared exactly)."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from simab.eventlog import ColumnBuffer
from simab.policies.world_features import SNAPSHOT_FIELDS, Snapshot
from simab.run.preperiod import logging_simulation, pre_period
from simab.simulators.spec import world_spec
from simab.simulators.state import Ring
from simab.simulators.world import World


def _world(n_users: int, days: float, preset: str = "default") -> World:
    return World.build(world_spec({"preset": preset, "n_users": n_users, "pre_period_days": days}), seed=7)


def _with_snapshot_reference(sim) -> ColumnBuffer:
    """Make ``sim`` also record every served batch's snapshot through ``Snapshot.from_state``
    into a ``ColumnBuffer`` (the generic path), at the same moment as its own log does."""
    logs, state = sim.logs, sim.state
    ref = ColumnBuffer("features", logs.features_schema)
    own = logs._features

    def both(rows, rids):
        # time and scenario do not enter the features table
        snap = Snapshot.from_state(state, rows, np.zeros(len(rows)), np.zeros(len(rows), np.int64))
        cols = {f: snap.arrays[f] for f in SNAPSHOT_FIELDS}
        cols.update({f"{r}_len": snap.masks[r].sum(axis=1) for r in ("seq", "ais", "moveline")})
        ref.append(request=np.asarray(rids, np.int64), **cols)
        own(rows, rids)

    logs._features = both
    return ref


@pytest.mark.parametrize("preset", ["default", "lifelong"])
def test_features_table_equals_the_snapshot_path(preset):
    world = _world(60, 1.0, preset)
    users = np.arange(60, dtype=np.int64)
    sim = logging_simulation(world, users, 1.0)
    ref = _with_snapshot_reference(sim)
    sim.run()
    feats = sim.tables()["features"]
    expected = ref.to_table().sort_by([("request", "ascending")])
    assert feats.num_rows > 0
    assert feats.equals(expected, check_metadata=True)
    # the world exercised both layouts: rings still filling (zero padding on the left) and
    # rings that wrapped around (the oldest entry not in slot 0)
    ml_len = feats.column("moveline_len").to_numpy()
    assert (ml_len < world.spec.moveline_len).any() and (ml_len == world.spec.moveline_len).any()
    assert (sim.state.moveline.count > world.spec.moveline_len).any()


def test_features_of_the_wave_and_reference_engines_are_identical():
    """The reference engine serves each request alone (batches of one)."""
    world = _world(20, 0.3)
    users = np.arange(20, dtype=np.int64)
    tables = []
    for engine in ("wave", "reference"):
        sim = logging_simulation(world, users, 0.3, engine=engine)
        sim.run()
        tables.append(sim.tables())
    assert tables[0]["features"].num_rows > 0
    assert tables[0]["features"].equals(tables[1]["features"], check_metadata=True)


def test_pre_period_features_part_has_one_row_per_request_in_order(tmp_path):
    world = _world(40, 0.5)
    folder = pre_period(world, tmp_path, shards=2)
    for s in range(2):
        f = pq.read_table(folder / f"features-{s:03d}.parquet")
        e = pq.read_table(folder / f"exposures-{s:03d}.parquet", columns=["request"])
        req = f.column("request").to_numpy()
        assert len(req) > 0 and (np.diff(req) > 0).all()
        # the pre-period serves with no abandonment: every request's slate is logged
        assert np.array_equal(req, np.unique(e.column("request").to_numpy()))
        assert f.schema.metadata[b"simab_table"] == b"features"


def test_ring_gather_as_is_gather_of_the_named_fields():
    L = 5
    ring = Ring(6, L, {"item": np.int64, "ts": np.float64})
    # rows pushed 0, 2, 5, 7, 12 and 13 times: empty, partly filled, full, wrapped
    for row, k in enumerate((0, 2, 5, 7, 12, 13)):
        ring.push_rows(np.full(k, row), item=np.arange(k) + 100 * row, ts=-(np.arange(k) + 0.5))
    rows = np.array([5, 0, 3, 1, 4, 2, 3])
    full, mask = ring.gather(rows)
    part, n = ring.gather_as(rows, {"item": np.int32, "ts": np.float64})
    assert set(part) == {"item", "ts"} and part["item"].dtype == np.int32
    assert np.array_equal(part["item"], full["item"]) and np.array_equal(part["ts"], full["ts"])
    assert np.array_equal(n, mask.sum(axis=1))
    assert n.tolist() == [5, 0, 5, 2, 5, 5, 5]
