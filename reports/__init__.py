"""Statistics and reports over the event log.

Public API::

    ratio_comparison(num_c, den_c, num_t, den_t, alpha=0.05, rel_method="delta") -> Comparison
    mean_comparison(x_c, x_t, alpha=0.05, rel_method="delta") -> Comparison
    analyze(run_dir, *, alpha=None, correction="holm") -> Report
    write_report(report, run_dir) -> list[Path]
    summary_table(report) -> str

The names load on first use (PEP 562), so importing a light submodule such as
``simab.reports.metric_registry`` (spec validation does) does not load scipy or pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "analyze": "analysis",
    "Comparison": "comparison",
    "RatioComparison": "comparison",
    "compare_mean_sums": "comparison",
    "mean_comparison": "comparison",
    "ratio_comparison": "comparison",
    "Report": "report",
    "summary_table": "summary",
    "write_report": "writing",
}

if TYPE_CHECKING:
    from simab.reports.analysis import analyze
    from simab.reports.comparison import (
        Comparison,
        RatioComparison,
        compare_mean_sums,
        mean_comparison,
        ratio_comparison,
    )
    from simab.reports.report import Report
    from simab.reports.summary import summary_table
    from simab.reports.writing import write_report


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Comparison",
    "RatioComparison",
    "Report",
    "analyze",
    "compare_mean_sums",
    "mean_comparison",
    "ratio_comparison",
    "summary_table",
    "write_report",
]
