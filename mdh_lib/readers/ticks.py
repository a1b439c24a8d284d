"""`TickDataReader`: raw Tardis ticks (``raw/{data_type}``) for time windows, read by row group.

Files: with ``date``, that day's file (Tardis splits files by arrival time, so it may begin
with a few rows stamped just before midnight); without it, the files of the UTC days that
[start_time, end_time) touches. Rows: exchange ``timestamp`` in [start_time, end_time)
(with ``date`` either bound may be omitted). A file that is not there raises
`MissingPartitionError` unless ``allow_missing=True``.

Frames keep Tardis's columns; ``timestamp`` and ``local_timestamp`` become timezone-aware
UTC datetimes (other microsecond columns, ``funding_timestamp`` and ``expiration``, keep
Tardis units). One data type (a string or a one-element list) gives a DataFrame, several a
dict keyed by data type.

Each read reports what it touched: ``frame.attrs["mdh_read_stats"]`` per frame and
``reader.last_read_stats`` (a `ReadStats` for the whole call; a stream updates it as it goes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mdh_lib.instruments import RAW_DATA_TYPES, InstrumentKey
from mdh_lib.layout import raw_path
from mdh_lib.readers.data_client import DataClient, with_keys
from mdh_lib.parquet_window import (
    OpenFiles, ReadStats, Window, byte_range, chunk_bytes, overlapping, read_window, timestamp_bounds, within,
)
from mdh_lib.readers.ranges import (
    MissingPartitionError, TimeLike, as_date, as_utc, days, from_micros, instrument, micros, utc_range,
)
from mdh_lib.schemas import RAW_SCHEMAS
from mdh_lib.timeframes import DAY_US, US, day_start_us

TIME_COLUMNS = ("timestamp", "local_timestamp")
ByteRanges = dict[str, list[tuple[dt.datetime, dt.datetime, int, int]]]


def _data_types(data_types: str | Sequence[str]) -> list[str]:
    types = [data_types] if isinstance(data_types, str) else list(data_types)
    unknown = [t for t in types if t not in RAW_DATA_TYPES]
    if unknown or not types:
        raise ValueError(f"unknown data type {unknown[0] if unknown else 'list []'!r} "
                         f"(one or more of {', '.join(RAW_DATA_TYPES)})")
    return types


def _window(start_time: TimeLike | None, end_time: TimeLike | None,
            date: TimeLike | None) -> tuple[Window, list[dt.date]]:
    """The row window in microseconds and the days whose files hold it."""
    lo = None if start_time is None else as_utc(start_time)
    hi = None if end_time is None else as_utc(end_time)
    if lo is not None and hi is not None:
        utc_range(lo, hi)
    if date is not None:
        file_days = [as_date(date)]
    elif lo is None or hi is None:
        raise ValueError("give date=, or both start_time= and end_time=")
    else:
        file_days = days(lo, hi)
    return (None if lo is None else micros(lo), None if hi is None else micros(hi)), file_days


def to_frame(table: pa.Table) -> pd.DataFrame:
    """pandas, with the Tardis microsecond time columns as UTC datetimes."""
    for name in TIME_COLUMNS:
        if name in table.column_names:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table[name].cast(pa.timestamp("us", "UTC")))
    return table.to_pandas()


def _pick(frames: dict[str, pd.DataFrame]) -> pd.DataFrame | dict[str, pd.DataFrame]:
    return next(iter(frames.values())) if len(frames) == 1 else frames


class TickDataReader:
    def __init__(self, data_client: DataClient):
        self.client = data_client
        self.last_read_stats: ReadStats | None = None

    def get_tick_data(self, instrument_id: InstrumentKey | str, start_time: TimeLike | None = None,
                      end_time: TimeLike | None = None, date: TimeLike | None = None,
                      data_types: str | Sequence[str] = ("trades",), *, columns: Sequence[str] | None = None,
                      allow_missing: bool = False) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Ticks in the window. Always prunes row groups by statistics (SPEC: reads touch only
        the row groups they need); the same as `get_tick_data_optimized`."""
        return self.get_tick_data_optimized(instrument_id, start_time, end_time, date, data_types,
                                            columns=columns, allow_missing=allow_missing)

    def get_tick_data_optimized(self, instrument_id: InstrumentKey | str, start_time: TimeLike | None = None,
                                end_time: TimeLike | None = None, date: TimeLike | None = None,
                                data_types: str | Sequence[str] = ("trades",), use_predicate_pushdown: bool = True,
                                *, columns: Sequence[str] | None = None,
                                allow_missing: bool = False) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """Ticks in the window, reading only the row groups whose ``timestamp`` min/max overlap
        it; ``use_predicate_pushdown=False`` decodes every row group (a baseline to compare)."""
        key, types = instrument(instrument_id), _data_types(data_types)
        window, file_days = _window(start_time, end_time, date)
        files = {t: self._files(key, t, file_days, allow_missing) for t in types}
        self.last_read_stats = total = ReadStats()
        with OpenFiles(self.client.storage) as open_file:
            return _pick({t: self._read(open_file, t, rels.values(), window, columns, use_predicate_pushdown, total)
                          for t, rels in files.items()})

    def get_tick_data_streaming(self, instrument_id: InstrumentKey | str, start_time: TimeLike | None = None,
                                end_time: TimeLike | None = None, date: TimeLike | None = None,
                                data_types: str | Sequence[str] = ("trades",), chunk_size: int = 10_000, *,
                                columns: Sequence[str] | None = None,
                                allow_missing: bool = False) -> Iterator[pd.DataFrame]:
        """The window as DataFrames of ``chunk_size`` rows (the last one shorter), decoding one
        overlapping row group at a time: memory holds a row group and a chunk, never the day.
        One data type per stream. Arguments are checked at once, the files read lazily."""
        key, types = instrument(instrument_id), _data_types(data_types)
        if len(types) != 1:
            raise ValueError(f"a stream reads one data type, not {types}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        window, file_days = _window(start_time, end_time, date)
        rels = self._files(key, types[0], file_days, allow_missing)
        self.last_read_stats = stats = ReadStats()
        return self._stream(list(rels.values()), window, with_keys(columns), chunk_size, stats)

    def get_sparse_candles(self, instrument_id: InstrumentKey | str, candle_times: Iterable[TimeLike],
                           date: TimeLike | None = None, data_types: str | Sequence[str] = ("trades",),
                           buffer_minutes: float = 2, *, columns: Sequence[str] | None = None,
                           allow_missing: bool = False) -> dict:
        """For each candle time t (the dict keys are the values given), the ticks in
        [t - buffer, t + buffer), read with row-group pruning; each file's footer is parsed
        once for all windows. Values are DataFrames, or dicts by data type for several."""
        key, types = instrument(instrument_id), _data_types(data_types)
        buffer = dt.timedelta(minutes=buffer_minutes)
        if buffer <= dt.timedelta(0):
            raise ValueError(f"buffer_minutes must be positive, not {buffer_minutes}")
        windows = {t: _window(as_utc(t) - buffer, as_utc(t) + buffer, date) for t in candle_times}
        needed = sorted({d for _, file_days in windows.values() for d in file_days})
        files = {kind: self._files(key, kind, needed, allow_missing) for kind in types}
        self.last_read_stats = total = ReadStats()
        out = {}
        with OpenFiles(self.client.storage) as open_file:
            for t, (window, file_days) in windows.items():
                rels = {kind: [files[kind][d] for d in file_days if d in files[kind]] for kind in types}
                out[t] = _pick({kind: self._read(open_file, kind, rels[kind], window, columns, True, total)
                                for kind in types})
        return out

    def get_sparse_data_ranges(self, instrument_id: InstrumentKey | str, date: TimeLike,
                               data_types: str | Sequence[str] = ("trades",), time_partition_minutes: float = 1, *,
                               allow_missing: bool = False) -> ByteRanges:
        """Per data type, for each partition [start, end) of the day (``time_partition_minutes``
        wide) that a row group's timestamp range overlaps, ``(start, end, byte_start, byte_end)``:
        the half-open byte span in the file of the row groups covering it, from the footer
        (column chunk offsets and compressed sizes) without reading data, so a caller can fetch
        exactly those bytes (plus the footer) with HTTP range requests. Statistics cannot tell
        an empty minute inside a row group's range, so such a minute is listed too."""
        key, types, day = instrument(instrument_id), _data_types(data_types), as_date(date)
        width = round(time_partition_minutes * 60 * US)
        if width <= 0:
            raise ValueError(f"time_partition_minutes must be positive, not {time_partition_minutes}")
        files = {t: self._files(key, t, [day], allow_missing) for t in types}
        with OpenFiles(self.client.storage) as open_file:
            return {t: _partitions(open_file(rels[day]).metadata, day_start_us(day), width) if rels else []
                    for t, rels in files.items()}

    def _files(self, key: InstrumentKey, data_type: str, file_days: list[dt.date],
               allow_missing: bool) -> dict[dt.date, str]:
        """The existing raw files by day; a missing one raises unless ``allow_missing``."""
        rels = {day: raw_path(data_type, day, key) for day in file_days}
        missing = [day for day, rel in rels.items() if not self.client.storage.exists(rel)]
        if missing and not allow_missing:
            raise MissingPartitionError(("raw", data_type), missing, key)
        return {day: rel for day, rel in rels.items() if day not in missing}

    def _read(self, open_file: OpenFiles, data_type: str, rels: Iterable[str], window: Window,
              columns: Sequence[str] | None, prune: bool, total: ReadStats) -> pd.DataFrame:
        stats, tables, wanted = ReadStats(), [], with_keys(columns)
        for rel in rels:
            table, read = read_window(open_file(rel), window, wanted, prune)
            tables.append(table)
            stats += read
        if not tables:
            schema = RAW_SCHEMAS[data_type]
            tables = [schema.empty_table().select(wanted or schema.names)]
        total += stats
        frame = to_frame(pa.concat_tables(tables))
        frame.attrs["mdh_read_stats"] = asdict(stats)
        return frame

    def _stream(self, rels: list[str], window: Window, columns: list[str] | None, chunk_size: int,
                stats: ReadStats) -> Iterator[pd.DataFrame]:
        pending, rows = [], 0
        with OpenFiles(self.client.storage) as open_file:
            for rel in rels:
                pf = open_file(rel)
                meta = pf.metadata
                stats += ReadStats(files=1, row_groups_total=meta.num_row_groups)
                for i in overlapping(meta, window):
                    group = pf.read_row_group(i, columns=columns)
                    stats += ReadStats(row_groups_read=1, rows_read=group.num_rows,
                                       bytes_read=chunk_bytes(meta, i, columns))
                    pending.append(within(group, window))
                    rows += pending[-1].num_rows
                    while rows >= chunk_size:
                        whole = pa.concat_tables(pending)
                        pending, rows = [whole.slice(chunk_size)], rows - chunk_size
                        stats.rows_returned += chunk_size
                        yield to_frame(whole.slice(0, chunk_size))
        if rows:
            stats.rows_returned += rows
            yield to_frame(pa.concat_tables(pending))


def _partitions(meta: pq.FileMetaData, day_start: int, width: int) -> list[tuple[dt.datetime, dt.datetime, int, int]]:
    """The day's partitions overlapped by row groups, each with the byte span of those groups
    (row groups lie in file order, so the span is contiguous). A row group without statistics
    is taken to cover the whole day; rows stamped outside the day are left out."""
    count = -(-DAY_US // width)
    spans: dict[int, tuple[int, int]] = {}
    for i, bounds in enumerate(timestamp_bounds(meta)):
        first_ts, last_ts = bounds or (day_start, day_start + DAY_US - 1)
        start, end = byte_range(meta, i)
        for k in range(max(0, (first_ts - day_start) // width), min(count - 1, (last_ts - day_start) // width) + 1):
            s, e = spans.get(k, (start, end))
            spans[k] = (min(s, start), max(e, end))
    day_end = day_start + DAY_US
    return [(from_micros(day_start + k * width), from_micros(min(day_start + (k + 1) * width, day_end)), s, e)
            for k, (s, e) in sorted(spans.items())]
