"""End-to-end campaigns on a tiny world: the report contract, the lift of the oracle over
popularity, determinism (same seed -> same exposures, whatever the worker count)."""

import json

import numpy as np
import pytest

from simab.eventlog import digest, read_table
from simab.run.runner import run_campaign
from simab.spec import load_campaign

from ..conftest import tiny

SORT = ["request", "position"]


def _run(tmp_path, name="r", workers=1, **over):
    spec = load_campaign(overrides=tiny(tmp_path, **over))
    return run_campaign(spec, out=tmp_path / name, workers=workers)


def test_report_contract_and_oracle_beats_popularity(tmp_path):
    res = _run(tmp_path)
    rep = json.loads((res.run_dir / "report.json").read_text())
    assert set(rep) >= {"schema", "campaign", "seed", "alpha", "arms", "srm", "metrics", "runtime"}
    assert rep["schema"] == 1 and set(rep["arms"]) == {"control", "treatment"}
    ctr = rep["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]
    # the oracle ranks by the true P(click): its CTR lift is large and positive (+40-70% in
    # this world; a tiny campaign still separates it from 0)
    assert ctr["rel_ci"][0] > 0
    assert ctr["true_rel_lift"] is not None and ctr["true_rel_lift"] > 0
    true = {arm: rep["metrics"]["ctr"]["arms"][arm]["true_value"] for arm in ("control", "treatment")}
    assert 0 < true["control"] < true["treatment"] < 1  # true CTRs; the oracle's is higher
    assert (res.run_dir / "report.md").exists() and (res.run_dir / "report.html").exists()
    run = json.loads((res.run_dir / "run.json").read_text())
    assert run["status"] == "complete"


def test_same_seed_same_exposures(tmp_path):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b")
    ea, eb = read_table(a.run_dir, "exposures"), read_table(b.run_dir, "exposures")
    assert ea.num_rows > 1000
    assert digest(ea, SORT) == digest(eb, SORT)


def test_different_seed_different_exposures(tmp_path):
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", seed=8)
    assert digest(read_table(a.run_dir, "exposures"), SORT) != digest(read_table(b.run_dir, "exposures"), SORT)


def test_one_and_two_workers_give_identical_exposures(tmp_path):
    a = _run(tmp_path, "w1", workers=1)
    b = _run(tmp_path, "w2", workers=2)
    ea, eb = read_table(a.run_dir, "exposures"), read_table(b.run_dir, "exposures")
    assert digest(ea, SORT) == digest(eb, SORT)


def test_aa_campaign_runs(tmp_path):
    res = _run(tmp_path, arms={"control": {"policy": "popularity", "share": 0.5},
                                "treatment": {"policy": "popularity", "share": 0.5}})
    rep = json.loads((res.run_dir / "report.json").read_text())
    ctr = rep["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]
    # the same policy in both arms.  A calibrated test gives p < 0.001 in one A/A seed in
    # 1,000 (this check's false-alarm rate); a miscalibrated one (exposure-level variances
    # on heavy-tailed users) rejects far more often.  Its rate at alpha = 0.05 is measured
    # by the A/A calibration batteries (docs/calibration.md), not by one seed.
    assert ctr["p_value"] > 0.001
    assert ctr["rel_ci"][0] < ctr["rel_lift"] < ctr["rel_ci"][1]


@pytest.mark.slow
def test_aa_false_positive_rate_is_plausible(tmp_path):
    """50 A/A campaigns: the share of p < 0.05 on CTR must lie in the binomial 99% interval
    around 5% for n = 50 (scipy.stats.binom.interval(0.99, 50, 0.05) = (0, 7) rejections).
    On the dense calibration: at 400 users x half a day the realistic world (heavy-tailed
    activity, ~4% CTR) is below the size where the user-level CTR test holds (its A/A battery:
    8.75% [6.2%, 12.0%] at 150 users x 3 days, 6.0% [3.9%, 8.8%] at 2,000; docs/calibration.md,
    world version 5), which the batteries measure; this test checks the pipeline at a size
    where the test is known to hold."""
    from scipy.stats import binom

    n = 50
    rejections = 0
    for seed in range(n):
        over = tiny(tmp_path, seed=seed, arms={"control": {"policy": "popularity", "share": 0.5},
                                               "treatment": {"policy": "popularity", "share": 0.5}})
        over["world"]["n_users"] = 400
        over["world"]["calibration"] = "dense"
        spec = load_campaign(overrides=over)
        res = run_campaign(spec, out=tmp_path / f"aa{seed}")
        rep = json.loads((res.run_dir / "report.json").read_text())
        rejections += rep["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]["p_value"] < 0.05
    lo, hi = binom.interval(0.99, n, 0.05)
    assert lo <= rejections <= hi, rejections


def test_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    from simab.cli.main import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {blocker / 'sub'}")


def test_counts_are_consistent(tmp_path):
    res = _run(tmp_path)
    e = read_table(res.run_dir, "exposures")
    r = read_table(res.run_dir, "requests")
    # every request's slate is logged at slate_size positions
    assert e.num_rows == int(np.sum(np.minimum(10, r.column("n_candidates").to_numpy())))


def test_pre_period_is_identical_with_one_and_two_workers(tmp_path):
    """The pre-period's shards run in a process pool when workers > 1; each shard is a
    pure function of (world, shard), so the cached logs are byte-identical; each part is
    sorted by (request, position) and holds whole users."""
    import hashlib

    import pyarrow.parquet as pq

    from simab.run.preperiod import pre_period
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    world = World.build(world_spec({"preset": "default", "n_users": 30, "pre_period_days": 0.3}), seed=5)
    folders = [pre_period(world, tmp_path / f"w{w}", shards=3, workers=w) for w in (1, 2)]

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}

    one, two = (digests(f) for f in folders)
    assert one == two
    assert set(one) == {f"{t}-{s:03d}.parquet" for t in ("exposures", "features") for s in range(3)}
    users = []
    for s in range(3):
        e = pq.read_table(folders[0] / f"exposures-{s:03d}.parquet", columns=["request", "position", "user"])
        key = e.column("request").to_numpy() * 1000 + e.column("position").to_numpy()  # positions < 1000
        assert len(key) > 0 and (np.diff(key) > 0).all()
        users.append(set(e.column("user").to_pylist()))
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])


def test_pre_period_and_campaign_draw_independently(tmp_path):
    """Both phases count each user's sessions and requests from 0; the pre-period must
    still not replay the campaign's draws.  With an integer number of pre-period days
    and a daily diurnal curve, shared streams would make each user's campaign session
    times the pre-period's shifted by exactly that many days."""
    import pyarrow.parquet as pq

    from simab.run.preperiod import pre_period
    from simab.simulators.spec import world_spec
    from simab.simulators.world import World

    spec = load_campaign(overrides={"name": "phases", "seed": 3, "duration_days": 1.0, "shards": 1,
                                    "world": {"preset": "default", "n_users": 40, "pre_period_days": 1.0},
                                    "arms": {"control": {"policy": "popularity", "share": 1.0}}})
    run = run_campaign(spec, out=tmp_path / "run", report=False)
    world = World.build(world_spec({"preset": "default", "n_users": 40, "pre_period_days": 1.0}), seed=3)
    pre = pq.read_table(pre_period(world, tmp_path / "cache", shards=1) / "exposures-000.parquet",
                        columns=["user", "ts"])  # one shard: one part
    camp = read_table(run.run_dir, "exposures").select(["user", "ts"])
    shifted = {(int(u), round(float(t) + 86400.0, 3)) for u, t in zip(pre["user"].to_numpy(), pre["ts"].to_numpy(), strict=True)}
    here = {(int(u), round(float(t), 3)) for u, t in zip(camp["user"].to_numpy(), camp["ts"].to_numpy(), strict=True)}
    # a few coincidences are possible by chance at millisecond rounding; a replay matches most
    assert len(here) > 50
    assert len(here & shifted) <= 0.01 * len(here)


def test_column_buffer_keeps_row_order_across_chunks_and_broadcasts_scalars():
    from simab.eventlog import ColumnBuffer

    buf = ColumnBuffer("moveline")
    buf.append(user=np.array([1]), ts=np.array([0.5]), scene=["home"], category=np.array([-1], np.int32),
               shop=np.array([-1], np.int32), domain="shop")
    buf.append(user=np.array([2, 3]), ts=np.array([1.0, 2.0]), scene=["search", "shop"],
               category=np.array([4, 5], np.int32), shop=np.array([-1, 7], np.int32), domain="shop")
    buf.append(user=np.array([4]), ts=np.array([3.0]), scene=["content"], category=9, shop=-1, domain="content")
    t = buf.to_table()
    assert buf.rows == 4 and t.num_rows == 4
    assert t.column("user").to_pylist() == [1, 2, 3, 4]
    assert t.column("scene").to_pylist() == ["home", "search", "shop", "content"]
    assert t.column("category").to_pylist() == [-1, 4, 5, 9]


def test_exposure_log_drops_abandoned_requests_and_lays_out_rows_in_serving_order():
    """``ShardLogs.exposures`` keeps only the requests that were not abandoned; the table has
    one row per (kept request, position), positions 0..K-1, per-request columns repeated,
    each request at its own serving time."""
    from types import SimpleNamespace

    from simab.engine.serving import ExposureRows
    from simab.engine.shard import ShardLogs
    from simab.simulators.oracle import Response

    world = SimpleNamespace(scenario_names=["home", "search"])
    log = ShardLogs(world, ["control", "treatment"], "c", 3, np.array([1, 2, 3, 4]), None, False)

    def resp(B, K, base):
        a = np.arange(B * K, dtype=float).reshape(B, K) + base
        return Response(a, a + 0.5, a, a % 2 == 0, a % 3 == 0, a * 10, a + 1, a + 2)

    def rows(scenario, users, t, slate, response, prop, keep):  # users rows + 1; session numbers, request ids
        r = np.array(users)
        return ExposureRows(scenario, r, r * 10, (r + 1) * 100, t, slate, slate * 1.0, response, prop, keep)

    slate = np.arange(6).reshape(2, 3)
    home, search = np.array([0, 0]), np.array([1])
    log.exposures("control", rows(home, [0, 1], np.array([86400.0 * 1.5, 5.0]), slate, resp(2, 3, 0),
                                  np.ones((2, 3)), np.array([True, False])))
    slate2 = np.arange(4).reshape(1, 4) + 50
    log.exposures("treatment", rows(search, [2], np.array([10.0]), slate2, resp(1, 4, 100), np.full((1, 4), 0.5),
                                    np.array([True])))
    log.exposures("control", rows(home, [3, 3], np.array([20.0, 20.0]), slate, resp(2, 3, 0), np.ones((2, 3)),
                                  np.array([False, False])))  # all abandoned
    assert log.exposure_rows == 3 + 4
    t = log.drain()["exposures"]
    assert t.num_rows == 3 + 4
    col = lambda k: t.column(k).to_pylist()  # noqa: E731
    assert col("user") == [1] * 3 + [3] * 4 and col("request") == [100] * 3 + [300] * 4
    assert col("session") == [1 << 20] * 3 + [(3 << 20) | 20] * 4  # session ids: user << 20 | number
    assert col("position") == [0, 1, 2, 0, 1, 2, 3]
    assert col("item") == [0, 1, 2, 50, 51, 52, 53]
    assert col("arm") == ["control"] * 3 + ["treatment"] * 4
    assert col("scenario") == ["home"] * 3 + ["search"] * 4
    assert col("day") == [1] * 3 + [0] * 4 and col("shard") == [3] * 7 and col("campaign") == ["c"] * 7
    assert col("p_click") == [0.0, 1.0, 2.0, 100.0, 101.0, 102.0, 103.0]
    # conversion time = serving time + delay where converted (a % 3 == 0), else missing
    conv = col("conversion_ts")
    assert conv[0] == 86400.0 * 1.5 and conv[5] == 10.0 + 1020.0 and np.isnan(conv[1]) and np.isnan(conv[3])
    assert col("propensity") == [1.0] * 3 + [0.5] * 4
    assert log.drain()["exposures"].num_rows == 0  # drained


def test_every_request_abandoned_gives_requests_but_no_exposures(tmp_path):
    """``abandon_after_ms`` below any possible latency: every request is logged (with its
    latency) and abandoned, so nothing is exposed and no user reacts."""
    res = _run(tmp_path, serving={"abandon_after_ms": 1e-9}, duration_days=0.2)
    assert read_table(res.run_dir, "exposures").num_rows == 0
    req = read_table(res.run_dir, "requests")
    assert req.num_rows > 0 and min(req.column("latency_ms").to_pylist()) > 1e-9
