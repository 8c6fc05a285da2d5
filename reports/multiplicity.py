"""Multiple-testing correction across every metric and treatment arm of a report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from statsmodels.stats.multitest import multipletests

Correction = Literal["holm", "bh", "bonferroni", "none"]
_STATSMODELS_METHOD = {"holm": "holm", "bh": "fdr_bh", "bonferroni": "bonferroni"}


def adjust_p_values(p_values: Sequence[float], correction: Correction = "holm") -> list[float]:
    """Adjusted p-values, one family over all given tests.

    ``holm``: Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure",
    family-wise error control.  ``bh``: Benjamini & Hochberg (1995), false discovery rate.
    Both via statsmodels ``multipletests``.  NaN p-values (undefined tests) stay NaN and do
    not count as members of the family.
    """
    if correction not in (*_STATSMODELS_METHOD, "none"):
        raise ValueError(
            f"correction must be one of holm, bh, bonferroni, none; got {correction!r}"
        )
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    defined = ~np.isnan(p)
    if correction != "none" and defined.any():
        out[defined] = multipletests(p[defined], method=_STATSMODELS_METHOD[correction])[1]
    return out.tolist()
