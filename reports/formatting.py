"""How numbers are written in tables and messages: the one set of formatters of the
terminal summary, ``report.md`` / ``report.html``, the sweep and calibration tables,
``ope.md`` and the pytest plugin's messages.  An undefined number (None or NaN) is written
``n/a``.  (The world's figure page, ``simulators/figures.py``, keeps its own: the world
imports nothing of ``reports``.)"""

from __future__ import annotations

NA = "n/a"


def fmt_number(x: float | None, spec: str = ".4g") -> str:
    """``x`` in the format ``spec``; ``n/a`` when undefined."""
    return NA if x is None or x != x else format(x, spec)


def fmt_value(x: float | None) -> str:
    """A metric's value: 4 significant digits, or a whole number with thousands separators
    from 10,000 up."""
    if x is None or x != x:
        return NA
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def fmt_pct(x: float | None, sign: str = "+", digits: int = 2) -> str:
    """A fraction as a percentage (``sign`` "+": always signed, a lift; "": a rate)."""
    return fmt_number(x, f"{sign}.{digits}%")


def fmt_ci(ci: tuple[float | None, float | None], sign: str = "+", digits: int = 2) -> str:
    """``[low, high]`` as percentages; ``n/a`` when either end is undefined."""
    lo, hi = ci
    if lo is None or hi is None or lo != lo or hi != hi:
        return NA
    return f"[{fmt_pct(lo, sign, digits)}, {fmt_pct(hi, sign, digits)}]"


def fmt_p(p: float | None) -> str:
    """A p-value: 4 decimals, ``<1e-4`` below."""
    if p is None or p != p:
        return NA
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


def fmt_covered(c: bool | None) -> str:
    """Whether an interval covered the truth: ``yes``, ``NO``, or ``-`` when no truth is known."""
    return "-" if c is None else ("yes" if c else "NO")
