"""Progress lines of long runs, on stderr (silenced by ``SIMAB_QUIET=1``)."""

from __future__ import annotations

import os
import sys


def progress(msg: str) -> None:
    if os.environ.get("SIMAB_QUIET") != "1":
        print(msg, file=sys.stderr, flush=True)
