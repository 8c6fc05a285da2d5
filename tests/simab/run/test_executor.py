"""The one executor: results tagged by job, errors raised, a per-process memo that lives as
long as the executor; a campaign computes its pre-period once, resolves its cache folder
once and builds each arm's policy once per process."""

import os

import pytest

from simab.errors import SimabError
from simab.run.executor import Executor, process_memo
from simab.spec import load_campaign

from ..conftest import tiny

BUILDS: list[int] = []


def square(x: int) -> int:
    return x * x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("job 3 failed")
    return x


def memo_of(x: int) -> tuple[int, int]:
    """(the process, the value memoised under one key: the first job's ``x`` in that process)."""
    return os.getpid(), process_memo("first", lambda: BUILDS.append(x) or x)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_job_comes_back_once_with_its_index(workers):
    with Executor(workers) as e:
        out = dict(e.map(square, range(7)))
    assert out == {i: i * i for i in range(7)}


def test_one_worker_runs_the_jobs_in_order_here():
    with Executor(1) as e:
        assert list(e.map(memo_of, [3, 1, 2])) == [(0, (os.getpid(), 3)), (1, (os.getpid(), 3)), (2, (os.getpid(), 3))]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_in_the_caller(workers):
    with Executor(workers) as e, pytest.raises(ValueError, match="job 3 failed"):
        list(e.map(fails_on_three, range(6)))


def test_an_unknown_backend_is_a_one_line_error():
    with pytest.raises(SimabError, match="unknown backend 'spark'; allowed: local, ray"):
        Executor(2, "spark")


def test_the_memo_builds_once_per_executor_and_is_forgotten_when_it_closes():
    BUILDS.clear()
    with Executor(1) as e:
        first = [v for _, (_, v) in e.map(memo_of, [10, 11, 12])]
        again = [v for _, (_, v) in e.map(memo_of, [13])]
    assert first == [10, 10, 10] and again == [10] and BUILDS == [10]
    with Executor(1) as e2:  # a new executor builds anew
        assert [v for _, (_, v) in e2.map(memo_of, [20])] == [20]
    assert BUILDS == [10, 20]
    # outside a job nothing is kept
    assert process_memo("first", lambda: 30) == 30 and process_memo("first", lambda: 31) == 31


def test_the_memo_of_a_pool_worker_holds_for_every_job_it_runs():
    with Executor(2) as e:
        seen = [r for _, r in e.map(memo_of, range(12))]
    by_process: dict[int, set[int]] = {}
    for pid, value in seen:
        by_process.setdefault(pid, set()).add(value)
    assert all(len(values) == 1 for values in by_process.values())  # one build per process
    assert os.getpid() not in by_process


def test_a_campaign_computes_its_pre_period_once_and_builds_each_policy_once(tmp_path, monkeypatch):
    """Three shards plus two counterfactual worlds of three shards, one worker: every arm's
    policy is built once, the pre-period computed once and the cache folder resolved once."""
    from simab.run import arm_policies, folder, preperiod, runner, shards

    calls = {"build_policy": [], "pre_period": 0, "cache_dir": 0}
    cache_dir = folder.cache_dir

    def counted_build(desc, world):
        calls["build_policy"].append(desc["name"])
        return arm_policies.build_policy(desc, world)

    def counted_pre_period(*args, **kwargs):
        calls["pre_period"] += 1
        return preperiod.pre_period(*args, **kwargs)

    def counted_cache_dir(configured):
        calls["cache_dir"] += 1
        return cache_dir(configured)

    monkeypatch.setattr(shards, "build_policy", counted_build)
    monkeypatch.setattr(runner, "pre_period", counted_pre_period)
    monkeypatch.setattr(arm_policies, "pre_period", counted_pre_period)
    monkeypatch.setattr(folder, "cache_dir", counted_cache_dir)
    spec = load_campaign(overrides=tiny(tmp_path, shards=3, truth="counterfactual"))
    runner.run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    assert sorted(calls["build_policy"]) == ["oracle", "popularity"]
    assert calls["pre_period"] == 1 and calls["cache_dir"] == 1
    assert (tmp_path / "run" / "covariates.parquet").exists()
