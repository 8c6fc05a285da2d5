"""``simab analyze`` on the command line: a good run writes the three files; every kind of
bad input (issue 31, item 5) is one ``error:`` line, exit 2, no traceback and no report."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simab.cli.main import main

ROWS = 'arm,uid,y,buy\n' + "".join(
    f"{'c' if i % 2 else 't'},{i},{i % 5},{'TRUE' if i % 3 == 0 else 'FALSE'}\n" for i in range(40))


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "exp.csv"
    path.write_text(ROWS)
    return path


def test_good_run_writes_the_report(data, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["analyze", str(data), "--arm", "arm", "--control", "c", "--metric", "y",
                 "--metric", "buy", "--unit", "uid", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {"y", "buy"}
    assert "t_vs_c" in report["metrics"]["buy"]["comparisons"]
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "data check  units_in_several_arms: ok" in capsys.readouterr().out


CASES = {
    "missing_column": (["--metric", "nope"], "no column 'nope'"),
    "missing_arm_column": (["--metric", "y", "--arm", "group"], "no column 'group'"),
    "one_arm": (["--metric", "y", "--where-one-arm"], "only one arm"),
    "non_numeric_metric": (["--metric", "y=arm"], "not numeric"),
    "unknown_control": (["--metric", "y", "--control", "zz"], "unknown control value 'zz'"),
    "empty_file": (["--metric", "y", "--file", "empty"], "the table has no rows"),
    "unreadable_file": (["--metric", "y", "--file", "garbage"], "unreadable"),
    "missing_file": (["--metric", "y", "--file", "missing"], "no such file"),
    "no_metric": ([], "--metric: required"),
    "bad_metric_syntax": (["--metric", "y=a/"], "expected NAME=COLUMN"),
    "alpha_out_of_range": (["--metric", "y", "--alpha", "2"], "argument --alpha"),
    "covariate_unknown_metric": (["--metric", "y", "--covariate", "z=y"], "unknown metric 'z'"),
    "summary_flag_in_unit_mode": (["--metric", "y", "--wide", "c,t"], "--wide: not used"),
    "summary_missing_stats": (["--summary"], "no column 'count'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, data, tmp_path, capsys):
    extra, needle = CASES[case]
    extra = list(extra)
    path = data
    if "--where-one-arm" in extra:
        extra.remove("--where-one-arm")
        path = tmp_path / "one.csv"
        path.write_text("".join(line for line in ROWS.splitlines(True) if not line.startswith("t")))
    if "--file" in extra:
        i = extra.index("--file")
        kind = extra[i + 1]
        del extra[i:i + 2]
        path = tmp_path / f"{kind}.parquet"
        if kind == "empty":
            pq.write_table(pa.table({"arm": pa.array([], pa.string()), "y": pa.array([], pa.int64())}), path)
        elif kind == "garbage":
            path.write_bytes(b"not a parquet file at all")
    argv = ["analyze", str(path), "--arm", "arm", "--control", "c", "--out", str(tmp_path / "out"), *extra]
    # the last --arm / --control win in argparse: the case's own value overrides the default
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "report.json").exists()
