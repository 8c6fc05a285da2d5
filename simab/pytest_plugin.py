"""pytest plugin (``pytest11`` entry point ``simab``): guard a ranking change in CI.

Fixture ``simab_campaign`` runs a campaign and returns its report.json dict;
``assert_lift`` fails with the numbers when a lift is not what the test expects::

    from simab.pytest_plugin import assert_lift

    def test_new_ranker_lifts_ctcvr(simab_campaign):
        report = simab_campaign("campaigns/new_ranker.toml", seed=3)
        assert_lift(report, "ctcvr", min_rel=0.0, ci_excludes_zero=True)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simab.reports.formatting import fmt_pct


def _comparison(report: dict, metric: str, comparison: str | None) -> tuple[str, dict]:
    metrics = report.get("metrics", {})
    if metric not in metrics:
        raise AssertionError(f"{metric}: not in the report (has {', '.join(metrics)})")
    comparisons = metrics[metric]["comparisons"]
    if not comparisons:
        raise AssertionError(f"{metric}: the report has no comparisons")
    key = comparison or next(iter(comparisons))
    if key not in comparisons:
        raise AssertionError(f"{metric}: no comparison {key!r} (has {', '.join(comparisons)})")
    return key, comparisons[key]


def assert_lift(
    report: dict,
    metric: str,
    min_rel: float | None = None,
    ci_excludes_zero: bool | None = None,
    comparison: str | None = None,
    max_rel: float | None = None,
) -> dict:
    """Assert on a metric's relative lift in a report.json dict; returns the comparison.

    ``min_rel`` / ``max_rel``: bounds on the relative lift point estimate.
    ``ci_excludes_zero``: True requires the relative CI to exclude 0, False requires it to
    include 0 (an A/A or "no harm" check).  ``comparison`` picks ``<treatment>_vs_<control>``
    (default: the first).  Undefined (null) numbers always fail.
    """
    key, c = _comparison(report, metric, comparison)
    rel, (lo, hi) = c.get("rel_lift"), c.get("rel_ci") or (None, None)
    facts = (
        f"{metric} {key}: rel lift {fmt_pct(rel, digits=3)}, {int((1 - report.get('alpha', 0.05)) * 100)}% CI "
        f"[{fmt_pct(lo, digits=3)}, {fmt_pct(hi, digits=3)}], p {c.get('p_value')}, true lift {fmt_pct(c.get('true_rel_lift'), digits=3)}"
    )
    problems = []
    if (min_rel is not None or max_rel is not None) and rel is None:
        problems.append("relative lift is undefined")
    if min_rel is not None and rel is not None and rel < min_rel:
        problems.append(f"expected rel lift >= {fmt_pct(min_rel, digits=3)}")
    if max_rel is not None and rel is not None and rel > max_rel:
        problems.append(f"expected rel lift <= {fmt_pct(max_rel, digits=3)}")
    if ci_excludes_zero is not None:
        if lo is None or hi is None:
            problems.append("relative CI is undefined")
        elif ci_excludes_zero and lo <= 0 <= hi:
            problems.append("expected the CI to exclude 0")
        elif not ci_excludes_zero and not lo <= 0 <= hi:
            problems.append("expected the CI to include 0")
    if problems:
        flags = c.get("flags") or []
        raise AssertionError(
            f"{facts}: {'; '.join(problems)}" + (f" (flags: {'; '.join(flags)})" if flags else "")
        )
    return c


def report_of(result: Any) -> dict:
    """report.json dict from whatever ``simab.run_campaign`` returns (dict, run folder, record)."""
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_json_dict"):
        return result.to_json_dict()
    for attribute in ("report", "run_dir"):
        if getattr(result, attribute, None) is not None:
            return report_of(getattr(result, attribute))
    run_dir = Path(result)
    if (run_dir / "report.json").exists():
        return json.loads((run_dir / "report.json").read_text())
    from simab.reports import analyze

    return analyze(run_dir).to_json_dict()


@pytest.fixture
def simab_campaign(tmp_path_factory) -> Callable[..., dict]:
    """Factory: ``simab_campaign(spec=None, **overrides) -> report.json dict``.

    ``spec`` is a campaign TOML path, a table of overrides over the embedded default
    campaign (a dict), or None for the default campaign itself.  Keyword ``overrides`` are
    merged on top (e.g. ``seed=3``).  Each call runs into a fresh temporary folder; the
    pre-period and trained models are cached in the cache folder (``$SIMAB_CACHE``, default
    ``$XDG_CACHE_HOME/simab`` or ``~/.cache/simab``), never in the working directory.
    """

    def run(spec: str | Path | dict | None = None, **overrides: Any) -> dict:
        import simab  # imported lazily: the plugin loads in every pytest run

        table = dict(spec) if isinstance(spec, dict) else {}
        table.update(overrides)
        path = None if isinstance(spec, dict) else spec
        campaign = simab.load_campaign(path, overrides=table or None)
        out = tmp_path_factory.mktemp("simab_campaign")
        return report_of(simab.run_campaign(campaign, out=out))

    return run
