"""Command-line argument checking shared by every ``simab`` subcommand.

:class:`Parser` turns argparse's usage errors into a :class:`SimabError` (one line,
exit 2, like every other user error), and the ``type=`` helpers refuse values that
argparse would accept but simab cannot use (``--workers 0``, ``--baseline nan``), naming
the flag.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from simab.errors import SimabError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line SimabErrors naming the command."""

    def error(self, message: str):  # type: ignore[override]
        raise SimabError(message, source=self.prog)


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def finite_float(*, positive: bool = False, unit_interval: bool = False) -> Callable[[str], float]:
    """A finite float; ``positive``: > 0; ``unit_interval``: in (0, 1)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        if unit_interval and not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
        return value

    parse.__name__ = "number"
    return parse


#: What the report's statistics accept (reports.multiplicity.Correction,
#: reports.comparison.REL_METHODS): the choices of ``report``, ``analyze`` and the like.
#: Kept here, not imported, so that ``simab --help`` loads no statistics.
CORRECTIONS = ("holm", "maxt", "bh", "bonferroni", "none")
REL_METHODS = ("delta-log", "delta-linear")
