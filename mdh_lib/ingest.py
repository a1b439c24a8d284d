"""One raw partition, end to end: download the Tardis file, parse and check it, filter it.

The downloaded file lives in a fresh temporary folder for this attempt only, so a bad
download is never reused on a retry; the caller writes the returned table atomically.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mdh_lib.instruments import OPTIONS_DATA_TYPE, InstrumentKey
from mdh_lib.tardis.client import download_day
from mdh_lib.tardis.parse import read_raw_csv


@dataclass(frozen=True)
class RawDay:
    table: pa.Table
    source_url: str
    source_bytes: int


def fetch_raw_day(
    data_type: str, date: dt.date, key: InstrumentKey, exchange: str, source_symbol: str, *,
    endpoint: str, api_key: str,
) -> RawDay:
    """Download and parse one day of ``data_type`` for ``key``; an options underlying
    (``DERIBIT:OPTION:BTC``) keeps only its own rows of the venue's grouped chain."""
    work = tempfile.mkdtemp(prefix="mdh-download-")
    try:
        got = download_day(exchange, data_type, date, source_symbol, endpoint=endpoint, api_key=api_key, dest_dir=work)
        table = read_raw_csv(got.path, data_type, date, name=got.url[len(endpoint) + 1:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if data_type == OPTIONS_DATA_TYPE:
        table = table.filter(pc.starts_with(table["symbol"], f"{key.symbol}-"))
    return RawDay(table, got.url, got.bytes)
