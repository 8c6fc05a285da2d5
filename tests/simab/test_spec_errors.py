"""Every bad input named in issue 2 gives one line `error: <file>: <key>: ...`, exit 2,
no traceback, and no run folder marked complete."""

import subprocess
import sys
from pathlib import Path

import pytest

from simab.cli.main import main

from .conftest import campaign_toml

GOOD = campaign_toml()

CASES = {
    "unknown_key": (GOOD.replace("seed = 1", "seed = 1\ncolour = 'red'"), "colour", "unknown key"),
    "wrong_type": (GOOD.replace("seed = 1", "seed = 'one'"), "seed", "integer"),
    "negative_size": (GOOD.replace('preset = "default"', 'preset = "default"\nn_users = -5'), "world.n_users", "greater"),
    "allocations_above_1": (GOOD.replace("share = 0.5\n\n[arms.treatment]", "share = 0.7\n\n[arms.treatment]"), "arms", "at most 1"),
    "unknown_policy": (GOOD.replace('policy = "oracle"', 'policy = "magic"'), "arms.treatment.policy", "unknown policy"),
    "unknown_preset": (GOOD.replace('preset = "default"', 'preset = "mars"'), "world.preset", "unknown preset"),
    "malformed_toml": (GOOD.replace("seed = 1", "seed = = 1"), None, "malformed TOML"),
    "no_arms": (GOOD.split("[arms.control]")[0], "arms", "at least two arms"),
    "duplicate_arms": (GOOD + '\n[arms.control]\npolicy = "random"\nshare = 0.1\n', "arms.control", "duplicate arm"),
    "unknown_param": (GOOD.replace('policy = "oracle"', 'policy = "oracle"\nparams = { temperature = 2 }'),
                      "arms.treatment.params.temperature", "unknown parameter"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_one_line_exit_2(case, tmp_path, capsys):
    text, key, needle = CASES[case]
    path = tmp_path / "c.toml"
    path.write_text(text)
    out_dir = tmp_path / "run"
    code = main(["run", str(path), "--out", str(out_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith(f"error: {path}: ")
    if key:
        assert f": {key}:" in line, line
    assert needle in line, line
    assert not (out_dir / "run.json").exists()


def test_missing_file(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: {tmp_path / 'nope.toml'}: file not found"


def test_no_traceback_from_the_console_script(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(CASES["unknown_policy"][0])
    proc = subprocess.run([sys.executable, "-m", "simab.cli.main", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_good_spec_parses(tmp_path):
    from simab.spec import load_campaign

    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    spec = load_campaign(path)
    assert spec.control_arm == "control" and set(spec.arms) == {"control", "treatment"}


def test_default_campaign_is_embedded(tmp_path, monkeypatch):
    """With no file, ``load_campaign`` reads the spec shipped in the package (whatever the
    working folder holds)."""
    import simab
    from simab.spec import load_campaign

    monkeypatch.chdir(tmp_path)
    spec = load_campaign()
    assert spec.name == "default" and len(spec.arms) >= 2
    assert spec == load_campaign(Path(simab.__file__).parent / "specs" / "default.toml")


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_example_specs_are_valid(path):
    """The specs in examples/ are what users copy: each must load and validate as shipped."""
    from simab.spec import load_campaign

    spec = load_campaign(path)
    assert spec.name and len(spec.arms) >= 2
