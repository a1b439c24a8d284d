"""One storage root, a local folder or ``gs://bucket/prefix``, with atomic Parquet writes.

Atomicity: locally a file is written under a hidden temporary name in the same folder and
renamed over the target (``os.replace``); on GCS an object only becomes visible once its
upload completes, so the upload of a finished local file is the commit. Either way a reader
never sees a partial file and a failed write leaves the previous good file in place.

With ``STORAGE_EMULATOR_HOST`` set, gs:// goes to that endpoint with anonymous credentials.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Row groups follow exchange time: one per 15 minutes of ``timestamp`` (96 a day), so a
# 5-minute window touches one or two of them; a window with fewer than MIN_ROW_GROUP rows is
# merged into the next, so small days are not cut into tiny groups.
ROW_GROUP_SPAN_US = 900 * 1_000_000
MIN_ROW_GROUP = 8_192
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True, write_page_index=True)


@dataclass(frozen=True)
class WriteInfo:
    uri: str
    rows: int
    bytes: int
    row_groups: int
    first_timestamp: int | None = None  # microseconds, when the data has a timestamp
    last_timestamp: int | None = None


def _row_groups(batches: Iterable[pa.Table | pa.RecordBatch], sorting_column: str | None) -> Iterator[pa.Table]:
    """Re-cut a stream of tables sorted by ``sorting_column`` into row groups on
    `ROW_GROUP_SPAN_US` boundaries (at least `MIN_ROW_GROUP` rows each, but the last)."""
    pending: list[pa.Table] = []
    rows = 0
    for batch in batches:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if not table.num_rows:
            continue
        pending.append(table)
        rows += table.num_rows
        if sorting_column is None or rows < MIN_ROW_GROUP:
            continue
        buf = pa.concat_tables(pending)
        ts = pc.cast(buf[sorting_column], pa.int64()).to_numpy()
        start = 0
        while buf.num_rows - start >= MIN_ROW_GROUP:
            end = (int(ts[start + MIN_ROW_GROUP - 1]) // ROW_GROUP_SPAN_US + 1) * ROW_GROUP_SPAN_US
            cut = int(np.searchsorted(ts, end, side="left"))
            if cut >= buf.num_rows:
                break  # the window may still grow with the next batch
            yield buf.slice(start, cut - start)
            start = cut
        pending, rows = [buf.slice(start)], buf.num_rows - start
    if rows:
        yield pa.concat_tables(pending)


def write_local_parquet(path: str, schema: pa.Schema, batches: Iterable[pa.Table | pa.RecordBatch],
                        sorting_column: str | None = None) -> WriteInfo:
    """Stream sorted batches into a local Parquet file with time-based row groups; memory
    holds one row group at a time."""
    options = dict(PARQUET_OPTIONS)
    ts_col = sorting_column if sorting_column in schema.names else None
    if ts_col:
        options["sorting_columns"] = [pq.SortingColumn(schema.names.index(ts_col))]
    rows, first, last = 0, None, None
    with pq.ParquetWriter(path, schema, **options) as writer:
        for group in _row_groups(batches, ts_col):
            writer.write_table(group.cast(schema), row_group_size=group.num_rows)
            rows += group.num_rows
            if ts_col:
                micros = pc.cast(group[ts_col], pa.int64())
                first = micros[0].as_py() if first is None else first
                last = micros[-1].as_py()
    meta = pq.read_metadata(path)
    return WriteInfo(path, rows, os.path.getsize(path), meta.num_row_groups, first, last)


class Storage:
    """A storage root: paths given to it are relative (see `mdh_lib.layout`)."""

    def __init__(self, root: str, *, emulator_host: str | None = None, project: str | None = None):
        self.root = root.rstrip("/")
        self.is_gcs = self.root.startswith("gs://")
        if self.is_gcs:
            emulator_host = emulator_host if emulator_host is not None else os.environ.get("STORAGE_EMULATOR_HOST", "")
            options: dict = {"project": project or os.environ.get("GCP_PROJECT_ID") or ("mdh-local" if emulator_host else None)}
            if emulator_host:
                # gcsfs 2026.x probes bucket types over gRPC first, which an emulator cannot answer.
                os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
                endpoint = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
                options.update(endpoint_url=endpoint, token="anon")
            self.fs = fsspec.filesystem("gcs", **options)
            self.base = self.root[len("gs://"):]
        else:
            self.fs = fsspec.filesystem("file")
            self.base = os.path.abspath(self.root)

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` (no scheme), for pyarrow/fsspec calls."""
        return f"{self.base}/{rel}"

    def uri(self, rel: str) -> str:
        return f"gs://{self.path(rel)}" if self.is_gcs else self.path(rel)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel))

    def list(self, prefix: str) -> list[str]:
        """Relative paths of the files under ``prefix`` (recursive), sorted."""
        full = self.path(prefix)
        if not self.fs.exists(full):
            return []
        return sorted(p[len(self.base) + 1:] for p in self.fs.find(full))

    def write_parquet(self, rel: str, table: pa.Table, sorting_column: str | None = None) -> WriteInfo:
        """Write a table atomically (see `commit`)."""
        return self.write_batches(rel, table.schema, [table], sorting_column)

    def write_batches(self, rel: str, schema: pa.Schema, batches: Iterable[pa.Table | pa.RecordBatch],
                      sorting_column: str | None = None) -> WriteInfo:
        """Stream batches into ``rel`` atomically; if the stream raises, nothing is written."""
        folder = tempfile.mkdtemp(prefix="mdh-write-")
        try:
            info = write_local_parquet(os.path.join(folder, "part.parquet"), schema, batches, sorting_column)
            return self.commit(info, rel)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def commit(self, local: WriteInfo, rel: str) -> WriteInfo:
        """Place a finished local file at ``rel`` atomically: locally a hidden temporary copy
        in the target folder renamed over the target, on GCS one upload (an object is only
        visible once complete)."""
        target = self.path(rel)
        if self.is_gcs:
            self.fs.put_file(local.uri, target)
            self.fs.invalidate_cache(os.path.dirname(target))
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
            try:
                shutil.copyfile(local.uri, tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        return replace(local, uri=self.uri(rel))

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open(self.path(rel), "rb"))

    def read_parquet(self, rel: str, columns: list[str] | None = None, filters=None) -> pa.Table:
        return pq.read_table(self.path(rel), filesystem=self.fs, columns=columns, filters=filters)
