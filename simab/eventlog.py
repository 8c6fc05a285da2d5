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
import re
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simab.atomic import commit, temp_beside
from simab.errors import SimabError
from simab.record import FolderRecord, sha256, temp_base
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
#: per-shard tables a campaign's record may list: the event log's and, in a run with a market
#: (``world.market``), each day's spend of every limited item (``simab.simulators.market``)
PART_TABLES: tuple[str, ...] = (*TABLES, "market")


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


class Manifest(FolderRecord):
    """``manifest.json`` of a campaign run folder: the folder's record
    (:class:`~simab.record.FolderRecord`: every other file it holds) plus the shards whose
    parts are all complete, each part with its row count and SHA-256, and the parts the
    run may still write (``part_plan``: these tables for shards ``0 .. shards - 1``)."""

    kind_default = "campaign"

    def __init__(self, run_dir: Path, *, load: bool = True):
        super().__init__(run_dir)
        self.data.update({"schema": SCHEMA_VERSION, "shards": {}, "part_plan": {"tables": [], "shards": 0}})
        if load and (self.path.exists() or self.path.is_symlink()):
            # a manifest is written atomically, so an unreadable one was damaged from outside:
            # say so rather than forget which shards are complete
            stored = Manifest.read(run_dir)
            if stored is not None:
                if stored.kind != self.kind_default:
                    raise SimabError(f"the record of a {stored.kind!r} folder, not of a campaign run",
                                     source=str(self.path))
                self.data = stored.data

    @classmethod
    def problem(cls, data) -> str | None:
        problem = super().problem(data)
        if problem or data.get("kind") != cls.kind_default:
            return problem
        shards, plan = data.get("shards"), data.get("part_plan")
        if not isinstance(data.get("schema"), int) or not isinstance(shards, dict):
            return "schema and shards: expected an integer and a table"
        if not (isinstance(plan, dict) and isinstance(plan.get("shards"), int)
                and isinstance(plan.get("tables"), list) and all(t in PART_TABLES for t in plan["tables"])):
            return "part_plan: expected tables (of the event log) and shards"
        for s, entry in shards.items():
            parts = entry.get("parts") if isinstance(entry, dict) else None
            if not (s.isdigit() and isinstance(parts, dict)):
                return f"shards.{s}: expected a shard number and its parts"
            for table, meta in parts.items():
                if table not in PART_TABLES or not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)
                                                and isinstance(meta.get("rows"), int)):
                    return f"shards.{s}.parts.{table}: expected an event-log table with rows and sha256"
        return None

    # ------------------------------------------------------------------ ownership
    def plan_parts(self, tables: tuple[str, ...] | list[str], shards: int) -> None:
        """The parts this run may write: ``tables`` for shards ``0 .. shards - 1``."""
        self.data["part_plan"] = {"tables": list(tables), "shards": int(shards)}

    def part_files(self) -> dict[str, dict]:
        """Listed parts: relative path -> {rows, sha256}."""
        return {f"{table}/shard-{int(s):05d}.parquet": meta
                for s, entry in self.data["shards"].items() for table, meta in entry["parts"].items()}

    def owns(self, rel: str) -> bool:
        if super().owns(rel):
            return True
        parent, _, name = rel.rpartition("/")
        base = temp_base(name) or name
        m = _PART_NAME.match(base)
        if not m or "/" in parent:
            return False
        plan = self.data["part_plan"]
        if parent in plan["tables"] and int(m.group(1)) < plan["shards"]:
            return True
        entry = self.data["shards"].get(str(int(m.group(1))))
        return bool(entry) and parent in entry["parts"]

    def listed_files(self) -> dict[str, dict]:
        return {**super().listed_files(), **self.part_files()}

    def exclusive_folders(self) -> list[str]:
        return sorted(set(self.exclusive) | set(self.data["part_plan"]["tables"]))

    def owned_dirs(self) -> set[str]:
        tables = set(self.data["part_plan"]["tables"])
        tables |= {t for e in self.data["shards"].values() for t in e["parts"]}
        return super().owned_dirs() | tables

    # ------------------------------------------------------------------ shards
    def complete(self, shard: int) -> bool:
        """True when the shard is listed and every part exists with its recorded digest."""
        entry = self.data["shards"].get(str(shard))
        if not entry:
            return False
        run_dir = self.path.parent
        for table, meta in entry["parts"].items():
            p = part_path(run_dir, table, shard)
            if p.is_symlink() or not p.is_file() or sha256(p) != meta["sha256"]:
                return False
        return True

    def add(self, shard: int, parts: dict[str, dict], extra: dict | None = None) -> None:
        """Record a finished shard; the record is saved unless it was saved very recently
        (call :meth:`save` when the shards are done)."""
        self.data["shards"][str(shard)] = {"parts": parts, **(extra or {})}
        self.save(force=False)

    def drop(self, shard: int) -> None:
        self.data["shards"].pop(str(shard), None)


_PART_NAME = re.compile(r"^shard-(\d{5})\.parquet$")


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
