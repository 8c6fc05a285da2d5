"""Issue 28: run folders that cannot lie.  One test (at least) per numbered reproduction of
the issue (S = a small valid campaign, ``SMALL_SPEC``); each fails on the code before it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simab.cli.main import main
from simab.eventlog import Manifest

from ..conftest import SMALL_SPEC


def _one_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in captured.err + captured.out
    return err[0]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"<dir>")
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def run_copy(finished_run, tmp_path):
    spec, run, cache = finished_run
    shutil.copytree(run, tmp_path / "run", symlinks=True)
    return spec, tmp_path / "run"


def _spec_text(cache: Path, text: str = SMALL_SPEC) -> str:
    return text + f'\n[training]\ncache_dir = "{cache}"\n'


# --------------------------------------------------------------------------- 1. resume, arm order
def test_resume_refuses_reordered_arms(finished_run, run_copy, capsys):
    _, _, cache = finished_run
    _, run = run_copy
    (run / "exposures" / "shard-00001.parquet").unlink()
    control = '[arms.control]\npolicy = "popularity"\nshare = 0.5\n'
    treatment = '[arms.treatment]\npolicy = "oracle"\nshare = 0.5\n'
    swapped = SMALL_SPEC.replace(control, "@@").replace(treatment, control).replace("@@", treatment)
    assert swapped != SMALL_SPEC
    spec2 = run.parent / "swapped.toml"
    spec2.write_text(_spec_text(cache, swapped))
    before = _tree(run)
    assert main(["run", str(spec2), "--out", str(run), "--resume"]) == 2
    line = _one_error(capsys)
    assert "differs from the stored run at arms (order)" in line and '["control", "treatment"]' in line, line
    assert _tree(run) == before  # nothing resumed, nothing rewritten


def test_resume_compares_every_key_in_order():
    from simab.run.identity import first_difference

    assert first_difference({"a": 1, "b": 2}, {"b": 2, "a": 1}) == ("<spec> (order)", ["a", "b"], ["b", "a"])
    assert first_difference({"x": {"a": 1, "b": 2}}, {"x": {"b": 2, "a": 1}})[0] == "x (order)"
    assert first_difference({"x": 1}, {"x": 1.0}) is None  # the same number, as JSON reads it back
    assert first_difference({"x": True}, {"x": 1}) == ("x", True, 1)
    assert first_difference({"x": [1, 2]}, {"x": [2, 1]}) == ("x.0", 1, 2)


# --------------------------------------------------------------------------- 2. user files
def test_a_fresh_run_keeps_files_it_did_not_write(finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    d = tmp_path / "d"
    (d / "models" / "bert").mkdir(parents=True)
    (d / "models" / "bert" / "weights.pt").write_text("W\n")
    (d / "report.md").write_text("notes\n")
    before = _tree(d)
    assert main(["run", str(spec), "--out", str(d)]) == 2
    assert "models/bert/weights.pt: not written by simab" in _one_error(capsys)
    assert _tree(d) == before
    # --overwrite keeps them too, and refuses where simab would write over one (report.md)
    assert main(["run", str(spec), "--out", str(d), "--overwrite"]) == 2
    assert "report.md: not written by simab, and simab would write there" in _one_error(capsys)
    assert _tree(d) == before
    (d / "report.md").unlink()
    assert main(["run", str(spec), "--out", str(d), "--overwrite"]) == 0
    capsys.readouterr()
    assert (d / "models" / "bert" / "weights.pt").read_text() == "W\n"


def test_ownership_is_by_record_not_by_name(finished_run, tmp_path, capsys):
    """A folder holding files with simab's names but no record of simab's is not simab's."""
    spec, run, _ = finished_run
    d = tmp_path / "d"
    shutil.copytree(run, d)
    (d / "manifest.json").unlink()  # what remains looks like a run, but nothing says simab wrote it
    before = _tree(d)
    assert main(["run", str(spec), "--out", str(d)]) == 2
    assert "not written by simab" in _one_error(capsys)
    assert _tree(d) == before


def test_a_hand_edited_record_owns_nothing(run_copy, capsys):
    spec, run = run_copy
    doc = json.loads((run / "manifest.json").read_text())
    doc["plan"].append("../outside.txt")
    (run / "manifest.json").write_text(json.dumps(doc))
    before = _tree(run)
    assert main(["run", str(spec), "--out", str(run)]) == 2
    assert "manifest.json: changed after simab wrote it" in _one_error(capsys)
    assert _tree(run) == before


# --------------------------------------------------------------------------- 3. unlisted parquet
@pytest.mark.parametrize("table", ["exposures", "assignments"])
def test_report_refuses_an_unlisted_parquet_file(run_copy, capsys, table):
    _, run = run_copy
    shutil.copy(run / table / "shard-00000.parquet", run / table / "copy.parquet")
    report = (run / "report.json").read_bytes()
    assert main(["report", str(run)]) == 2
    assert f"{table}/copy.parquet is not listed in manifest.json" in _one_error(capsys)
    assert (run / "report.json").read_bytes() == report
    # flagged, the report still counts only the listed parts
    assert main(["report", str(run), "--allow-incomplete"]) == 0
    capsys.readouterr()
    rep = json.loads((run / "report.json").read_text())
    assert rep["arms"] == json.loads(report)["arms"] and rep["integrity"]["complete"] is False


# --------------------------------------------------------------------------- 4. run.json is read, so verified
@pytest.mark.parametrize("edit", ["control", "alpha", "status", "digests"])
def test_report_refuses_an_edited_run_json(run_copy, capsys, edit):
    _, run = run_copy
    info = json.loads((run / "run.json").read_text())
    if edit == "control":
        info["control"] = "treatment"
    elif edit == "alpha":
        info["alpha"] = 0.5
    elif edit == "status":
        info["status"] = "running"
    else:
        info["digests"] = {}
        (run / "truth.parquet").unlink()
        (run / "covariates.parquet").unlink()
    (run / "run.json").write_text(json.dumps(info))
    before = (run / "report.json").read_bytes()
    assert main(["report", str(run)]) == 2
    assert "run.json does not match its digest" in _one_error(capsys)
    assert main(["report", str(run), "--allow-incomplete"]) == 2  # nothing to report from
    capsys.readouterr()
    assert (run / "report.json").read_bytes() == before


def test_the_record_lists_every_file_a_command_reads(finished_run):
    _, run, _ = finished_run
    record = Manifest(run)
    listed = set(record.listed_files())
    on_disk = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert on_disk - listed == {"manifest.json"}
    assert {"spec.json", "run.json", "truth.parquet", "covariates.parquet", "report.json"} <= listed


# --------------------------------------------------------------------------- 5. check verifies
def test_check_refuses_a_flipped_byte_in_a_part(run_copy, capsys):
    _, run = run_copy
    part = run / "moveline" / "shard-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    assert main(["check", str(run), "--expect", "ctr.rel_lift > -1"]) == 2
    assert "moveline/shard-00001.parquet does not match its digest" in _one_error(capsys)


def test_check_refuses_a_hand_edited_report(run_copy, capsys):
    _, run = run_copy
    rep = json.loads((run / "report.json").read_text())
    rep["metrics"]["ctr"]["comparisons"]["treatment_vs_control"]["rel_lift"] = 9.0
    (run / "report.json").write_text(json.dumps(rep))
    assert main(["check", str(run), "--expect", "ctr.rel_lift > 5"]) == 2
    assert "report.json does not match its digest" in _one_error(capsys)


def test_check_refuses_a_report_flagged_incomplete(run_copy, capsys):
    _, run = run_copy
    shutil.copy(run / "exposures" / "shard-00000.parquet", run / "exposures" / "x.parquet")
    assert main(["report", str(run), "--allow-incomplete"]) == 0
    (run / "exposures" / "x.parquet").unlink()  # the run verifies again; its report is still the flagged one
    capsys.readouterr()
    assert main(["check", str(run), "--expect", "ctr.rel_lift > -1"]) == 2
    assert "flagged incomplete" in _one_error(capsys)
    assert main(["report", str(run)]) == 0  # a verified report again
    capsys.readouterr()
    assert main(["check", str(run), "--expect", "ctr.rel_lift > -1"]) == 0


def test_power_from_run_refuses_an_altered_run(run_copy, capsys):
    _, run = run_copy
    (run / "exposures" / "shard-00000.parquet").write_bytes(b"PAR1")
    assert main(["power", "--from-run", str(run), "--rel-mde", "0.1"]) == 2
    assert "power --from-run: incomplete or altered run" in _one_error(capsys)


# --------------------------------------------------------------------------- 6. names
@pytest.mark.parametrize("arm", ["../../../escaped", "a/b", "x.y", "a-b", "1st", "a_vs_b", "x" * 33, ""])
def test_arm_names_are_plain_identifiers(finished_run, tmp_path, capsys, arm):
    _, _, cache = finished_run
    spec = tmp_path / "deep" / "er" / "c.toml"
    spec.parent.mkdir(parents=True)
    spec.write_text(_spec_text(cache).replace("[arms.treatment]", f'[arms."{arm}"]'))
    before = _tree(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "deep" / "er" / "run")]) == 2
    line = _one_error(capsys)
    assert "is not allowed: a letter, then letters, digits or '_'" in line, line
    assert _tree(tmp_path) == before


# --------------------------------------------------------------------------- 7. no tracebacks
def _power(*args: str) -> list[str]:
    return ["power", "--baseline", "0.05", "--sd", "0.2", *args]


TRACEBACK_CASES = {
    "run_workers_huge": (["run", "{spec}", "--out", "{out}", "--workers", "99999999999999999999"], "--workers"),
    "sweep_workers_huge": (["sweep", "{spec}", "--out", "{out}", "--workers", "99999999999999999999"], "--workers"),
    "calibrate_workers_huge": (["calibrate", "--battery", "aa", "--out", "{out}", "--workers",
                                "99999999999999999999"], "--workers"),
    "power_rel_mde_tiny": (_power("--rel-mde", "1e-300"), "--rel-mde"),
    "power_rel_mde_huge": (_power("--rel-mde", "1e300"), "--rel-mde"),
    "power_sd_tiny": (["power", "--baseline", "0.05", "--sd", "1e-300", "--rel-mde", "0.1"], "--sd"),
    "power_sd_huge": (["power", "--baseline", "0.05", "--sd", "1e300", "--rel-mde", "0.1"], "--sd"),
    "power_baseline_tiny": (["power", "--baseline", "1e-300", "--sd", "0.2", "--rel-mde", "0.1"], "--baseline"),
    "power_alpha_tiny": (_power("--rel-mde", "0.1", "--alpha", "1e-300"), "--alpha"),
    "power_users_1e29": (_power("--users", "100000000000000000000000000000"), "--users"),
    "power_users_1e29_float": (_power("--users", "1e29"), "--users"),
    "one_arm": (["run", "{one_arm}", "--out", "{out}"], "at least two arms"),
    "set_key_5000_parts": (["run", "{spec}", "--out", "{out}", "--set", ".".join(["a"] * 5000) + "=1"], "--set"),
    "set_value_nested_deep": (["run", "{spec}", "--out", "{out}", "--set", "seed=" + "[" * 3000 + "]" * 3000],
                              "--set"),
    "dev_zero_spec": (["run", "/dev/zero", "--out", "{out}"], "/dev/zero"),
    "spec_nested_deep": (["run", "{deep}", "--out", "{out}"], "nested"),
}


@pytest.mark.parametrize("case", sorted(TRACEBACK_CASES))
def test_no_traceback(case, finished_run, tmp_path, capsys):
    spec, _, cache = finished_run
    one_arm = tmp_path / "one.toml"
    one_arm.write_text(_spec_text(cache).split("[arms.treatment]")[0].replace("share = 0.5", "share = 1.0"))
    deep = tmp_path / "deep.toml"
    deep.write_text(_spec_text(cache) + "\n[world.x]\n" + ".".join(["k"] * 200) + " = 1\n")
    argv, needle = TRACEBACK_CASES[case]
    places = {"spec": str(spec), "out": str(tmp_path / "out"), "one_arm": str(one_arm), "deep": str(deep)}
    assert main([a.format(**places) for a in argv]) == 2
    line = _one_error(capsys)
    assert needle in line and len(line) < 400, line
    assert not (tmp_path / "out").exists()


def _tampered_json(run: Path, name: str, edit) -> None:
    """Change ``name`` and re-seal the record as if simab had written it: only the reader's
    own type checks can then catch the edit."""
    from simab.record import checksum, sha256

    path = run / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    record = json.loads((run / "manifest.json").read_text())
    if name != "manifest.json":
        record["files"][name] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    record["checksum"] = checksum(record)
    (run / "manifest.json").write_text(json.dumps(record))


WRONG_TYPES = {
    "run_json_list": ("run.json", lambda d: []),
    "run_json_alpha_string": ("run.json", lambda d: {**d, "alpha": "0.05"}),
    "run_json_arms_list": ("run.json", lambda d: {**d, "arms": ["control", "treatment"]}),
    "run_json_runtime_string": ("run.json", lambda d: {**d, "runtime": {"wall_s": "slow", "exposures_per_s": 1}}),
    "spec_json_shards_string": ("spec.json", lambda d: {**d, "shards": "2"}),
    "spec_json_shards_1e8": ("spec.json", lambda d: {**d, "shards": 100_000_000}),
    "spec_json_arms_null": ("spec.json", lambda d: {**d, "arms": None}),
    "manifest_files_list": ("manifest.json", lambda d: {**d, "files": []}),
    "manifest_shards_string": ("manifest.json", lambda d: {**d, "shards": {"0": "done"}}),
    "manifest_part_plan": ("manifest.json", lambda d: {**d, "part_plan": {"tables": ["x"], "shards": 2}}),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
@pytest.mark.parametrize("command", ["report", "check", "power"])
def test_wrong_types_in_a_run_folder_are_one_line(run_copy, capsys, case, command):
    _, run = run_copy
    name, edit = WRONG_TYPES[case]
    _tampered_json(run, name, edit)
    argv = {"report": ["report", str(run)], "check": ["check", str(run), "--expect", "ctr.rel_lift > -1"],
            "power": ["power", "--from-run", str(run), "--rel-mde", "0.1"]}[command]
    assert main(argv) == 2
    _one_error(capsys)


@pytest.mark.parametrize("report", [[], {"metrics": []}, {"metrics": {"ctr": {"comparisons": {"t_vs_c": {
    "rel_lift": "big"}}}}}])
def test_malformed_report_json_is_one_line(run_copy, capsys, report):
    from simab.reports.expectations import check_run

    _, run = run_copy
    (run / "report.json").write_text(json.dumps(report))
    assert main(["check", str(run), "--expect", "ctr.rel_lift > 0"]) == 2
    assert "report.json does not match its digest" in _one_error(capsys)
    from simab.errors import SimabError

    with pytest.raises(SimabError, match="report.json"):  # the API on such a dict: one line too
        check_run(report, ["ctr.rel_lift > 0"])


# --------------------------------------------------------------------------- 8. bounded work
UNBOUNDED = {
    "tick_s_tiny": (["run", "{spec}", "--out", "{out}", "--set", "serving.tick_s=1e-9"], "serving.tick_s"),
    "shards_3000": (["run", "{spec}", "--out", "{out}", "--set", "shards=3000"], "shards"),
    "replicates_1e12": (["sweep", "{spec}", "--out", "{out}", "--replicates", "1000000000000"], "--replicates"),
    "grid_1000_by_1000": (["sweep", "{spec}", "--out", "{out}",
                           "--grid", "seed=" + ",".join(str(i) for i in range(1000)),
                           "--grid", "duration_days=" + ",".join(f"{0.1 + i * 1e-4:.4f}" for i in range(1000))],
                          "--grid"),
}


@pytest.mark.parametrize("case", sorted(UNBOUNDED))
def test_unbounded_work_is_refused_at_once(case, finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    argv, needle = UNBOUNDED[case]
    assert main([a.format(spec=spec, out=tmp_path / "out") for a in argv]) == 2
    assert needle in _one_error(capsys)
    assert not (tmp_path / "out").exists()


def _numeric_fields(model, prefix=""):
    """(dotted name, has a lower bound, has an upper bound) of every number of a spec model."""
    import typing

    from annotated_types import Ge, Gt, Le, Lt
    from pydantic import BaseModel

    for name, f in model.model_fields.items():
        types = [f.annotation, *typing.get_args(f.annotation)]
        for t in [x for u in types for x in (u, *typing.get_args(u))]:
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from _numeric_fields(t, f"{prefix}{name}.")
        if any(t in (int, float) for t in types) and bool not in types:
            yield (f"{prefix}{name}", any(isinstance(m, (Ge, Gt)) for m in f.metadata),
                   any(isinstance(m, (Le, Lt)) for m in f.metadata))


def test_every_number_of_a_spec_is_bounded():
    """The class of #8: every numeric key of a campaign (world included) has both bounds;
    ramp shares (a table of arm -> share) are checked by the allocation check."""
    from simab.spec import CampaignSpec

    fields = list(_numeric_fields(CampaignSpec))
    assert len(fields) > 60  # the walk reaches the world's keys
    unbounded = sorted({name for name, lo, hi in fields if not (lo and hi)})
    assert unbounded == ["ramps.shares"]


def test_report_refuses_a_spec_json_with_1e8_shards(run_copy, capsys):
    _, run = run_copy
    doc = json.loads((run / "spec.json").read_text())
    doc["shards"] = 100_000_000
    (run / "spec.json").write_text(json.dumps(doc))
    assert main(["report", str(run)]) == 2
    assert "spec.json does not match its digest" in _one_error(capsys)


def test_the_record_is_saved_in_linear_time():
    """Recording many shards must not rewrite a record of all of them after each one."""
    from simab.record import SAVE_SHARE, SMALL_SAVE_S

    assert SAVE_SHARE <= 0.05 and SMALL_SAVE_S <= 0.05


# --------------------------------------------------------------------------- 9. silent nonsense
NONSENSE = {
    "share_1e-300": (["--set", "arms.treatment.share=1e-300"], "arms.treatment.share"),
    "metrics_empty": (["--set", "metrics=[]"], "metrics"),
    "alpha_1e-300": (["--set", "alpha=1e-300"], "alpha"),
}


@pytest.mark.parametrize("case", sorted(NONSENSE))
def test_nonsense_spec_values_are_refused(case, finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    flags, key = NONSENSE[case]
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), *flags]) == 2
    assert _one_error(capsys).startswith(f"error: --set: {key}: ")


@pytest.mark.parametrize(("argv", "needle"), [
    (["world", "default", "--days", "1e308"], "--days"),
    (["train", "--world", "default", "--policy", "dnn", "--lr", "1e308"], "--lr"),
    (["ope", "{spec}", "--logging", "plackett_luce", "--temperature", "1e-300"], "--temperature"),
    (["power", "--baseline", "0.05", "--sd", "0.2", "--rel-mde", "0.1", "--ratio", "1e-300"], "--ratio"),
    (["check", "{run}", "--expect", "ctr.rel_lift > 1e999999999"], "--expect"),
    (["power", "--from-run", "{run}", "--baseline", "0.1", "--rel-mde", "0.1"], "--baseline"),
    (["power", "--from-run", "{run}", "--sd", "0.1", "--rel-mde", "0.1"], "--sd"),
])
def test_nonsense_flags_are_refused(argv, needle, run_copy, tmp_path, capsys):
    spec, run = run_copy
    argv = [a.format(spec=spec, run=run) for a in argv]
    if argv[0] in ("world", "train", "ope"):
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert _one_error(capsys).startswith(f"error: {needle}: ")
    assert not (tmp_path / "out").exists()


def test_every_null_in_report_json_has_a_flag(finished_run):
    from simab.reports.null_flags import null_fields

    _, run, _ = finished_run
    doc = json.loads((run / "report.json").read_text())
    records = [doc["srm"]]
    for m in doc["metrics"].values():
        records += list(m["arms"].values()) + list(m["comparisons"].values())
        records += [r for seg in ("per_scenario", "per_day") for by in m[seg].values() for r in by.values()]
    nulls = [r for r in records if null_fields(r)]
    assert nulls  # latency has no truth: the test has something to check
    assert all(r["flags"] for r in nulls)


def test_power_answers_match_the_normal_formula_over_the_allowed_range():
    """statsmodels' solver returned a wrong sample size for alpha below ~1e-3 (issue 28 #7);
    n = 2 (z_{1-a/2} + z_{power})^2 / d^2 (Cohen 1988) is the large-n limit of the t-test's."""
    from scipy.stats import norm

    from simab.reports.power import sample_size

    for alpha in (0.05, 1e-3, 1e-6):  # (above ~0.1 the normal formula's one tail is no longer all)
        for power in (0.8, 0.9999):
            n = sample_size(0.1, 0.05, 0.2, alpha=alpha, power=power).n_control
            normal = 2 * (norm.ppf(1 - alpha / 2) + norm.ppf(power)) ** 2 / 0.025**2
            assert normal <= n <= normal * 1.001 + 3, (alpha, power, n, normal)  # t is a little wider


# --------------------------------------------------------------------------- 10. links
def test_overwrite_never_writes_through_a_link(finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    outside = tmp_path / "outside"
    outside.mkdir()
    d = tmp_path / "d"
    d.mkdir()
    (d / "exposures").symlink_to(outside, target_is_directory=True)
    assert main(["run", str(spec), "--out", str(d), "--overwrite"]) == 2
    assert "exposures: not written by simab, and simab would write there" in _one_error(capsys)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in d.iterdir()) == ["exposures"]


def test_a_link_in_a_finished_run_is_refused(run_copy, tmp_path, capsys):
    _, run = run_copy
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run / "requests", elsewhere)
    (run / "requests").symlink_to(elsewhere, target_is_directory=True)
    assert main(["report", str(run)]) == 2
    assert "behind a symbolic link" in _one_error(capsys)


# --------------------------------------------------------------------------- 11. one run per folder
_HOLDER = """
import sys, time
from simab.run.lock import FolderLock
lock = FolderLock.acquire(sys.argv[1], "simab run")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_command_is_refused_while_one_holds_the_folder(run_copy, capsys):
    spec, run = run_copy
    before = _tree(run)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for argv in (["run", str(spec), "--out", str(run)], ["run", str(spec), "--out", str(run), "--resume"],
                     ["report", str(run)], ["check", str(run), "--expect", "ctr.rel_lift > -1"],
                     ["power", "--from-run", str(run), "--rel-mde", "0.1"]):
            assert main(argv) == 2, argv
            line = _one_error(capsys)
            assert "another simab command (pid" in line and "is writing this folder" in line, line
    finally:
        holder.communicate("")
    assert {k: v for k, v in _tree(run).items() if k != "folder.lock"} == before


def test_a_lock_left_by_a_dead_command_is_taken_over(run_copy, capsys):
    spec, run = run_copy
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / "folder.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename,
                                                "command": "simab run"}))
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    assert not (run / "folder.lock").exists()


# `simab run` that stops, holding its folder, until told to go on (stdin): a run in progress
_GATED_RUN = """
import sys
import simab.run.runner as runner
real = runner._run_in
def gated(*args, **kwargs):
    print("holding", flush=True)
    sys.stdin.readline()
    return real(*args, **kwargs)
runner._run_in = gated
from simab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # two real processes (~30 s); test_a_second_command_is_refused_... holds the same fast
def test_two_runs_at_once_one_is_refused(finished_run, tmp_path):
    """Two `simab run` processes into one folder: the second, started while the first holds
    the folder, is refused with one line; the first finishes a verified run."""
    from simab.run.verify import verify_run

    spec, _, _ = finished_run
    out = tmp_path / "d"
    env = {**os.environ, "SIMAB_QUIET": "1"}
    args = ["run", str(spec), "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-c", _GATED_RUN, *args], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "holding"
        second = subprocess.run([sys.executable, "-m", "simab.cli.main", *args], env=env, capture_output=True,
                                text=True)
    finally:
        _, err = first.communicate("go\n", timeout=600)
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and "is writing this folder" in second.stderr
    assert first.returncode == 0, err
    verify_run(out, what="test")


# --------------------------------------------------------------------------- 12. errors name their source
@pytest.mark.parametrize(("argv", "prefix"), [
    (["run", "{spec}", "--out", "{out}", "--set", "arms.treatment.share=0.9"], "error: --set: arms: "),
    (["sweep", "{spec}", "--out", "{out}", "--grid", "arms.treatment.share=0.5,0.9"], "error: --grid: arms: "),
    (["sweep", "{spec}", "--out", "{out}", "--grid", "shards=0"], "error: --grid: shards: "),
    (["sweep", "{spec}", "--out", "{out}", "--set", "world.n_users=1"], "error: --set: world.n_users: "),
    (["calibrate", "--battery", "aa", "--users", "1000000000", "--out", "{out}"], "error: --users: "),
    (["train", "--world", "default", "--policy", "dnn", "--set", "colour=1", "--out", "{out}"],
     "error: --set: colour: "),
    (["run", "{spec}", "--out", "{out}", "--seed", "-1"], "error: --seed: "),
])
def test_errors_name_their_source(argv, prefix, finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    assert main([a.format(spec=spec, out=tmp_path / "out") for a in argv]) == 2
    line = _one_error(capsys)
    assert line.startswith(prefix), line


def test_a_file_error_names_the_file_and_key(finished_run, tmp_path, capsys):
    _, _, cache = finished_run
    spec = tmp_path / "c.toml"
    spec.write_text(_spec_text(cache).replace("share = 0.5\n\n[arms.treatment]", "share = 0.9\n\n[arms.treatment]"))
    assert main(["run", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert _one_error(capsys).startswith(f"error: {spec}: arms: ")
    # a flag that does not cause the error leaves it with the file
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--set", "seed=3"]) == 2
    assert _one_error(capsys).startswith(f"error: {spec}: arms: ")


# --------------------------------------------------------------------------- 13. minor
def test_killing_the_command_ends_its_workers(finished_run, tmp_path):
    """SIGKILL to `simab run --workers 2`: its workers end too (they used to keep writing parts)."""
    spec, _, cache = finished_run
    big = tmp_path / "big.toml"
    big.write_text(_spec_text(cache).replace("n_users = 300", "n_users = 4000")
                   .replace("duration_days = 0.2", "duration_days = 2.0").replace("shards = 2", "shards = 16"))
    out = tmp_path / "run"
    env = {**os.environ, "SIMAB_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "simab.cli.main", "run", str(big), "--out", str(out),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 300
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(proc.pid)
        assert proc.poll() is None and len(workers) >= 2, "the workers never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)]
    finally:
        for w in _children(proc.pid):
            os.kill(w, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_report_on_a_read_only_run(run_copy, capsys, monkeypatch):
    """An archived run on a read-only mount (simulated: the tests may run as root) is
    verified, analysed and printed; nothing is written."""
    _, run = run_copy
    before = _tree(run)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == run and mode & os.W_OK
                        else real(p, mode, **k))
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert "treatment_vs_control" in captured.out and "read-only" in captured.err
    assert _tree(run) == before


@pytest.mark.parametrize(("argv", "name"), [
    (["train", "--world", "default", "--policy", "dnn", "--users", "50", "--out", "{out}"], "metrics.json"),
    (["sweep", "{spec}", "--out", "{out}"], "sweep.md"),
    (["ope", "{spec}", "--out", "{out}"], "ope.md"),
    (["world", "default", "--users", "50", "--out", "{out}"], "world.json"),
    (["calibrate", "--battery", "aa", "--runs", "2", "--out", "{out}"], "calibration.md"),
    (["analyze", "{data}", "--arm", "arm", "--control", "c", "--metric", "y=y", "--out", "{out}"], "report.md"),
])
def test_every_command_keeps_a_users_file(argv, name, finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("mine\n")
    data = _experiment(tmp_path)
    assert main([a.format(spec=spec, out=out, data=data) for a in argv]) == 2
    assert f"{name}: not written by simab" in _one_error(capsys)
    assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).read_text() == "mine\n"


def _experiment(tmp_path: Path) -> Path:
    """A small real experiment's data for `simab analyze` (one row per unit)."""
    path = tmp_path / "exp.csv"
    path.write_text("arm,uid,y\n" + "".join(f"{'c' if i % 2 else 't'},{i},{i % 5}\n" for i in range(60)))
    return path


def test_check_verifies_the_report_of_simab_analyze(tmp_path, capsys):
    """`simab analyze` holds its folder by record too, and `check` verifies its report."""
    out = tmp_path / "out"
    argv = ["analyze", str(_experiment(tmp_path)), "--arm", "arm", "--control", "c", "--metric", "y=y",
            "--out", str(out)]
    assert main(argv) == 0
    assert main(["check", str(out), "--expect", "y.rel_lift > -10"]) == 0
    assert main(argv) == 0  # its own earlier report is replaced
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    report["metrics"]["y"]["comparisons"]["t_vs_c"]["rel_lift"] = 99.0
    (out / "report.json").write_text(json.dumps(report))
    assert main(["check", str(out), "--expect", "y.rel_lift > 50"]) == 2
    assert "report.json does not match its digest" in _one_error(capsys)


def test_a_hand_edited_sweep_row_is_not_reused(finished_run, tmp_path, capsys):
    spec, _, _ = finished_run
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    rows_file = out / "runs" / "p000-r0000" / "rows.json"
    rows = json.loads(rows_file.read_text())
    honest = rows["rows"][0]["rel_lift"]
    rows["rows"][0]["rel_lift"] = 42.0
    rows_file.write_text(json.dumps(rows))
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "not reused (rows.json does not match its digest" in captured.err
    assert json.loads(rows_file.read_text())["rows"][0]["rel_lift"] == honest
    rerun = rows_file.read_bytes()  # holds the run's own wall time: a new run would write other bytes
    assert main(["sweep", str(spec), "--out", str(out)]) == 0  # and an intact run is reused
    assert rows_file.read_bytes() == rerun


def test_simab_quiet_silences_the_training_bar(capsys, monkeypatch):
    from simab.policies.base import build_policy
    from simab.policies.synthetic import SyntheticWorld, synthetic_spec
    from simab.policies.trainer import TrainerConfig, fit

    spec = synthetic_spec()
    source = SyntheticWorld(spec, seed=0).source(200, seed=1)
    for quiet, shown in (("0", True), ("1", False)):
        monkeypatch.setenv("SIMAB_QUIET", quiet)
        policy = build_policy("dnn", {"embedding_dim": 8, "mlp_units": [16]}, spec, seed=0)
        fit(policy, source, None, TrainerConfig(epochs=1, batch_size=32, progress=True))
        assert ("dnn epoch 1" in capsys.readouterr().err) is shown


def test_calibrate_help_states_the_runs_it_judges_from(capsys):
    from simab.batteries.calibrate import MIN_RUNS_TO_JUDGE

    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"fewer than {MIN_RUNS_TO_JUDGE} are run" in text and "120" not in text
