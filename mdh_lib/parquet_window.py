"""Reading a ``timestamp`` window [lo, hi) from one Parquet file, row group by row group.

The footer says which row groups can hold the window (min/max statistics of
``timestamp``, microseconds: raw int64 or derived timestamp[us, UTC]) and where each row
group's bytes are. pyarrow decodes whole row groups (it cannot filter by the page index), so
a row group is the unit of pruning; raw files have ~96 a day, so a 5-minute window reads one
or two.

Files are opened without read-ahead: only the footer and the chosen column chunks are
fetched, where gcsfs's default (an adaptive background prefetcher) reads ahead of the window
and can leave its task pending at exit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:  # the storage reads windows with this module
    from mdh_lib.storage import Storage

Window = tuple[int | None, int | None]  # [lo, hi) in microseconds, None = unbounded


@dataclass
class ReadStats:
    """What a read touched; ``bytes_read`` is the compressed size of the column chunks
    decoded, from the footer (the footer itself not counted)."""

    files: int = 0
    row_groups_total: int = 0
    row_groups_read: int = 0
    rows_read: int = 0
    rows_returned: int = 0
    bytes_read: int = 0

    def __iadd__(self, other: "ReadStats") -> "ReadStats":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


class OpenFiles(contextlib.ExitStack):
    """The files of one call, each opened and its footer parsed once, all closed at the end."""

    def __init__(self, storage: Storage):
        super().__init__()
        self.storage, self.files = storage, {}

    def __call__(self, rel: str) -> pq.ParquetFile:
        if rel not in self.files:
            handle = self.enter_context(self.storage.fs.open(self.storage.path(rel), "rb", cache_type="none"))
            self.files[rel] = pq.ParquetFile(handle)
        return self.files[rel]


def timestamp_bounds(meta: pq.FileMetaData) -> list[tuple[int, int] | None]:
    """Per row group the (min, max) of ``timestamp`` in microseconds, None without statistics."""
    index = meta.schema.names.index("timestamp")
    out = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        out.append((stats.min_raw, stats.max_raw) if stats is not None and stats.has_min_max else None)
    return out


def overlapping(meta: pq.FileMetaData, window: Window) -> list[int]:
    """Row groups that may hold a timestamp in the window."""
    lo, hi = window
    return [i for i, b in enumerate(timestamp_bounds(meta))
            if b is None or ((lo is None or b[1] >= lo) and (hi is None or b[0] < hi))]


def chunk_bytes(meta: pq.FileMetaData, row_group: int, columns: list[str] | None = None) -> int:
    rg = meta.row_group(row_group)
    return sum(rg.column(j).total_compressed_size for j in range(rg.num_columns)
               if columns is None or rg.column(j).path_in_schema in columns)


def byte_range(meta: pq.FileMetaData, row_group: int) -> tuple[int, int]:
    """[start, end) in the file of a row group's column chunks: each chunk starts at its
    dictionary page (else its first data page) and spans ``total_compressed_size`` bytes."""
    rg = meta.row_group(row_group)
    spans = []
    for j in range(rg.num_columns):
        c = rg.column(j)
        start = c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset
        spans.append((start, start + c.total_compressed_size))
    return min(s for s, _ in spans), max(e for _, e in spans)


def within(table: pa.Table, window: Window) -> pa.Table:
    """The rows of ``table`` with ``timestamp`` in the window."""
    ts, kind = pc.field("timestamp"), table.schema.field("timestamp").type
    lo, hi = window
    if lo is not None:
        table = table.filter(ts >= pa.scalar(lo, kind))
    if hi is not None:
        table = table.filter(ts < pa.scalar(hi, kind))
    return table


def read_window(pf: pq.ParquetFile, window: Window, columns: list[str] | None = None,
                prune: bool = True) -> tuple[pa.Table, ReadStats]:
    """The window's rows (only ``columns``), decoding only the overlapping row groups unless
    ``prune`` is False."""
    meta = pf.metadata
    groups = overlapping(meta, window) if prune else list(range(meta.num_row_groups))
    table = pf.read_row_groups(groups, columns=columns)
    rows = within(table, window)
    return rows, ReadStats(1, meta.num_row_groups, len(groups), table.num_rows, rows.num_rows,
                           sum(chunk_bytes(meta, i, columns) for i in groups))
