"""The bad-input table (issue 16): every kind of bad input to the command line - spec keys
and types, flags of every subcommand, file-system conditions - ends with exit status 2,
exactly one line on stderr starting with ``error:``, no traceback, and nothing left
behind that looks like a finished output.  Everything runs in-process through ``main()``
and is refused before any simulation, so the table is fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from simab.cli.main import main

from .conftest import campaign_toml

GOOD = campaign_toml(duration_days=0.2, shards=2, n_users=60)


def _spec(old: str, new: str) -> str:
    assert old in GOOD, old  # a case that no longer edits the spec would test nothing
    return GOOD.replace(old, new)


# kind -> (spec text or None, argv with {spec} / {out} / {file} / {dir} placeholders, needle in the line)
SPEC_CASES = {
    "unknown_top_key": (_spec("seed = 1", "seed = 1\ncolour = 'red'"), "colour: unknown key"),
    "seed_as_string": (_spec("seed = 1", "seed = 'one'"), "seed: Input should be a valid integer"),
    "duration_as_string": (_spec("duration_days = 0.2", 'duration_days = "0.2"'), "duration_days: Input should be a valid number"),
    "n_users_as_string": (_spec("n_users = 60", 'n_users = "300"'), "world.n_users: Input should be a valid integer"),
    "negative_n_users": (_spec("n_users = 60", "n_users = -5"), "world.n_users"),
    "shares_above_1": (_spec("share = 0.5\n\n[arms.treatment]", "share = 0.7\n\n[arms.treatment]"), "at most 1"),
    "unknown_policy": (_spec('policy = "oracle"', 'policy = "magic"'), "arms.treatment.policy: unknown policy"),
    "unknown_preset": (_spec('preset = "default"', 'preset = "mars"'), "world.preset"),
    "malformed_toml": (_spec("seed = 1", "seed = = 1"), "malformed TOML"),
    "no_arms": (GOOD.split("[arms.control]")[0], "at least two arms"),
    "duplicate_arm": (GOOD + '\n[arms.control]\npolicy = "random"\nshare = 0.1\n', "duplicate arm"),
    "unknown_policy_param": (_spec('policy = "oracle"', 'policy = "oracle"\nparams = { temperature = 2 }'),
                             "arms.treatment.params.temperature"),
    "blend_out_of_range": (_spec('policy = "oracle"', 'policy = "oracle"\nparams = { blend = 5.0 }'),
                           "arms.treatment.params.blend: parameter 'blend'"),
    "name_dotdot": (_spec('name = "t"', 'name = ".."'), "name: '..' is not a plain folder name"),
    "name_dot": (_spec('name = "t"', 'name = "."'), "name: '.' is not a plain folder name"),
    "name_with_slash": (_spec('name = "t"', 'name = "a/b"'), "name: must use only letters"),
    "unknown_arm_key": (_spec("share = 0.5\n\n[arms.treatment]", "share = 0.5\ncolour = 1\n\n[arms.treatment]"),
                        "arms.control.colour: unknown key; allowed: params, policy, share"),
    "unknown_metric": (_spec("shards = 2", 'shards = 2\nmetrics = ["ctr", "revenue"]'), "metrics"),
    "workers_zero_in_spec": (_spec("shards = 2", "shards = 2\nworkers = 0"), "workers"),
    "control_not_an_arm": (_spec("shards = 2", 'shards = 2\ncontrol = "nobody"'), "control 'nobody' is not an arm"),
    "ramp_unknown_arm": (GOOD + "\n[[ramps]]\nat_day = 0.1\nshares = { ghost = 0.2 }\n", "ramps.0.shares.ghost"),
    "unknown_ramp_key": (GOOD + "\n[[ramps]]\nat_day = 0.1\ncolour = 1\nshares = { control = 0.5 }\n",
                         "ramps.0.colour: unknown key; allowed: at_day, shares"),
    "unknown_world_key": (_spec("n_users = 60", "n_users = 60\nn_user = 1"),
                          "world.n_user: unknown key; did you mean n_users"),
    "unit_not_allowed": (_spec("shards = 2", 'shards = 2\nunit = "visit"'), "unit"),
    "alpha_above_1": (_spec("shards = 2", "shards = 2\nalpha = 1.5"), "alpha"),
    "shards_zero": (_spec("shards = 2", "shards = 0"), "shards"),
    "duration_zero": (_spec("duration_days = 0.2", "duration_days = 0"), "duration_days"),
}

FLAG_CASES = {
    "run_workers_zero": (["run", "{spec}", "--out", "{out}", "--workers", "0"], "error: --workers: must be at least 1"),
    "run_workers_negative": (["run", "{spec}", "--out", "{out}", "--workers", "-1"], "error: --workers:"),
    "run_seed_negative": (["run", "{spec}", "--out", "{out}", "--seed", "-1"], "error: --seed:"),
    "run_set_without_equals": (["run", "{spec}", "--out", "{out}", "--set", "seed"], "expected key=value"),
    "run_set_bad_value": (["run", "{spec}", "--out", "{out}", "--set", "duration_days=-1"], "error: --set: duration_days:"),
    "run_set_arm_string_share": (["run", "{spec}", "--out", "{out}", "--set", "arms.treatment.share=high"],
                                 "error: --set: arms.treatment.share:"),
    "run_backend_unknown": (["run", "{spec}", "--out", "{out}", "--backend", "spark"], "error: --backend:"),
    "report_missing_folder": (["report", "{out}"], "no such run folder"),
    "report_not_a_run": (["report", "{dir}"], "no manifest.json here"),
    "report_correction_unknown": (["report", "{dir}", "--correction", "sidak"], "error: --correction:"),
    "check_expect_garbage": (["check", "{dir}", "--expect", "ctr.rel_lift >>> 0.1 " + "x" * 300], "--expect"),
    "check_missing_target": (["check", "{out}", "--expect", "ctr.rel_lift > 0"], "no such run folder"),
    "train_popularity": (["train", "--world", "default", "--users", "50", "--policy", "popularity", "--out", "{out}"],
                         "--policy: policy 'popularity' learns nothing"),
    "train_random": (["train", "--world", "default", "--users", "50", "--policy", "random", "--out", "{out}"],
                     "--policy: policy 'random' learns nothing"),
    "train_epochs_zero": (["train", "--world", "default", "--policy", "dnn", "--epochs", "0", "--out", "{out}"],
                          "error: --epochs:"),
    "train_unknown_world": (["train", "--world", "mars", "--policy", "dnn", "--out", "{out}"], "mars"),
    "train_lr_nan": (["train", "--world", "default", "--policy", "dnn", "--lr", "nan", "--out", "{out}"], "error: --lr:"),
    "world_seed_negative": (["world", "default", "--seed", "-1", "--out", "{out}"], "error: --seed:"),
    "world_unknown_preset": (["world", "mars", "--out", "{out}"], "unknown preset"),
    "world_sample_zero": (["world", "default", "--sample", "0", "--out", "{out}"], "error: --sample:"),
    "power_baseline_nan": (["power", "--baseline", "nan", "--sd", "1", "--users", "100"], "error: --baseline:"),
    "power_baseline_negative": (["power", "--baseline", "-1", "--sd", "1", "--users", "100"], "error: --baseline:"),
    "power_users_zero": (["power", "--baseline", "0.1", "--sd", "1", "--users", "0"], "error: --users:"),
    "power_users_one": (["power", "--baseline", "0.1", "--sd", "1", "--users", "1"], "error: --users:"),
    "power_no_baseline": (["power", "--users", "100"], "give --baseline and --sd"),
    "power_alpha_above_1": (["power", "--baseline", "0.1", "--sd", "1", "--users", "100", "--alpha", "1.5"],
                            "error: --alpha:"),
    "power_no_mode": (["power", "--baseline", "0.1", "--sd", "1"], "one of the arguments"),
    "sweep_workers_zero": (["sweep", "{spec}", "--workers", "0", "--out", "{out}"], "error: --workers:"),
    "sweep_replicates_zero": (["sweep", "{spec}", "--replicates", "0", "--out", "{out}"], "error: --replicates:"),
    "sweep_grid_without_equals": (["sweep", "{spec}", "--grid", "seed", "--out", "{out}"], "--grid"),
    "sweep_grid_bad_value": (["sweep", "{spec}", "--grid", "duration_days=0.1,-2", "--out", "{out}"], "duration_days"),
    "calibrate_runs_one": (["calibrate", "--battery", "aa", "--runs", "1", "--out", "{out}"], "error: --runs:"),
    "calibrate_workers_zero": (["calibrate", "--battery", "aa", "--workers", "0", "--out", "{out}"], "error: --workers:"),
    "calibrate_unknown_battery": (["calibrate", "--battery", "ab", "--out", "{out}"], "error: --battery:"),
    "unknown_subcommand": (["simulate"], "invalid choice"),
    "no_subcommand": ([], "required"),
}

FS_CASES = {
    "spec_missing": (["run", "{dir}/nope.toml", "--out", "{out}"], "file not found"),
    "spec_is_a_folder": (["run", "{dir}", "--out", "{out}"], "is a folder"),
    "spec_not_text": (["run", "{binary}", "--out", "{out}"], "not a text file"),
    "run_out_is_a_file": (["run", "{spec}", "--out", "{file}"], "exists and is not a folder"),
    "run_into_folder_with_user_files": (["run", "{spec}", "--out", "{userdir}"], "important.pt: not written by simab"),
    "sweep_out_is_a_file": (["sweep", "{spec}", "--out", "{file}"], "exists and is not a folder"),
    "calibrate_out_is_a_file": (["calibrate", "--battery", "aa", "--runs", "4", "--out", "{file}"],
                                "exists and is not a folder"),
    "world_out_is_a_file": (["world", "default", "--users", "50", "--out", "{file}"], "exists and is not a folder"),
    "train_out_is_a_file": (["train", "--world", "default", "--users", "50", "--policy", "dnn", "--out", "{file}"],
                            "exists and is not a folder"),
    "calibrate_damaged_calibration_json": (["calibrate", "--battery", "aa", "--runs", "4", "--out", "{damaged}"],
                                           "manifest.json: not a record of this simab"),
    "report_unreadable_run_json": (["report", "{damaged}"], "manifest.json: not a record of this simab"),
    "power_from_a_folder_that_is_no_run": (["power", "--from-run", "{dir}", "--users", "100"], "run"),
    "cache_folder_unusable": (["run", "{spec}", "--out", "{out}"], "cache folder is not usable"),
}

# what a finished command leaves; none of these may appear after a refused one
FINISHED = ("run.json", "report.json", "metrics.json", "sweep.md", "sweep.parquet", "calibration.json", "world.json")

CASES = {**{f"spec/{k}": v for k, v in SPEC_CASES.items()},
         **{f"flag/{k}": v for k, v in FLAG_CASES.items()},
         **{f"fs/{k}": v for k, v in FS_CASES.items()}}


def test_the_table_covers_at_least_40_kinds():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    kind, name = case.split("/", 1)
    monkeypatch.setenv("SIMAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory either
    spec = tmp_path / "campaign.toml"
    if kind == "spec":
        text, needle = SPEC_CASES[name]
        spec.write_text(text)
        argv = ["run", str(spec), "--out", str(tmp_path / "out")]
    else:
        spec.write_text(GOOD)
        argv, needle = (FLAG_CASES if kind == "flag" else FS_CASES)[name]
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.txt").write_text("a user's file\n")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00\x01")
    user = tmp_path / "userdir"
    (user / "models").mkdir(parents=True)
    (user / "models" / "important.pt").write_bytes(b"weights")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "calibration.json").write_text("{not json")
    (damaged / "run.json").write_text("{not json")
    (damaged / "spec.json").write_text('{"shards": 0, "arms": {}}')
    (damaged / "manifest.json").write_text('{"shards": {}}')
    if name == "cache_folder_unusable":
        monkeypatch.setenv("SIMAB_CACHE", str(tmp_path / "file.txt" / "cache"))
    places = {"spec": str(spec), "out": str(tmp_path / "out"), "file": str(tmp_path / "file.txt"),
              "dir": str(tmp_path / "dir"), "damaged": str(damaged), "binary": str(tmp_path / "binary.toml"), "userdir": str(user)}
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    code = main([a.format(**places) for a in argv])

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert needle in lines[0], lines[0]
    assert len(lines[0]) < 300, lines[0]
    assert "Value error" not in lines[0] and "CampaignSpec" not in lines[0] and "ArmSpec" not in lines[0]
    # nothing half-written: no new file or folder at all (outputs, empty folders, caches)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    new = [p for p in after if p not in before and p.parts[0] != "cache"]
    assert new == [], new
    assert not [p for p in tmp_path.rglob("*") if p.name in FINISHED and p.parent != damaged]
    assert (user / "models" / "important.pt").read_bytes() == b"weights"


def test_unreadable_spec_is_one_line(tmp_path, capsys, monkeypatch):
    """A spec without read permission (simulated: the tests may run as root, who can read
    anything) is a one-line error, not a PermissionError traceback."""
    spec = tmp_path / "campaign.toml"
    spec.write_text(GOOD)
    real = Path.open

    def denied(self, *a, **k):
        if self == spec:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "open", denied)
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {spec}: cannot read the file: Permission denied"]
    assert not (tmp_path / "out").exists()
