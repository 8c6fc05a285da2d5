"""Statistics and reports over the event log.

Public API::

    ratio_comparison(num_c, den_c, num_t, den_t, alpha=0.05, rel_method="delta") -> Comparison
    mean_comparison(x_c, x_t, alpha=0.05, rel_method="delta") -> Comparison
    analyze(run_dir, *, alpha=None, correction="holm") -> Report
    write_report(report, run_dir) -> list[Path]
    summary_table(report) -> str
"""

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
