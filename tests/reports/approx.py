"""Field-by-field comparison of result records computed by two code paths."""

from __future__ import annotations

import dataclasses
import math

import pytest


def assert_records_close(a: object, b: object, rel: float = 1e-12, path: str = "") -> None:
    """Equal structure; floats equal up to ``rel`` (NaN matches NaN), everything else exactly.

    Two code paths (e.g. moments over 8 columns merged per arm vs moments over 2 columns)
    add the same numbers in a different order, so floats agree to rounding, not bit for bit.
    """
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in dataclasses.fields(a):
            assert_records_close(getattr(a, f.name), getattr(b, f.name), rel, f"{path}.{f.name}")
    elif isinstance(a, float) or isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{path}: {a} vs {b}"
        else:
            assert a == pytest.approx(b, rel=rel, abs=0), f"{path}: {a} vs {b}"
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_records_close(x, y, rel, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_records_close(a[k], b[k], rel, f"{path}[{k!r}]")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
