"""Command-line argument checking shared by every ``simab`` subcommand.

:class:`Parser` turns argparse's usage errors into a :class:`SimabError` (one line,
exit 2, like every other user error), and the ``type=`` helpers refuse values that
argparse would accept but simab cannot use (``--workers 0``, ``--baseline nan``), naming
the flag.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from simab.errors import SimabError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one-line SimabErrors naming the command."""

    def error(self, message: str):  # type: ignore[override]
        # "argument --seed: must be ..." is the flag's fault: name the flag, as every error does
        m = re.match(r"argument (-[-\w]+)(?:/-[-\w]+)*: (.*)", message, flags=re.S)
        if m:
            raise SimabError(m.group(2), source=m.group(1))
        raise SimabError(message, source=self.prog)


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer >= ``low`` (and <= ``high``: every count a flag gives keeps the work and
    memory of a command proportional to what it is asked for)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {_short(value)}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {_short(value)}")
        return value

    parse.__name__ = "integer"
    return parse


def finite_float(*, positive: bool = False, unit_interval: bool = False, low: float | None = None,
                 high: float | None = None) -> Callable[[str], float]:
    """A finite float; ``positive``: > 0; ``unit_interval``: in (0, 1); ``low`` / ``high``:
    within [low, high] (in absolute value for a number that may be negative, when ``low`` > 0
    and ``positive`` is not asked: a relative lift of -1e-300 is as meaningless as +1e-300)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text[:40]}")
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text[:40]}")
        if unit_interval and not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text[:40]}")
        signed = low is not None and low > 0 and not positive
        size = abs(value) if signed else value
        if (low is not None and size < low) or (high is not None and size > high):
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            what = "its size (either sign)" if signed else "it"
            raise argparse.ArgumentTypeError(f"{what} must be in [{lo}, {hi}], got {text[:40]}")
        return value

    parse.__name__ = "number"
    return parse


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"{text[:6]}...({len(text)} digits)"


#: What the report's statistics accept (reports.multiplicity.Correction,
#: reports.comparison.REL_METHODS): the choices of ``report``, ``analyze`` and the like.
#: Kept here, not imported, so that ``simab --help`` loads no statistics.
CORRECTIONS = ("holm", "maxt", "bh", "bonferroni", "none")
REL_METHODS = ("delta-log", "delta-linear")
