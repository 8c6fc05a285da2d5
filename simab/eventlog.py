"""The event log: Arrow schemas, columnar buffers, atomic Parquet parts and a manifest.

Each shard writes one Parquet part per table (``<table>/shard-00007.parquet``), first
under a temporary name, then renamed; when all its parts are in place the shard is
added to ``manifest.json`` with each part's row count and SHA-256.  A part that is not
in the manifest, or whose digest does not match, is not complete and is redone on
``--resume``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simab.atomic import write_atomic
from simab.errors import SimabError

SCHEMA_VERSION = 1

# plain strings in Arrow (Parquet dictionary-encodes them on disk); per-shard Arrow
# dictionaries would not unify across parts
_STR = pa.string()

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


def with_version(schema: pa.Schema, table: str) -> pa.Schema:
    return schema.with_metadata({b"simab_schema": str(SCHEMA_VERSION).encode(), b"simab_table": table.encode()})


class ColumnBuffer:
    """Appends numpy column chunks; builds one Arrow table at the end (no per-row objects)."""

    def __init__(self, table: str, schema: pa.Schema | None = None):
        self.table = table
        self.schema = with_version(schema or SCHEMAS[table], table)
        self.chunks: dict[str, list] = {f.name: [] for f in self.schema}
        self.rows = 0
        self._row_values: list[tuple] = []  # single rows (append_row) not yet made a chunk

    def append_row(self, *values) -> None:
        """One row, values in schema order (cheaper than ``append`` with length-1 arrays;
        the simulation logs one moveline row per scene)."""
        self._row_values.append(values)
        self.rows += 1

    def _flush_rows(self) -> None:
        if not self._row_values:
            return
        columns = zip(*self._row_values, strict=True)
        for f, vals in zip(self.schema, columns, strict=True):
            self.chunks[f.name].append(list(vals) if pa.types.is_string(f.type) else np.array(vals))
        self._row_values = []

    def append(self, **cols) -> None:
        self._flush_rows()
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
        self._flush_rows()
        arrays = []
        for f in self.schema:
            parts = self.chunks[f.name]
            if pa.types.is_string(f.type):
                vals = [x for p in parts for x in (p.tolist() if isinstance(p, np.ndarray) else p)]
                arrays.append(pa.array(vals, pa.string()))
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


def write_part(run_dir: Path, table: str, shard: int, data: pa.Table) -> dict:
    """Write one table's part for a shard atomically (temp name, fsync, rename)."""
    path = part_path(run_dir, table, shard)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: pq.write_table(data, tmp, compression="zstd"), fsync=True)
    except OSError as exc:
        raise SimabError(f"cannot write the event log: {exc.strerror or exc}", source=str(path)) from None
    return {"rows": data.num_rows, "sha256": sha256(path)}


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
    """All parts of one table, in shard order."""
    folder = Path(run_dir) / table
    parts = sorted(folder.glob("shard-*.parquet")) if folder.exists() else []
    if not parts:
        return with_version(SCHEMAS[table], table).empty_table() if table in SCHEMAS else pa.table({})
    return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts], promote_options="permissive")


def digest(table: pa.Table, sort_by: list[str]) -> str:
    """SHA-256 of a table's content after sorting (for determinism checks)."""
    t = table.sort_by([(c, "ascending") for c in sort_by])
    h = hashlib.sha256()
    for name in t.column_names:
        col = t.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        h.update(name.encode())
        h.update(np.asarray(col.to_pylist() if pa.types.is_string(col.type) else col.to_numpy(zero_copy_only=False)).tobytes() if not pa.types.is_string(col.type) else "\x00".join(col.to_pylist()).encode())
    return h.hexdigest()
