"""Writing report.json / report.md / report.html atomically into the run folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from simab.reports.report import Report


def write_atomic(path: Path, text: str) -> Path:
    """Write to a temp file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
