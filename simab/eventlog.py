"""The event log: Arrow schemas, columnar buffers, atomic Parquet parts and a manifest.

Each shard writes one Parquet part per table (``<table>/shard-00007.parquet``), streamed
in row groups to a temporary file while the shard runs (:class:`PartWriter`, so a shard
holds at most one row group of each table), then fsync'ed and renamed; when all its parts
are in place the shard is added to ``manifest.json`` with each part's row count and
SHA-256.  A part that is not in the manifest, or whose digest does not match, is not
complete and is redone on ``--resume``.

Categorical columns (arm, scenario, scene, domain, campaign) are Arrow dictionary
columns.  Each part has its own dictionary, so parts of one table do not share codes:
:func:`read_table` unifies them, and ``decode_dictionaries`` (in
``simab.reports.run_data``, the lower layer, which reads run folders too) turns them back into
plain strings where tables from different reads meet (joins, sorts).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simab.atomic import commit, temp_beside, write_atomic
from simab.errors import SimabError
from simab.reports.run_data import decode_dictionaries

#: 2: categorical columns are Arrow dictionary columns (1: plain strings).
SCHEMA_VERSION = 2

# categorical text: int32 codes into a per-part dictionary of strings
_STR = pa.dictionary(pa.int32(), pa.string())

#: rows per Parquet row group of a part: what a :class:`PartWriter` holds at most before
#: writing (a few MiB for the widest table, exposures)
ROW_GROUP_ROWS = 1 << 16

SCHEMAS: dict[str, pa.Schema] = {
    "exposures": pa.schema(
        [
            ("campaign", _STR),
            ("shard", pa.int32()),
            ("arm", _STR),
            ("user", pa.int64()),
            ("session", pa.int64()),
            ("request", pa.int64()),
            ("ts", pa.float64()),
            ("day", pa.int32()),
            ("scenario", _STR),
            ("position", pa.int16()),
            ("item", pa.int64()),
            ("score", pa.float32()),
            ("p_click", pa.float64()),
            ("clicked", pa.bool_()),
            ("p_convert", pa.float64()),
            ("converted", pa.bool_()),
            ("conversion_ts", pa.float64()),
            ("dwell_s", pa.float64()),
            ("expected_dwell_s", pa.float64()),
            ("propensity", pa.float64()),
        ]
    ),
    "requests": pa.schema(
        [
            ("request", pa.int64()),
            ("user", pa.int64()),
            ("session", pa.int64()),
            ("arm", _STR),
            ("ts", pa.float64()),
            ("day", pa.int32()),
            ("scenario", _STR),
            ("n_candidates", pa.int32()),
            ("latency_ms", pa.float64()),
            ("batch_size", pa.int32()),
        ]
    ),
    "assignments": pa.schema(
        [("user", pa.int64()), ("bucket", pa.int32()), ("arm", _STR), ("first_exposure_ts", pa.float64())]
    ),
    "moveline": pa.schema(
        [
            ("user", pa.int64()),
            ("ts", pa.float64()),
            ("scene", _STR),
            ("category", pa.int32()),
            ("shop", pa.int32()),
            ("domain", _STR),
        ]
    ),
}

#: The event log's tables: the one list (a run folder's table folders, what a sweep removes,
#: a shard's parts).
TABLES: tuple[str, ...] = tuple(SCHEMAS)


def with_version(schema: pa.Schema, table: str) -> pa.Schema:
    """``schema`` with the event-log version and table name in its metadata."""
    return schema.with_metadata({b"simab_schema": str(SCHEMA_VERSION).encode(), b"simab_table": table.encode()})


class ColumnBuffer:
    """Appends numpy column chunks; builds one Arrow table at the end (no per-row objects)."""

    def __init__(self, table: str, schema: pa.Schema | None = None):
        self.table = table
        self.schema = with_version(schema or SCHEMAS[table], table)
        self.chunks: dict[str, list] = {f.name: [] for f in self.schema}
        self.rows = 0

    def append(self, **cols) -> None:
        n = None
        for name in self.chunks:
            v = cols[name]
            if np.ndim(v) == 0 and not isinstance(v, (list, np.ndarray)):
                continue
            n = len(v)
            break
        if n is None:
            raise ValueError("append needs at least one array column")
        for name in self.chunks:
            v = cols[name]
            if isinstance(v, (list, np.ndarray)) and np.ndim(v) >= 1 and len(v) == n:
                self.chunks[name].append(v)
            else:  # a scalar broadcast to the chunk
                self.chunks[name].append(np.full(n, v) if not isinstance(v, str) else [v] * n)
        self.rows += n

    def to_table(self) -> pa.Table:
        arrays = []
        for f in self.schema:
            parts = self.chunks[f.name]
            if _is_text(f.type):
                vals = [x for p in parts for x in (p.tolist() if isinstance(p, np.ndarray) else p)]
                arr = pa.array(vals, pa.string())
                arrays.append(arr.dictionary_encode().cast(f.type) if pa.types.is_dictionary(f.type) else arr)
            elif pa.types.is_fixed_size_list(f.type):
                width = f.type.list_size
                flat = np.concatenate([np.asarray(p).reshape(-1, width) for p in parts]) if parts else np.zeros((0, width))
                arrays.append(
                    pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1).astype(f.type.value_type.to_pandas_dtype())), width)
                )
            else:
                flat = np.concatenate([np.asarray(p) for p in parts]) if parts else np.zeros(0)
                arrays.append(pa.array(flat, f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def part_path(run_dir: Path, table: str, shard: int) -> Path:
    return run_dir / table / f"shard-{shard:05d}.parquet"


class PartWriter:
    """One table's part of one shard, streamed: :meth:`write` appends rows, written out as
    Parquet row groups of ``row_group_rows`` rows (zstd) to a temporary file beside the
    part, so at most one row group is held in memory; :meth:`close` fsyncs it and renames
    it into place; :meth:`abort` (or leaving a ``with`` block by an exception) removes it.
    Until :meth:`close` returns there is no file under the part's name."""

    def __init__(self, run_dir: Path, table: str, shard: int, schema: pa.Schema | None = None,
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.path = part_path(Path(run_dir), table, shard)
        self.schema = with_version(schema or SCHEMAS[table], table)
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._pending: list[pa.Table] = []  # rows of the current row group, not yet written
        self._pending_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for old in self.path.parent.glob(f".{self.path.name}.*.tmp"):  # left by a killed attempt
                old.unlink(missing_ok=True)
            self.tmp = temp_beside(self.path)
            # Parquet dictionary pages only for the categorical columns: trying them on ids and
            # floats doubled the writing time for larger files (docs/benchmarks.md)
            categorical = [f.name for f in self.schema if pa.types.is_dictionary(f.type)]
            self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd", use_dictionary=categorical)
        except OSError as exc:
            raise _write_error(exc, self.path) from None

    def write(self, data: pa.Table) -> None:
        """Append ``data`` (the table's columns, in schema order; plain strings are
        accepted for dictionary columns)."""
        if not data.schema.equals(self.schema, check_metadata=False):
            try:
                data = data.cast(self.schema)
            except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"{self.path.parent.name}: rows do not match the table's schema: {exc}") from None
        if data.num_rows == 0:
            return
        self._pending.append(data)
        self._pending_rows += data.num_rows
        self.rows += data.num_rows
        while self._pending_rows >= self.row_group_rows:
            self._flush(self.row_group_rows)

    @property
    def buffered_rows(self) -> int:
        """Rows written but not yet in the file (less than one row group after each write)."""
        return self._pending_rows

    def _flush(self, n: int) -> None:
        """Write the first ``n`` pending rows as one row group."""
        pending = pa.concat_tables(self._pending)
        group, rest = pending.slice(0, n), pending.slice(n)
        # one dictionary per column and row group (the writes may each carry their own)
        group = group.unify_dictionaries().combine_chunks()
        try:
            self._writer.write_table(group, row_group_size=n)
        except OSError as exc:
            raise _write_error(exc, self.path) from None
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> dict:
        """Write the last row group, put the part in place; its manifest entry."""
        try:
            if self._pending_rows:
                self._flush(self._pending_rows)
            self._writer.close()
            commit(self.tmp, self.path, fsync=True)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise _write_error(exc, self.path) from None
            raise
        return {"rows": self.rows, "sha256": sha256(self.path)}

    def abort(self) -> None:
        """Drop what was written: the temporary file is removed, no part appears."""
        if self._writer.is_open:
            self._writer.close()
        self._pending, self._pending_rows = [], 0
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self.abort()


def _write_error(exc: OSError, path: Path) -> SimabError:
    return SimabError(f"cannot write the event log: {exc.strerror or exc}", source=str(path))


class ShardSink:
    """The parts of one shard, one :class:`PartWriter` per table: the simulation calls
    :meth:`write` as rows come (e.g. once per tick); :meth:`close` puts every part in
    place and returns the manifest's ``parts`` entry.  On an exception inside a ``with``
    block (or :meth:`abort`) no part of the shard is put in place by it."""

    def __init__(self, run_dir: Path, shard: int, tables: tuple[str, ...] = TABLES):
        self.writers: dict[str, PartWriter] = {}
        try:
            for t in tables:
                self.writers[t] = PartWriter(run_dir, t, shard)
        except BaseException:
            self.abort()
            raise

    def write(self, table: str, data: pa.Table) -> None:
        self.writers[table].write(data)

    def close(self) -> dict[str, dict]:
        """Close every part (the manifest lists the shard only after all are in place)."""
        parts = {}
        try:
            for name, w in self.writers.items():
                parts[name] = w.close()
        except BaseException:
            self.abort()
            raise
        return parts

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()

    def __enter__(self) -> ShardSink:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self.abort()


class Manifest:
    """``manifest.json``: the shards whose parts are all complete."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "manifest.json"
        self.data = {"schema": SCHEMA_VERSION, "shards": {}}
        if self.path.exists():
            # a manifest is written atomically, so an unreadable one was damaged from outside:
            # say so rather than forget which shards are complete
            advice = "delete it to rerun every shard, or run without --resume"
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise SimabError(f"not valid JSON ({exc.msg}, line {exc.lineno}); {advice}",
                                 source=str(self.path)) from None
            if not isinstance(data, dict) or not isinstance(data.get("shards"), dict):
                raise SimabError(f"not a manifest (no 'shards' table); {advice}", source=str(self.path))
            self.data = data

    def complete(self, shard: int) -> bool:
        """True when the shard is listed and every part exists with its recorded digest."""
        entry = self.data["shards"].get(str(shard))
        if not entry:
            return False
        run_dir = self.path.parent
        for table, meta in entry["parts"].items():
            p = part_path(run_dir, table, shard)
            if not p.exists() or sha256(p) != meta["sha256"]:
                return False
        return True

    def add(self, shard: int, parts: dict[str, dict], extra: dict | None = None) -> None:
        self.data["shards"][str(shard)] = {"parts": parts, **(extra or {})}
        self.save()

    def drop(self, shard: int) -> None:
        self.data["shards"].pop(str(shard), None)

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def read_table(run_dir: str | Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """All parts of one table, in shard order; dictionary columns share one dictionary
    (so group_by and filters work on them across parts)."""
    folder = Path(run_dir) / table
    parts = sorted(folder.glob("shard-*.parquet")) if folder.exists() else []
    if not parts:
        empty = with_version(SCHEMAS[table], table).empty_table() if table in SCHEMAS else pa.table({})
        return empty.select(columns) if columns else empty
    t = pa.concat_tables([pq.read_table(p, columns=columns) for p in parts], promote_options="permissive")
    return t.unify_dictionaries()


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))


def digest(table: pa.Table, sort_by: list[str]) -> str:
    """SHA-256 of a table's content after sorting (for determinism checks); dictionary
    columns count as their strings, so the encoding does not change the digest."""
    t = decode_dictionaries(table).sort_by([(c, "ascending") for c in sort_by])
    h = hashlib.sha256()
    for name in t.column_names:
        col = t.column(name).combine_chunks()
        h.update(name.encode())
        h.update(np.asarray(col.to_pylist() if pa.types.is_string(col.type) else col.to_numpy(zero_copy_only=False)).tobytes() if not pa.types.is_string(col.type) else "\x00".join(col.to_pylist()).encode())
    return h.hexdigest()
