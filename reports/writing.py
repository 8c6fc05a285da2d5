"""Writing report.json / report.md / report.html atomically into the run folder."""

from __future__ import annotations

import json
from pathlib import Path

from simab.atomic import write_atomic
from simab.reports.report import Report


def write_report(report: Report, run_dir: str | Path) -> list[Path]:
    """Write report.json, report.md and report.html; return their paths."""
    from simab.reports.render_html import render_html
    from simab.reports.render_markdown import render_markdown

    run_dir = Path(run_dir)
    payload = json.dumps(report.to_json_dict(), indent=2, allow_nan=False)
    return [
        write_atomic(run_dir / "report.json", payload + "\n"),
        write_atomic(run_dir / "report.md", render_markdown(report)),
        write_atomic(run_dir / "report.html", render_html(report)),
    ]
