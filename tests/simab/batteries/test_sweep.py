"""simab.batteries.sweep: grid parsing, run planning, determinism across workers, resume, CLI errors."""

import pyarrow.parquet as pq
import pytest

from simab.batteries.sweep import build_runs, grid_points, parse_grid, sweep
from simab.cli.main import main
from simab.errors import SimabError


def tiny_world(tmp_path):
    """A campaign of ~1 s: 60 users for 0.2 simulated days, one shard."""
    return {
        "seed": 3,
        "duration_days": 0.2,
        "shards": 1,
        "metrics": ["ctr", "exposures_per_user"],
        "world": {"n_users": 60, "pre_period_days": 0.05},
        "training": {"cache_dir": str(tmp_path / "cache")},
    }


def test_parse_grid_values_are_toml_and_arrays_stay_whole():
    grid = parse_grid(["world.n_users=100,200", "arms.treatment.params.blend=0.5, 1.0",
                       "metrics=[\"ctr\", \"cvr\"],[\"ctr\"]", "name=a,b"])
    assert grid == {
        "world.n_users": [100, 200],
        "arms.treatment.params.blend": [0.5, 1.0],
        "metrics": [["ctr", "cvr"], ["ctr"]],
        "name": ["a", "b"],
    }


def test_parse_grid_keeps_plain_words_as_strings():
    grid = parse_grid(["arms.treatment.policy=din,lcn", "arms.treatment.params.reward_inputs=pathways+prompt"])
    assert grid == {"arms.treatment.policy": ["din", "lcn"],
                    "arms.treatment.params.reward_inputs": ["pathways+prompt"]}


@pytest.mark.parametrize("item", ["arms.treatment.params.blend=0.5x", "metrics=[\"ctr\"", "world.n_users=1 000"])
def test_parse_grid_rejects_values_that_are_neither_toml_nor_a_word(item):
    """These used to become strings silently (the TOML error was swallowed)."""
    with pytest.raises(SimabError, match="--grid: .*: value .* is neither a TOML value"):
        parse_grid([item])


@pytest.mark.parametrize("item", ["world.n_users", "world.n_users=", "=1,2", "a..b=1"])
def test_parse_grid_rejects_malformed_items(item):
    with pytest.raises(SimabError, match="--grid"):
        parse_grid([item])


def test_parse_grid_rejects_a_key_given_twice():
    with pytest.raises(SimabError, match="given twice"):
        parse_grid(["seed=1", "seed=2"])


def test_grid_points_are_the_product_in_given_order():
    points = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(points) == 2 * 3
    assert points[0] == {"a": 1, "b": "x"} and points[-1] == {"a": 2, "b": "z"}
    assert grid_points({}) == [{}]


def test_build_runs_seeds_replicates_and_forces_one_worker(tmp_path):
    over = {**tiny_world(tmp_path), "seed": 10, "workers": 4}
    runs = build_runs(None, parse_grid(["world.n_users=50,70"]), 3, tmp_path / "sw", base_overrides=over)
    assert [(r.point, r.replicate, r.seed) for r in runs] == [
        (p, r, 10 + r) for p in range(2) for r in range(3)
    ]
    assert all('"workers":1' in r.spec_json for r in runs)
    assert '"n_users":70' in runs[-1].spec_json


def test_a_bad_grid_value_fails_before_any_run(tmp_path):
    with pytest.raises(SimabError, match="world.n_users"):
        build_runs(None, parse_grid(["world.n_users=50,-3"]), 1, tmp_path / "sw",
                   base_overrides=tiny_world(tmp_path))
    assert not (tmp_path / "sw").exists()


def test_cli_sweep_errors_are_one_line_exit_2(tmp_path, capsys):
    code = main(["sweep", "--grid", "world.n_users", "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --grid:") and "\n" not in err
    code = main(["sweep", "--grid", "seed=1", "--replicates", "0", "--out", str(tmp_path / "sw")])
    assert code == 2 and "--replicates" in capsys.readouterr().err


def test_same_seed_same_table_whatever_workers_and_resume(tmp_path):
    grid = parse_grid(["arms.treatment.policy=popularity,oracle"])
    one = sweep(None, grid, 2, tmp_path / "w1", workers=1, base_overrides=tiny_world(tmp_path))
    two = sweep(None, grid, 2, tmp_path / "w2", workers=2, base_overrides=tiny_world(tmp_path))
    t1, t2 = pq.read_table(tmp_path / "w1" / "sweep.parquet"), pq.read_table(tmp_path / "w2" / "sweep.parquet")
    assert t1.equals(t2)
    # 2 points x 2 replicates x 2 metrics x 1 comparison
    assert t1.num_rows == 8 == len(one.rows) == len(two.rows)
    assert t1.column("arms.treatment.policy").to_pylist()[:4] == ["popularity"] * 4
    assert sorted(set(t1.column("seed").to_pylist())) == [3, 4]  # spec seed + replicate
    # the oracle point knows the truth of every arm (oracle truth) and lifts CTR
    md = (tmp_path / "w1" / "sweep.md").read_text()
    assert "| \"oracle\" | ctr | treatment_vs_control | 2 |" in md
    # event logs are dropped by default; report.json and rows.json stay
    run_dir = tmp_path / "w1" / "runs" / "p000-r0000"
    assert (run_dir / "report.json").exists() and not (run_dir / "exposures").exists()
    again = sweep(None, grid, 2, tmp_path / "w1", workers=1, base_overrides=tiny_world(tmp_path))
    assert again.rows == one.rows
    assert again.wall_s < one.wall_s  # nothing simulated again: every run folder is reused
