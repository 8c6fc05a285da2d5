"""Progress messages of long commands (campaign, sweep, calibration, training): one line
each on stderr, silenced by ``SIMAB_QUIET=1``.  A leaf module (imports nothing of simab)."""

from __future__ import annotations

import os
import sys


def progress(message: str) -> None:
    """Print ``message`` on stderr (flushed) unless the environment sets ``SIMAB_QUIET=1``."""
    if os.environ.get("SIMAB_QUIET") != "1":
        print(message, file=sys.stderr, flush=True)
