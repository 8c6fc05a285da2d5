"""Issue 16: a run folder is a unit with an identity.  One test (at least) per finding;
each fails on the code before the issue."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
import time
import typing
from pathlib import Path

import pytest

from simab.cli.main import main
from simab.errors import SimabError

from ..conftest import run_once

TINY = textwrap.dedent(
    """
    name = "tiny"
    seed = 1
    duration_days = 0.2
    shards = 2
    metrics = ["ctr", "exposures_per_user"]

    [world]
    preset = "default"
    n_users = 60
    pre_period_days = 0.2
    n_shop_items = 300
    n_content_items = 200
    n_shops = 20

    [arms.control]
    policy = "popularity"
    share = 0.5

    [arms.treatment]
    policy = "random"
    share = 0.5
    """
)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One finished tiny run (about 3 s); tests copy it before changing anything."""
    return run_once(tmp_path_factory.mktemp("integrity"), TINY, "tiny")


@pytest.fixture
def run_copy(base_run, tmp_path):
    spec, run = base_run
    shutil.copytree(run, tmp_path / "run")
    return spec, tmp_path / "run"


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --------------------------------------------------------------------------- 1. resume
@pytest.mark.parametrize(("flag", "key"), [
    ("duration_days=0.3", "duration_days"),
    ("shards=4", "shards"),
    ("world.n_users=80", "world.n_users"),
    ("arms.treatment.policy=\"popularity\"", "arms.treatment.policy"),
])
def test_resume_refuses_a_changed_spec_naming_the_key(run_copy, capsys, flag, key):
    spec, run = run_copy
    stored = (run / "spec.json").read_text()
    assert main(["run", str(spec), "--out", str(run), "--resume", "--set", flag]) == 2
    line = _one_error(capsys)
    assert f"differs from the stored run at {key} " in line, line
    assert (run / "spec.json").read_text() == stored  # nothing rewritten
    assert (run / "run.json").exists()  # the finished run is left as it was


def test_resume_of_the_same_spec_is_accepted(run_copy, capsys):
    spec, run = run_copy
    report = json.loads((run / "report.json").read_text())
    assert main(["run", str(spec), "--out", str(run), "--resume", "--workers", "2"]) == 0  # workers: not identity
    again = json.loads((run / "report.json").read_text())
    assert again["arms"] == report["arms"]  # every shard was intact: same counts


def test_resume_refuses_another_world_version(run_copy, capsys, monkeypatch):
    import simab.simulators.world

    spec, run = run_copy
    monkeypatch.setattr(simab.simulators.world, "WORLD_VERSION", -1)  # this simab writes another world
    assert main(["run", str(spec), "--out", str(run), "--resume"]) == 2
    assert "world_version" in _one_error(capsys)


# --------------------------------------------------------------------------- 2. user files
def test_fresh_run_into_a_folder_with_user_files_refuses_and_overwrite_keeps_them(base_run, tmp_path, capsys,
                                                                                  monkeypatch):
    spec, _ = base_run
    work = tmp_path / "project"
    (work / "models").mkdir(parents=True)
    (work / "models" / "important.pt").write_bytes(b"weights")
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    assert main(["run", str(spec), "--out", "."]) == 2
    assert "models/important.pt: not written by simab" in _one_error(capsys)
    assert main(["run", str(spec), "--out", ".", "--overwrite"]) == 0
    assert main(["run", str(spec), "--out", ".", "--overwrite"]) == 0  # replaces its own run
    assert (work / "models" / "important.pt").read_bytes() == b"weights"
    assert (work / "notes.txt").read_text() == "mine"
    assert (work / "run.json").exists()


def test_resume_of_a_folder_without_a_run_is_a_fresh_run_with_the_same_rules(base_run, tmp_path, capsys):
    spec, _ = base_run
    (tmp_path / "work" / "exposures").mkdir(parents=True)
    (tmp_path / "work" / "exposures" / "mine.parquet").write_bytes(b"user data")
    assert main(["run", str(spec), "--out", str(tmp_path / "work"), "--resume"]) == 2
    assert "exposures/mine.parquet: not written by simab" in _one_error(capsys)
    assert (tmp_path / "work" / "exposures" / "mine.parquet").read_bytes() == b"user data"


def test_a_previous_run_is_replaced_without_overwrite(run_copy, capsys):
    spec, run = run_copy
    assert main(["run", str(spec), "--out", str(run)]) == 0


@pytest.mark.parametrize("name", ["..", ".", "...", "a/b", "../x"])
def test_campaign_name_must_be_a_plain_folder_name(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output is runs/<name>: ".." would be the working directory
    spec = tmp_path / "c.toml"
    spec.write_text(TINY.replace('name = "tiny"', f"name = {json.dumps(name)}"))
    assert main(["run", str(spec)]) == 2
    line = _one_error(capsys)
    assert ": name: " in line and "Value error" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


# --------------------------------------------------------------------------- 3. report verifies
def test_report_refuses_a_missing_part(run_copy, capsys):
    _, run = run_copy
    (run / "exposures" / "shard-00001.parquet").unlink()
    before = (run / "report.json").read_text()
    assert main(["report", str(run)]) == 2
    line = _one_error(capsys)
    assert "exposures/shard-00001.parquet is missing" in line and "--allow-incomplete" in line
    assert (run / "report.json").read_text() == before


def test_report_refuses_an_altered_part_and_an_unlisted_one(run_copy, capsys):
    _, run = run_copy
    part = run / "requests" / "shard-00000.parquet"
    part.write_bytes(part.read_bytes() + b"\0")
    shutil.copy(run / "exposures" / "shard-00000.parquet", run / "exposures" / "shard-00002.parquet")
    assert main(["report", str(run)]) == 2
    line = _one_error(capsys)
    assert "requests/shard-00000.parquet does not match its digest in manifest.json (and 1 more)" in line, line


def test_report_refuses_altered_truth(run_copy, capsys):
    _, run = run_copy
    (run / "truth.parquet").write_bytes((run / "truth.parquet").read_bytes()[:-10])
    assert main(["report", str(run)]) == 2
    assert "truth.parquet does not match its digest in manifest.json" in _one_error(capsys)


def test_allow_incomplete_reports_and_flags(run_copy, capsys):
    _, run = run_copy
    (run / "exposures" / "shard-00001.parquet").unlink()
    assert main(["report", str(run), "--allow-incomplete"]) == 0
    rep = json.loads((run / "report.json").read_text())
    assert rep["integrity"] == {"complete": False, "problems": ["exposures/shard-00001.parquet is missing"]}
    assert "INCOMPLETE OR ALTERED RUN" in (run / "report.md").read_text()
    assert "INCOMPLETE OR ALTERED RUN" in (run / "report.html").read_text()


def test_an_intact_run_reports_complete(run_copy, capsys):
    _, run = run_copy
    assert main(["report", str(run)]) == 0
    assert json.loads((run / "report.json").read_text())["integrity"] == {"complete": True, "problems": []}


# --------------------------------------------------------------------------- 4. --set merges
def test_set_arm_key_merges_into_the_arm_table(base_run, tmp_path, capsys, monkeypatch):
    import simab.run.runner

    spec, _ = base_run
    seen = []

    def capture(s, **kwargs):
        seen.append(s)
        raise SimabError("stopped by the test")

    monkeypatch.setattr(simab.run.runner, "run_campaign", capture)
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--set", "arms.treatment.share=0.4"]) == 2
    assert "stopped by the test" in _one_error(capsys)
    (s,) = seen
    assert s.arms["treatment"].share == 0.4 and s.arms["treatment"].policy == "random"
    assert s.arms["control"].policy == "popularity"


# --------------------------------------------------------------------------- 5. tracebacks
def test_nothing_is_written_to_the_working_directory(base_run, tmp_path, monkeypatch, capsys):
    """The cache used to go to ./runs/.cache whatever --out said (a read-only working
    directory then failed after the campaign with a PermissionError)."""
    spec, _ = base_run
    text = spec.read_text().split("[training]")[0]  # no cache_dir: the default cache folder
    (tmp_path / "c.toml").write_text(text)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("SIMAB_CACHE", str(tmp_path / "simab-cache"))
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "out")]) == 0
    assert list(cwd.iterdir()) == []
    assert any((tmp_path / "simab-cache").glob("preperiod-*"))


def test_cache_root_follows_simab_cache_then_xdg(monkeypatch, tmp_path):
    from simab.run.folder import cache_root

    monkeypatch.delenv("SIMAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "simab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "simab"
    monkeypatch.setenv("SIMAB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"


# --------------------------------------------------------------------------- 6. silently accepted
def test_workers_below_one_is_refused_by_the_api(base_run):
    from simab.run.runner import run_campaign
    from simab.spec import load_campaign

    spec, _ = base_run
    with pytest.raises(SimabError, match=r"must be in \[1, 1024\]"):
        run_campaign(load_campaign(spec), out="/nonexistent/never", workers=0)


# --------------------------------------------------------------------------- 8. leftovers
def test_calibrate_with_few_runs_says_too_few_to_judge():
    import numpy as np

    from simab.batteries.calibrate import calibration_markdown, summarise

    rows = [{"metric": "ctr", "p_value": p, "alpha": 0.05} for p in np.linspace(0.1, 0.9, 4)]
    entry = summarise("aa", rows)
    assert entry["pass"] is None and "too few runs to judge" in entry["verdict"]
    entry.update(runs=4, wall_s=1.0, workers=1)
    md = calibration_markdown({"batteries": {"aa": entry}})
    assert "too few runs to judge" in md and "targets met" not in md


def test_min_runs_to_judge_is_what_its_comment_derives():
    from scipy.stats import beta

    from simab.batteries.calibrate import MIN_RUNS_TO_JUDGE

    def lower(n: int) -> float:  # 95 % Clopper-Pearson lower bound at an observed rate of 10 %
        k = math.ceil(0.10 * n)
        return float(beta.ppf(0.025, k, n - k + 1))

    assert all(lower(n) > 0.05 for n in range(MIN_RUNS_TO_JUDGE, 600))
    assert lower(MIN_RUNS_TO_JUDGE - 1) <= 0.05


def test_low_validation_auc_warns(capsys):
    from simab.run.arm_policies import warn_low_auc

    warn_low_auc("dnn", {"auc": 0.41})
    assert "warning: dnn: validation AUC 0.410 < 0.5" in capsys.readouterr().err
    warn_low_auc("dnn", {"auc": 0.62})
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- 9. messages
def test_done_in_is_the_whole_commands_time(base_run, tmp_path, capsys, monkeypatch):
    import simab.reports
    import simab.run.runner
    from simab.run.runner import RunResult

    spec, _ = base_run

    def slow(s, **kwargs):
        time.sleep(0.3)
        return RunResult(tmp_path, None, 0.0, 0)  # the simulation "took" 0 s

    monkeypatch.setattr(simab.run.runner, "run_campaign", slow)
    monkeypatch.setattr(simab.reports, "summary_table", lambda rep: "")
    assert main(["run", str(spec), "--out", str(tmp_path / "o")]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("done in")][0]
    assert float(line.split()[2].rstrip("s")) >= 0.3, line


def test_flag_errors_name_the_flag_not_the_spec_file(base_run, tmp_path, capsys):
    spec, _ = base_run
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--set", "duration_days=-1"]) == 2
    assert _one_error(capsys).startswith("error: --set: duration_days: ")
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--seed", "-1"]) == 2
    assert _one_error(capsys).startswith("error: --seed: ")


def test_expect_errors_are_short(run_copy, capsys):
    _, run = run_copy
    for bad in ["ctr.rel_lift >>> 1", "ctr.nonsense > 1", "ctr.rel_ci > 0", "x" * 500]:
        assert main(["check", str(run), "--expect", bad]) == 2
        assert len(_one_error(capsys)) < 200


def test_arm_errors_name_the_arm_path(tmp_path, capsys):
    spec = tmp_path / "c.toml"
    spec.write_text(TINY.replace('policy = "random"', 'policy = "random"\nweight = 2'))
    assert main(["run", str(spec), "--out", str(tmp_path / "o")]) == 2
    line = _one_error(capsys)
    assert line == f"error: {spec}: arms.treatment.weight: unknown key; allowed: params, policy, share"


# --------------------------------------------------------------------------- --correction
def test_correction_names_are_the_same_in_cli_and_api(run_copy, capsys):
    from simab.cli.args import CORRECTIONS
    from simab.reports.multiplicity import Correction

    _, run = run_copy
    assert set(CORRECTIONS) == set(typing.get_args(Correction))
    for c in CORRECTIONS:
        assert main(["report", str(run), "--correction", c]) == 0, c
        assert json.loads((run / "report.json").read_text())["correction"] == c


# --------------------------------------------------------------------------- --help
@pytest.mark.parametrize("command", ["run", "report", "check", "train", "sweep", "calibrate", "world", "power"])
def test_help_states_every_options_default(command, capsys):
    import re

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    entries: list[str] = []
    for line in capsys.readouterr().out.splitlines():
        if re.match(r"^  -", line):  # an option's first line
            entries.append(line)
        elif entries and line.startswith("    ") and not entries[-1].startswith("  -h"):
            entries[-1] += " " + line.strip()
        elif not line.startswith("    "):
            entries.append("")  # a section header or blank line ends the entry
    options = [e for e in entries if e.startswith("  --") and not e.startswith("  --help")]
    assert options
    for entry in options:
        text = " ".join(entry.split())
        assert "default" in text or "required" in text or "one of this" in text, text
