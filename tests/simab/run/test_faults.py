"""Faults: SIGKILL mid-run then --resume gives the uninterrupted run's exposures; a
corrupt part is detected and redone."""

import os
import signal
import subprocess
import sys

import pytest

from simab.errors import SimabError
from simab.eventlog import Manifest, digest, part_path, read_table
from simab.run.runner import run_campaign
from simab.spec import load_campaign

from ..conftest import tiny

SORT = ["request", "position"]


def _spec_file(tmp_path, **over):
    o = tiny(tmp_path, **over)
    lines = ['name = "faults"', f"seed = {o.get('seed', 3)}", f"duration_days = {o['duration_days']}",
             f"shards = {o['shards']}", "[world]", 'preset = "default"']
    lines += [f"{k} = {v}" for k, v in o["world"].items()]
    lines += ["[training]", f'cache_dir = "{o["training"]["cache_dir"]}"']
    lines += ['[arms.control]', 'policy = "popularity"', "share = 0.5",
              '[arms.treatment]', 'policy = "oracle"', "share = 0.5"]
    path = tmp_path / "faults.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# Runs `simab run` in a process that SIGKILLs itself when the manifest is about to record
# its KILL_AT-th finished shard: that shard's parts are on disk but not listed, the state a
# crash between writing a part and recording it leaves.  The kill point is a count of
# shards, not a time, so the test does not depend on how fast the machine is.
KILL_AT = 3
_KILLING_CLI = f"""
import os, signal, sys
from simab import eventlog
from simab.cli.main import main

add, seen = eventlog.Manifest.add, []
def add_or_die(self, shard, parts, extra=None):
    seen.append(shard)
    if len(seen) == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
    add(self, shard, parts, extra)
eventlog.Manifest.add = add_or_die
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    path = _spec_file(tmp_path, shards=8, duration_days=1.0, world={"n_users": 800})
    ref = run_campaign(load_campaign(path), out=tmp_path / "ref")
    want = digest(read_table(ref.run_dir, "exposures"), SORT)

    out = tmp_path / "killed"
    env = {**os.environ, "SIMAB_QUIET": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILLING_CLI, "run", str(path), "--out", str(out), "--workers", "1"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "run.json").exists()  # an interrupted run is never marked complete
    recorded = Manifest(out).data["shards"]
    assert sorted(recorded) == ["0", "1"]  # workers = 1 runs the shards in order
    assert part_path(out, "exposures", 2).exists() and not Manifest(out).complete(2)

    res = run_campaign(load_campaign(path), out=out, resume=True)
    assert sorted(Manifest(res.run_dir).data["shards"], key=int) == [str(s) for s in range(8)]
    assert digest(read_table(res.run_dir, "exposures"), SORT) == want


def test_resume_with_a_damaged_manifest_is_an_error(tmp_path):
    """An unreadable manifest is reported, not silently replaced by an empty one."""
    path = _spec_file(tmp_path)
    res = run_campaign(load_campaign(path), out=tmp_path / "r", report=False)
    (res.run_dir / "manifest.json").write_text('{"shards": {"0": ')
    with pytest.raises(SimabError, match="manifest.json: not valid JSON"):
        run_campaign(load_campaign(path), out=res.run_dir, resume=True, report=False)
    (res.run_dir / "manifest.json").write_text("[]")
    with pytest.raises(SimabError, match="manifest.json: not a record of this simab"):
        Manifest(res.run_dir)


def test_corrupt_part_is_detected_and_redone(tmp_path):
    path = _spec_file(tmp_path)
    res = run_campaign(load_campaign(path), out=tmp_path / "r")
    want = digest(read_table(res.run_dir, "exposures"), SORT)
    p = part_path(res.run_dir, "exposures", 1)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])  # a truncated part
    assert not Manifest(res.run_dir).complete(1)
    assert Manifest(res.run_dir).complete(0)
    again = run_campaign(load_campaign(path), out=res.run_dir, resume=True)
    assert Manifest(again.run_dir).complete(1)
    assert digest(read_table(again.run_dir, "exposures"), SORT) == want
