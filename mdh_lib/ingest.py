"""Raw partitions, end to end: download the Tardis files (many at once), parse and check each
as a stream, write it sorted to a local Parquet file that the caller then commits
(`Storage.commit`).

Each attempt works in a fresh temporary folder, so a bad download is never reused on a
retry; if anything fails, nothing reaches the storage root and the folder is removed.
A day up to `WHOLE_FILE_BYTES` is parsed whole on every core; a larger one streams, one
CSV block and one row group in memory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
import pyarrow.compute as pc

from mdh_lib.crashpoints import crashpoint
from mdh_lib.instruments import OPTIONS_DATA_TYPE, InstrumentKey
from mdh_lib.processes import scratch_dir
from mdh_lib.schemas import RAW_SCHEMAS
from mdh_lib.storage import WriteInfo, write_local_batches, write_local_frame
from mdh_lib.tardis.client import DayFile, Download, TardisError, download_days
from mdh_lib.tardis.parse import OutOfOrder, RawFileError, check_raw, iter_raw_batches, read_unchecked


T = TypeVar("T")


@dataclass(frozen=True)
class RawDay:
    """A checked day staged as local Parquet (``file.uri``, alone in its temporary folder)."""

    file: WriteInfo
    source_url: str
    source_bytes: int

    def discard(self) -> None:
        shutil.rmtree(os.path.dirname(self.file.uri), ignore_errors=True)


# Compressed files up to this size are parsed whole on every core (a few hundred MB in
# memory); larger ones stream (one CSV block and one row group in memory).
WHOLE_FILE_BYTES = 96 << 20
# Days up to this many rows are written on the calling thread (a venue's thousands of small
# instruments): starting a thread per file cost more than the overlap saved.
INLINE_ROWS = 50_000


def stage_raw_file(path: str, data_type: str, date: dt.date, name: str, out: str,
                   keep_prefix: str | None = None) -> WriteInfo:
    """Parse, check and sort one downloaded file into ``out``; ``keep_prefix`` keeps only
    rows whose symbol starts with it (one underlying of a grouped options chain)."""
    return stage_raw_day(path, data_type, date, name, out, keep_prefix)[0]


def stage_raw_day(path: str, data_type: str, date: dt.date, name: str, out: str,
                  keep_prefix: str | None = None, then: Callable[[pl.DataFrame], T] | None = None,
                  ) -> tuple[WriteInfo, T | None]:
    """`stage_raw_file`, and ``then(day)`` of the sorted day (what the file holds) taken from
    memory, not read back from ``out``: once the day is sorted, the Parquet write runs on a
    second thread while ``then`` computes and the Pandera check runs on this one (polars and
    NumPy release the GIL, so both cores work). A file that fails its check raises
    `RawFileError` (even when ``then`` failed first); ``out`` may then hold a partial file,
    which the caller discards with its folder, as after any failure. A day streamed from disk
    (larger than `WHOLE_FILE_BYTES`) is read back from ``out`` for ``then``."""
    if os.path.getsize(path) > WHOLE_FILE_BYTES:
        batches = iter_raw_batches(path, data_type, date, name)
        if keep_prefix:
            batches = (t.filter(pc.starts_with(t["symbol"], keep_prefix)) for t in batches)
        try:
            info = write_local_batches(out, RAW_SCHEMAS[data_type], batches, sorting_column="timestamp")
            return info, (then(pl.read_parquet(out)) if then else None)
        except OutOfOrder:  # rows later than the reorder window: sort the day in memory instead
            pass
    frame = read_unchecked(path, data_type, name)
    if keep_prefix:  # the check covers the whole file, then one underlying's rows are kept
        check_raw(frame, data_type, date, name)
        frame = frame.filter(pl.col("symbol").str.starts_with(keep_prefix))
    columns = frame.get_columns()
    del frame
    frame = _sorted(columns)
    # A small day is written here after its check (a thread costs more than it saves there).
    worker = ThreadPoolExecutor(1, thread_name_prefix="mdh-stage") if frame.height > INLINE_ROWS else None
    with worker or contextlib.nullcontext():
        written = worker.submit(write_local_frame, out, frame, sorting_column="timestamp") if worker else None
        try:
            result = then(frame) if then else None
        finally:
            if not keep_prefix:
                check_raw(frame, data_type, date, name)  # raises RawFileError, even after a failure of then
        return (written.result() if written else write_local_frame(out, frame, sorting_column="timestamp")), result


def _sorted(columns: list[pl.Series]) -> pl.DataFrame:
    """The day's columns (the only reference to them, emptied here) as a frame sorted by
    timestamp (stable, ties in file order), a group of columns at a time: numbers, then
    strings, each group gathered on every core, then its unsorted originals dropped; a column
    holding one value throughout (the exchange and symbol of a single instrument's file) stays
    as it is. So the day is held about once, not twice."""
    names = [c.name for c in columns]
    stamps = columns[names.index("timestamp")]
    if stamps.is_sorted():
        return pl.DataFrame(columns)
    order = pl.DataFrame([stamps]).select(pl.arg_sort_by("timestamp", maintain_order=True)).to_series()
    del stamps
    moving = [i for i, c in enumerate(columns)
              if c.dtype.is_numeric() or c.null_count() or c[0] != c[-1] or not (c == c[0]).all()]
    for group in ([i for i in moving if columns[i].dtype.is_numeric()],
                  [i for i in moving if not columns[i].dtype.is_numeric()]):
        if group:
            gathered = pl.DataFrame([columns[i] for i in group]).select(pl.all().gather(order))
            for i, column in zip(group, gathered.get_columns()):
                columns[i] = column
            del gathered
    return pl.DataFrame(columns)


@dataclass(frozen=True)
class RawRequest:
    """One raw partition to fetch: a data type of an instrument (or options underlying) on a day."""

    data_type: str
    date: dt.date
    key: InstrumentKey
    exchange: str
    source_symbol: str

    @property
    def file(self) -> DayFile:
        return DayFile(self.exchange, self.data_type, self.date, self.source_symbol)


# Files in flight at once (tardis-dev's own default); also the number of downloaded files
# on local disk at a time.
FETCH_CONCURRENCY = 20


# At least this many files and the chunks are shared with helper processes (one per further
# core): staging a small file is mostly Python, which one process runs on one core whatever
# its threads; a helper's start (~1 s of imports) is not worth it for fewer.
HELPER_MIN_FILES = 200


def fetch_raw_days(requests: list[RawRequest], *, endpoint: str, api_key: str, concurrency: int = FETCH_CONCURRENCY,
                   helpers: int | None = None, staging: str | None = None,
                   ) -> Iterator[tuple[RawRequest, RawDay | Exception]]:
    """Download the requests' files ``concurrency`` at a time and stage each one, yielding
    ``(request, RawDay)``, or ``(request, error)`` for a file that failed (`TardisError` for
    the download, `RawFileError` for its content). Each chunk works in a fresh temporary
    folder, removed once its files are staged (bounded disk), so a bad download is never
    reused; an options underlying (``DERIBIT:OPTION:BTC``) keeps only its own rows of the
    venue's grouped chain. Staged files go to folders in ``staging`` (`Storage.scratch_base`
    of the root they are committed to: a local commit is then a rename, not a copy; the
    system's temporary folder when None). With `HELPER_MIN_FILES` or more, ``helpers``
    processes (default: one per core beyond the first) each take a chunk while this one
    stages its own, one chunk each at a time, and the staged files come back to this process
    for the caller to commit; so a venue's thousands of small files use every core."""
    chunks = [requests[i:i + concurrency] for i in range(0, len(requests), concurrency)]
    helpers = max((os.cpu_count() or 1) - 1, 0) if helpers is None else helpers
    if not helpers or len(requests) < HELPER_MIN_FILES:
        for chunk in chunks:
            yield from _fetch_chunk(chunk, endpoint, api_key, concurrency, staging)
        return
    from mdh_lib.ingest_helper import Helper

    started = [Helper() for _ in range(helpers)]
    try:
        for i in range(0, len(chunks), helpers + 1):
            theirs = list(zip(started, chunks[i + 1:i + 1 + helpers]))
            for helper, chunk in theirs:
                helper.submit(chunk, endpoint, api_key, concurrency, staging)
            yield from _fetch_chunk(chunks[i], endpoint, api_key, concurrency, staging)
            for helper, _ in theirs:
                yield from helper.result()
    finally:
        for helper in started:
            helper.close()


def _fetch_chunk(chunk: list[RawRequest], endpoint: str, api_key: str, concurrency: int,
                 staging: str | None) -> Iterator[tuple[RawRequest, RawDay | Exception]]:
    work = scratch_dir("fetch")
    try:
        got = download_days(sorted({r.file for r in chunk}, key=str), endpoint=endpoint, api_key=api_key,
                            dest_dir=work, concurrency=concurrency)
        crashpoint("fetch.downloaded")
        for r in chunk:
            download = got[r.file]
            if isinstance(download, TardisError):
                yield r, download
                continue
            try:
                yield r, _stage(r, download, endpoint, staging)
            except RawFileError as exc:
                yield r, exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stage(r: RawRequest, got: Download, endpoint: str, staging: str | None) -> RawDay:
    out = scratch_dir("ingest", staging)
    try:
        prefix = f"{r.key.symbol}-" if r.data_type == OPTIONS_DATA_TYPE else None
        info = stage_raw_file(got.path, r.data_type, r.date, got.url[len(endpoint) + 1:],
                              os.path.join(out, "day.parquet"), keep_prefix=prefix)
        return RawDay(info, got.url, got.bytes)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
