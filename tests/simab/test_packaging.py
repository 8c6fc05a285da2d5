"""The wheel (not only the editable install) maps simulators/, policies/, reports/ to
simab.simulators, simab.policies, simab.reports and ships the package data."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_imports(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], check=True)
    wheel = next(wheels.glob("simab-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    code = (
        "import simab, simab.simulators.world, simab.policies.base, simab.reports, pathlib;"
        "from simab.spec import load_campaign; s = load_campaign(); "
        "assert 'site-packages' in simab.reports.__file__, simab.reports.__file__;"
        "from simab.simulators.spec import world_spec; [world_spec(p) for p in "
        "('default','moveline','lifelong','multiscenario3','multiscenario4')]; print('ok', s.name)"
    )
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok default"
    help_out = subprocess.run([str(venv / "bin" / "simab"), "--help"], capture_output=True, text=True)
    assert help_out.returncode == 0 and "run" in help_out.stdout
