"""One raw partition, end to end: download the Tardis file, parse and check it as a stream,
write it sorted to a local Parquet file that the caller then commits (`Storage.commit`).

Each attempt works in a fresh temporary folder, so a bad download is never reused on a
retry; if anything fails, nothing reaches the storage root and the folder is removed.
A day up to `WHOLE_FILE_BYTES` is parsed whole on every core; a larger one streams, one
CSV block and one row group in memory.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass

import polars as pl
import pyarrow.compute as pc

from mdh_lib.instruments import OPTIONS_DATA_TYPE, InstrumentKey
from mdh_lib.schemas import RAW_SCHEMAS
from mdh_lib.storage import WriteInfo, write_local_batches, write_local_frame
from mdh_lib.tardis.client import DayFile, Download, download_day
from mdh_lib.tardis.parse import OutOfOrder, iter_raw_batches, parse_raw


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


def stage_raw_file(path: str, data_type: str, date: dt.date, name: str, out: str,
                   keep_prefix: str | None = None) -> WriteInfo:
    """Parse, check and sort one downloaded file into ``out``; ``keep_prefix`` keeps only
    rows whose symbol starts with it (one underlying of a grouped options chain)."""
    if os.path.getsize(path) > WHOLE_FILE_BYTES:
        batches = iter_raw_batches(path, data_type, date, name)
        if keep_prefix:
            batches = (t.filter(pc.starts_with(t["symbol"], keep_prefix)) for t in batches)
        try:
            return write_local_batches(out, RAW_SCHEMAS[data_type], batches, sorting_column="timestamp")
        except OutOfOrder:  # rows later than the reorder window: sort the day in memory instead
            pass
    frame = parse_raw(path, data_type, date, name)
    if keep_prefix:
        frame = frame.filter(pl.col("symbol").str.starts_with(keep_prefix))
    return write_local_frame(out, frame, sorting_column="timestamp")


def fetch_raw_day(
    data_type: str, date: dt.date, key: InstrumentKey, exchange: str, source_symbol: str, *,
    endpoint: str, api_key: str, staging_dir: str = "",
) -> RawDay:
    """Download and stage one day of ``data_type`` for ``key``; an options underlying
    (``DERIBIT:OPTION:BTC``) keeps only its own rows of the venue's grouped chain.

    ``staging_dir``: where `download_days` already fetched this command's files
    concurrently; a file found there is used as is (that folder lives for one command)."""
    wanted = DayFile(exchange, data_type, date, source_symbol)
    staged = wanted.local_path(staging_dir) if staging_dir else ""
    work = tempfile.mkdtemp(prefix="mdh-ingest-")
    try:
        if staged and os.path.exists(staged):
            got = Download(staged, wanted.url(endpoint), os.path.getsize(staged))
        else:
            got = download_day(wanted, endpoint=endpoint, api_key=api_key, dest_dir=os.path.join(work, "download"))
        prefix = f"{key.symbol}-" if data_type == OPTIONS_DATA_TYPE else None
        info = stage_raw_file(got.path, data_type, date, got.url[len(endpoint) + 1:],
                              os.path.join(work, "day.parquet"), keep_prefix=prefix)
        shutil.rmtree(os.path.join(work, "download"), ignore_errors=True)
        return RawDay(info, got.url, got.bytes)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
