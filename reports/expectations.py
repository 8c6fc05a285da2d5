"""Regression expectations on a report: ``ctcvr.rel_ci[0] > 0`` and friends.

Grammar (hand-written; text is never evaluated as Python)::

    expectation := path OP number
    path        := metric [ "." comparison ] "." field [ "[" index "]" ]
                 | metric ".arms." arm "." ( "value" | "true_value" )
    comparison  := <treatment>_vs_<control>     (default: the first comparison)
    field       := abs_lift | abs_ci | rel_lift | rel_ci | p_value | p_value_adjusted
                 | true_rel_lift | sequential.p_value | sequential.rel_ci
                 | cuped.rel_lift | cuped.rel_ci | cuped.p_value
    OP          := ">" | ">=" | "<" | "<=" | "==" | "!="
    number      := decimal or scientific literal, optional sign, optional "%" (÷100)
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from simab.errors import SimabError

OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
FIELDS = (
    "abs_lift",
    "abs_ci",
    "rel_lift",
    "rel_ci",
    "p_value",
    "p_value_adjusted",
    "true_rel_lift",
    "sequential.p_value",
    "sequential.rel_ci",
    "cuped.rel_lift",
    "cuped.rel_ci",
    "cuped.p_value",
)
INTERVAL_FIELDS = {"abs_ci", "rel_ci", "sequential.rel_ci", "cuped.rel_ci"}
ARM_FIELDS = ("value", "true_value")

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATTERN = re.compile(
    rf"""^\s*
    (?P<path>{_NAME}(?:\.{_NAME})*)
    (?:\[\s*(?P<index>[01])\s*\])?
    \s*(?P<op>>=|<=|==|!=|>|<)\s*
    (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?P<percent>%?)
    \s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Expectation:
    """A parsed expectation; ``comparison``/``arm`` are None where not named."""

    text: str
    metric: str
    comparison: str | None
    arm: str | None
    field: str
    index: int | None
    op: str
    number: float


@dataclass(frozen=True)
class ExpectationResult:
    expectation: Expectation
    ok: bool
    actual: float | None
    where: str
    reason: str = ""

    def line(self) -> str:
        e = self.expectation
        actual = "null" if self.actual is None else f"{self.actual:.6g}"
        status = "PASS" if self.ok else "FAIL"
        extra = f" ({self.reason})" if self.reason else ""
        return f"{status} {e.text.strip()}: {self.where} = {actual}{extra}"


def _bad(text: str, problem: str) -> SimabError:
    """A short one-line error (the grammar is in ``simab check --help`` and the README)."""
    shown = text.strip() if len(text.strip()) <= 40 else text.strip()[:37] + "..."
    if len(problem) > 90:
        problem = problem[:87] + "..."
    return SimabError(f"{problem} in {shown!r}; allowed: METRIC[.T_vs_C].FIELD[i] OP NUMBER, "
                      "e.g. 'ctr.rel_ci[0] > 0'", source="<cli>", key="--expect")


def parse_expectation(text: str) -> Expectation:
    """Parse one expectation; anything outside the grammar is a one-line SimabError."""
    match = _PATTERN.match(text)
    if not match:
        raise _bad(text, "cannot parse expectation")
    parts = match["path"].split(".")
    metric, rest = parts[0], parts[1:]
    index = int(match["index"]) if match["index"] is not None else None
    number = float(match["number"]) / (100 if match["percent"] else 1)
    comparison = arm = None
    if rest[:1] == ["arms"]:
        if len(rest) != 3 or rest[2] not in ARM_FIELDS or index is not None:
            raise _bad(text, "arm values are METRIC.arms.ARM.value or .true_value")
        arm, field = rest[1], rest[2]
    else:
        if rest and "_vs_" in rest[0]:
            comparison, rest = rest[0], rest[1:]
        field = ".".join(rest)
        if field not in FIELDS:
            raise _bad(text, f"unknown field {field or '(none)'!r}")
        if (field in INTERVAL_FIELDS) != (index is not None):
            need = "needs an index [0] or [1]" if field in INTERVAL_FIELDS else "takes no index"
            raise _bad(text, f"{field} {need}")
    return Expectation(text, metric, comparison, arm, field, index, match["op"], number)


def _lookup(report: dict, e: Expectation) -> tuple[float | None, str]:
    metrics = report.get("metrics", {})
    if e.metric not in metrics:
        raise _bad(e.text, f"unknown metric {e.metric!r} (report has {', '.join(metrics)})")
    metric = metrics[e.metric]
    if e.arm is not None:
        if e.arm not in metric["arms"]:
            raise _bad(e.text, f"unknown arm {e.arm!r} (report has {', '.join(metric['arms'])})")
        return metric["arms"][e.arm][e.field], f"{e.metric}.arms.{e.arm}.{e.field}"
    comparisons = metric["comparisons"]
    if not comparisons:
        raise _bad(e.text, f"{e.metric} has no comparisons")
    key = e.comparison or next(iter(comparisons))
    if key not in comparisons:
        raise _bad(e.text, f"unknown comparison {key!r} (report has {', '.join(comparisons)})")
    value: object = comparisons[key]
    for part in e.field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if e.index is not None and value is not None:
        value = value[e.index]
    where = f"{e.metric}.{key}.{e.field}" + (f"[{e.index}]" if e.index is not None else "")
    return (None if value is None else float(value)), where


def evaluate(report: dict, expectations: Sequence[Expectation | str]) -> list[ExpectationResult]:
    """Check each expectation against a report.json dict; a null value fails, with its flags."""
    results = []
    for e in expectations:
        e = parse_expectation(e) if isinstance(e, str) else e
        actual, where = _lookup(report, e)
        if actual is None:
            results.append(
                ExpectationResult(e, False, None, where, "value is undefined in this report")
            )
            continue
        results.append(ExpectationResult(e, bool(OPERATORS[e.op](actual, e.number)), actual, where))
    return results


def load_report(run_dir: str | Path) -> dict:
    """report.json of a run folder, analysing the run first when it has none."""
    run_dir = Path(run_dir)
    path = run_dir / "report.json"
    if path.exists():
        return json.loads(path.read_text())
    from simab.reports.analysis import analyze

    return analyze(run_dir).to_json_dict()


def check_run(
    run_dir_or_report: str | Path | dict, expectations: Sequence[str]
) -> tuple[bool, list[str]]:
    """(all passed, one PASS/FAIL line per expectation) — the body of ``simab check``."""
    parsed = [parse_expectation(t) for t in expectations]  # all syntax errors before any work
    report = (
        run_dir_or_report if isinstance(run_dir_or_report, dict) else load_report(run_dir_or_report)
    )
    results = evaluate(report, parsed)
    return all(r.ok for r in results), [r.line() for r in results]
