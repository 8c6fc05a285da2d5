"""Faults: SIGKILL mid-run then --resume gives the uninterrupted run's exposures; a
corrupt part is detected and redone."""

import json
import os
import signal
import subprocess
import sys
import time

from simab.eventlog import Manifest, digest, part_path, read_table
from simab.runner import run_campaign
from simab.spec import load_campaign

from .conftest import tiny

SORT = ["request", "position"]


def _spec_file(tmp_path, **over):
    import tomllib  # noqa: F401  (the spec is written as TOML below)

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


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    path = _spec_file(tmp_path, shards=8, duration_days=1.0, world={"n_users": 800})
    ref = run_campaign(load_campaign(path), out=tmp_path / "ref")
    want = digest(read_table(ref.run_dir, "exposures"), SORT)

    out = tmp_path / "killed"
    env = {**os.environ, "SIMAB_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "simab.cli", "run", str(path), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        m = out / "manifest.json"
        if m.exists():
            try:
                n = len(json.loads(m.read_text())["shards"])
            except (json.JSONDecodeError, KeyError):
                n = 0
            if n >= 2:
                proc.send_signal(signal.SIGKILL)
                killed_at = n
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "run.json").exists()  # an interrupted run is never marked complete
    assert len(Manifest(out).data["shards"]) < 8

    res = run_campaign(load_campaign(path), out=out, resume=True)
    assert digest(read_table(res.run_dir, "exposures"), SORT) == want


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
