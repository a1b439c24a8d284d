"""What a frame must look like before it reaches a warehouse table.

Both backends load the same normalised Arrow table: strings and binaries as plain Arrow
``string``/``binary`` (polars hands over ``large_string`` or views), dictionaries decoded, and
every timestamp as microseconds in UTC (a naive timestamp is taken to be UTC already).
A slice is one UTC day of ``timestamp`` for one ``instrument_key``; a load that names a slice
must hold only rows of it, so checking here keeps a mislabelled frame from deleting or
duplicating rows of another slice.
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pyarrow as pa

UTC = dt.timezone.utc
_TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}")


def table_name(name: str) -> str:
    """``name`` if it is safe to put into SQL quoted (letters, digits, ``_``, ``-``)."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"invalid warehouse table name {name!r}: use letters, digits, '_' and '-'")
    return name


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", "UTC")
    return t


def as_arrow(data: pa.Table | pl.DataFrame) -> pa.Table:
    """``data`` as an Arrow table of the types every backend loads alike."""
    if isinstance(data, pl.DataFrame):
        data = data.to_arrow()
    if not isinstance(data, pa.Table):
        raise TypeError(f"expected a pyarrow.Table or polars.DataFrame, got {type(data).__name__}")
    schema = pa.schema([f.with_type(_plain(f.type)) for f in data.schema])
    return data if schema == data.schema else data.cast(schema)


def day_bounds(date: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC range [midnight, next midnight) of ``date``."""
    start = dt.datetime.combine(date, dt.time(), UTC)
    return start, start + dt.timedelta(days=1)


def check_slice(frame: pa.Table, date: dt.date, instrument_key: str) -> None:
    """Raise ValueError unless every row of ``frame`` is in (UTC day ``date``, ``instrument_key``)."""
    missing = {"timestamp", "instrument_key"} - set(frame.column_names)
    if missing:
        raise ValueError(f"a slice load needs columns timestamp and instrument_key; missing {sorted(missing)}")
    if not pa.types.is_timestamp(frame.schema.field("timestamp").type):
        raise ValueError(f"column timestamp must be a timestamp, not {frame.schema.field('timestamp').type}")
    start, end = day_bounds(date)
    rows = pl.from_arrow(frame.select(["timestamp", "instrument_key"]))
    inside = pl.col("timestamp").is_between(start, end, closed="left") & (pl.col("instrument_key") == instrument_key)
    outside = rows.filter(~inside.fill_null(False))
    if outside.height:
        first = outside.row(0, named=True)
        raise ValueError(f"{outside.height} of {rows.height} rows are outside the slice ({date}, {instrument_key}), "
                         f"e.g. timestamp={first['timestamp']} instrument_key={first['instrument_key']}")


def added_columns(table: str, existing: list[str], frame: pa.Table) -> list[str]:
    """The columns ``frame`` adds to the existing ``table`` (a newer version's features: the
    backend adds them, nullable, so older rows read null). ValueError when ``frame`` lacks a
    column of the table: dropping columns is not something a load may do."""
    missing = set(existing) - set(frame.column_names)
    if missing:
        raise ValueError(f"columns do not match table {table}: the rows lack {sorted(missing)}")
    return [c for c in frame.column_names if c not in set(existing)]
