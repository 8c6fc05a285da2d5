"""The event log's storage: dictionary columns on disk, parts whose dictionaries differ,
streamed row groups (bounded memory), atomic parts and resume after a shard killed while
writing."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from simab.eventlog import (
    SCHEMAS,
    Manifest,
    PartWriter,
    ShardSink,
    digest,
    part_path,
    read_table,
    sha256,
    with_version,
)
from simab.reports import analyze
from simab.reports.run_data import decode_dictionaries, read_run
from simab.run.runner import run_campaign
from simab.spec import load_campaign

from .conftest import tiny

# an unfinished write: simab.atomic.temp_beside names it ".<part name>.<random>.tmp" (a name the
# run-folder checks treat as simab's, and never as a part)
_TEMP = re.compile(r"^\.shard-\d{5}\.parquet\..+\.tmp$")

CATEGORICAL = {"exposures": {"campaign", "arm", "scenario"}, "requests": {"arm", "scenario"},
               "assignments": {"arm"}, "moveline": {"scene", "domain"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eventlog")
    os.environ["SIMAB_QUIET"] = "1"
    return run_campaign(load_campaign(overrides=tiny(tmp)), out=tmp / "run").run_dir


def _requests(n: int, arms: list[str], start: int = 0) -> pa.Table:
    """``n`` rows of the requests table, arms cycling through ``arms`` (plain strings)."""
    i = np.arange(start, start + n)
    return pa.table({
        "request": i, "user": i % 97, "session": i // 5, "arm": [arms[k % len(arms)] for k in range(n)],
        "ts": i * 0.5, "day": (i // 1000).astype(np.int32), "scenario": ["home"] * n,
        "n_candidates": np.full(n, 50, np.int32), "latency_ms": i * 0.01, "batch_size": np.ones(n, np.int32),
    })


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ schema on disk
def test_categorical_columns_are_dictionary_columns_on_disk(run):
    for table, names in CATEGORICAL.items():
        schema = pq.read_schema(part_path(run, table, 0))
        for f in schema:
            if f.name in names:
                assert f.type == pa.dictionary(pa.int32(), pa.string()), (table, f.name)
            else:
                assert not pa.types.is_dictionary(f.type), (table, f.name)
        assert schema.equals(with_version(SCHEMAS[table], table), check_metadata=False)


def test_digest_counts_dictionary_columns_as_their_strings():
    t = _requests(500, ["b", "a"])
    encoded = t.set_column(3, "arm", t["arm"].dictionary_encode())
    assert pa.types.is_dictionary(encoded.schema.field("arm").type)
    assert digest(encoded, ["request"]) == digest(t, ["request"])
    # sorting by a dictionary column (Arrow cannot sort dictionaries) sorts by the strings
    assert digest(encoded, ["arm", "request"]) == digest(t, ["arm", "request"])


# ------------------------------------------------------------------ differing dictionaries
def _split_by_arm(src: Path, dst: Path) -> None:
    """Copy ``src``'s event log to ``dst`` with the rows regrouped so that shard 0 holds
    only the control arm's rows and shard 1 only the treatment's (rows keep their order):
    each part's dictionary then names one arm only."""
    import shutil

    shutil.copytree(src, dst)
    manifest = Manifest(dst)
    for table in CATEGORICAL:
        t = read_table(src, table)
        arm = decode_dictionaries(t.select(["arm"]))["arm"] if "arm" in t.column_names else None
        for shard, name in enumerate(["control", "treatment"]):
            rows = t.filter(pc.equal(arm, name)) if arm is not None else (t if shard == 0 else t.slice(0, 0))
            rows = decode_dictionaries(rows).cast(with_version(SCHEMAS[table], table))  # fresh dictionaries
            manifest.data["shards"].setdefault(str(shard), {"parts": {}})["parts"][table] = \
                write_part(dst, table, shard, rows)
    manifest.save()


def write_part(run_dir, table: str, shard: int, data: pa.Table) -> dict:
    """Write one table's part for a shard in one go; its manifest entry."""
    with PartWriter(run_dir, table, shard, data.schema) as part:
        part.write(data)
        return part.close()


def test_parts_with_different_dictionaries_give_the_same_report(run, tmp_path):
    split = tmp_path / "split"
    _split_by_arm(run, split)
    dicts = [pq.read_table(part_path(split, "exposures", s), columns=["arm"])["arm"].chunk(0).dictionary.to_pylist()
             for s in (0, 1)]
    assert dicts == [["control"], ["treatment"]]  # each part's own dictionary

    exp = read_table(split, "exposures")
    assert exp.num_rows == read_table(run, "exposures").num_rows
    assert digest(exp, ["request", "position"]) == digest(read_table(run, "exposures"), ["request", "position"])
    counts = exp.group_by("arm", use_threads=False).aggregate([("arm", "count")])  # works on the unified dictionary
    assert sum(counts["arm_count"].to_pylist()) == exp.num_rows

    keys = ["arm", "user", "day", "scenario"]
    want, got = read_run(run).cells.sort_by([(k, "ascending") for k in keys]), \
        read_run(split).cells.sort_by([(k, "ascending") for k in keys])
    # each cell sums the same rows in the same order (the split keeps row order within an arm)
    assert got.equals(want)

    a, b = analyze(run).to_json_dict(), analyze(split).to_json_dict()
    assert a["metrics"].keys() == b["metrics"].keys()
    for m, x in a["metrics"].items():
        for arm, v in x["arms"].items():
            # per-user totals add cells in another order in the split folder: equal up to rounding
            assert b["metrics"][m]["arms"][arm]["value"] == pytest.approx(v["value"], rel=1e-12, abs=1e-12), (m, arm)
        for k, c in x["comparisons"].items():
            assert b["metrics"][m]["comparisons"][k].get("rel_lift") == pytest.approx(c.get("rel_lift"), rel=1e-9), (m, k)


# ------------------------------------------------------------------ streaming writer
def test_part_writer_holds_at_most_one_row_group(tmp_path):
    """50 writes of 10k rows: the file has row groups of ``row_group_rows`` rows (the last
    one shorter), and after every write less than one row group waits in memory."""
    w = PartWriter(tmp_path, "requests", 0, row_group_rows=65_536)
    for i in range(50):
        w.write(_requests(10_000, ["a"] if i % 2 else ["c", "b"], start=i * 10_000))
        assert w.buffered_rows < 65_536
    entry = w.close()
    assert entry == {"rows": 500_000, "sha256": sha256(part_path(tmp_path, "requests", 0))}
    meta = pq.ParquetFile(part_path(tmp_path, "requests", 0)).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sizes == [65_536] * 7 + [500_000 - 7 * 65_536]  # ceil(500000 / 65536) = 8 groups
    back = pq.read_table(part_path(tmp_path, "requests", 0))
    assert back.schema.field("arm").type == pa.dictionary(pa.int32(), pa.string())
    want = pa.concat_tables([_requests(10_000, ["a"] if i % 2 else ["c", "b"], start=i * 10_000) for i in range(50)])
    assert decode_dictionaries(back).equals(want.cast(decode_dictionaries(back).schema))


def test_part_writer_writes_each_full_row_group_as_it_comes(tmp_path):
    w = PartWriter(tmp_path, "requests", 3, row_group_rows=10_000)
    for i in range(50):
        w.write(_requests(10_000, ["a"], start=i * 10_000))
        assert w.buffered_rows == 0
    w.close()
    assert pq.ParquetFile(part_path(tmp_path, "requests", 3)).metadata.num_row_groups == 50


def test_an_empty_part_is_a_valid_file_with_the_schema(tmp_path):
    with PartWriter(tmp_path, "moveline", 0) as w:
        entry = w.close()
    assert entry["rows"] == 0
    t = pq.read_table(part_path(tmp_path, "moveline", 0))
    assert t.num_rows == 0 and t.schema.equals(with_version(SCHEMAS["moveline"], "moveline"), check_metadata=False)


def test_rows_that_do_not_fit_the_schema_are_refused(tmp_path):
    with PartWriter(tmp_path, "requests", 0) as w, pytest.raises(ValueError, match="requests: rows do not match"):
        w.write(_requests(3, ["a"]).drop(["latency_ms"]))


# ------------------------------------------------------------------ atomicity
def test_no_part_exists_until_close_and_abort_leaves_nothing(tmp_path):
    sink = ShardSink(tmp_path, 4)
    sink.write("requests", _requests(100, ["a"]))
    for table in SCHEMAS:  # only temporary files, named as the run-folder checks expect
        names = _files(tmp_path / table)
        assert len(names) == 1 and _TEMP.match(names[0]) and not part_path(tmp_path, table, 4).exists()
    sink.abort()
    assert all(_files(tmp_path / t) == [] for t in SCHEMAS)


def test_an_exception_inside_the_sink_puts_no_part_in_place(tmp_path):
    with pytest.raises(RuntimeError), ShardSink(tmp_path, 0) as sink:
        sink.write("requests", _requests(100, ["a"]))
        raise RuntimeError("simulation failed")
    assert all(_files(tmp_path / t) == [] for t in SCHEMAS)


def test_closing_the_sink_puts_every_part_in_place(tmp_path):
    with ShardSink(tmp_path, 2) as sink:
        sink.write("requests", _requests(100, ["a"]))
        sink.write("requests", _requests(50, ["b"], start=100))
        parts = sink.close()
    assert sorted(parts) == sorted(SCHEMAS)
    assert parts["requests"]["rows"] == 150 and parts["exposures"]["rows"] == 0
    assert all(_files(tmp_path / t) == ["shard-00002.parquet"] for t in SCHEMAS)
    assert read_table(tmp_path, "requests")["arm"].to_pylist() == ["a"] * 100 + ["b"] * 50


# A campaign run in a process that SIGKILLs itself while closing shard 1's parts: its
# exposures part is in place, its requests part is still a temporary file, it is not in the
# manifest.  --resume must redo it and give the uninterrupted run's log.
_KILL_WHILE_CLOSING = """
import os, signal, sys
from simab import eventlog
from simab.run.runner import run_campaign
from simab.spec import load_campaign

close = eventlog.PartWriter.close
def close_or_die(self):
    if self.path.name == "shard-00001.parquet" and self.path.parent.name == "requests":
        os.kill(os.getpid(), signal.SIGKILL)
    return close(self)
eventlog.PartWriter.close = close_or_die
over = eval(sys.argv[2])
run_campaign(load_campaign(overrides=over), out=sys.argv[1], workers=1)
"""


def test_a_shard_killed_while_writing_is_redone_on_resume(tmp_path):
    over = tiny(tmp_path)
    ref = run_campaign(load_campaign(overrides=over), out=tmp_path / "ref", report=False).run_dir
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILL_WHILE_CLOSING, str(out), repr(over)],
                          env={**os.environ, "SIMAB_QUIET": "1"}, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert part_path(out, "exposures", 1).exists() and not part_path(out, "requests", 1).exists()
    assert any(_TEMP.match(n) for n in _files(out / "requests"))
    assert sorted(Manifest(out).data["shards"]) == ["0"] and not Manifest(out).complete(1)

    res = run_campaign(load_campaign(overrides=over), out=out, resume=True, report=False).run_dir
    assert Manifest(res).complete(0) and Manifest(res).complete(1)
    assert not any(_TEMP.match(n) for t in SCHEMAS for n in _files(res / t))  # the killed write's leftovers are gone
    for table, keys in (("exposures", ["request", "position"]), ("requests", ["request"]),
                        ("assignments", ["user"]), ("moveline", list(SCHEMAS["moveline"].names))):
        t = read_table(res, table)
        if table == "requests":  # latency is measured wall time (not deterministic)
            t, want = t.drop(["latency_ms"]), read_table(ref, table).drop(["latency_ms"])
        else:
            want = read_table(ref, table)
        assert digest(t, keys) == digest(want, keys), table
