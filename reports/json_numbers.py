"""NaN-free numbers for JSON output: the one place NaN and infinities become ``null``.

JSON has neither NaN nor infinity (``json.dumps(..., allow_nan=False)`` refuses them), and
an undefined number in simab's outputs is ``null`` with a flag that says why.
"""

from __future__ import annotations

import math
from typing import Any


def number(x: Any) -> float | None:
    """A JSON-safe float: None for None, NaN and ±inf; numpy scalars become Python floats."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_safe(x: Any) -> Any:
    """``x`` with every non-finite float (at any depth of dicts, lists, tuples) as None.

    numpy scalars become Python scalars; tuples become lists (their JSON form anyway).
    """
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str | bytes):  # numpy scalar
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x
