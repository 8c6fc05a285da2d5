"""Shared set-up of the tests of scripts/: the scripts folder on the import path (the scripts
import each other as top-level modules) and no progress bars."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")
