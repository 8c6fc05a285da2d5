import json
import math

import numpy as np

from simab.reports.json_numbers import json_safe, number


def test_number():
    assert number(None) is None and number(math.nan) is None and number(-math.inf) is None
    assert number(np.float32(0.5)) == 0.5 and type(number(np.int64(3))) is float


def test_json_safe_nested():
    data = {"a": [1.0, math.nan, (math.inf, 2)], "b": {"c": np.float64("nan"), "d": np.int64(4)},
            "e": "nan", "f": True}
    out = json_safe(data)
    assert out == {"a": [1.0, None, [None, 2]], "b": {"c": None, "d": 4}, "e": "nan", "f": True}
    json.dumps(out, allow_nan=False)  # would raise on any NaN left
