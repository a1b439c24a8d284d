"""A day's inputs from three files, so that every day equals its slice of one continuous stream.

Tardis splits files by local arrival time: rows stamped (exchange ``timestamp``) in day D sit in
D's file, at the head of D+1's (late arrivals) and, rarely, at the tail of D-1's (an exchange
clock ahead of the collector's). A row belongs to the day of its timestamp, whichever file holds it.

- Events (trades, liquidations): day D's rows are the rows stamped in D from the three files,
  so each is counted exactly once.
- "As of" data (derivative_ticker, book_snapshot_5, options_chain) also needs the state at D's
  start: the rows stamped before midnight that can still be the latest of something
  (`last_rows`: per ticker column the last non-null value, the last book snapshot, per option
  not expired at midnight its last snapshot). They come from the tail of D-1's file, read
  backwards one row group at a time until that state is complete (files are sorted by
  timestamp), and from the pre-midnight rows at the head of D's and D+1's files. The feature
  functions take every row stamped before the day start as initial state and ignore rows at or
  after its end, so D computed from these inputs equals D computed over all files concatenated.

Order: timestamp, ties in file order (D-1, D, D+1), then as within the file.

A missing neighbour file is left out and `Sources` names it; materializing D again once it
exists fills in its rows: D-1's change D's first buckets (until each series' first update of
the day), D+1's the late rows of D's last buckets. State reaches back one file: a ticker column
that is null throughout D-1's file starts D null, an option without a row in D-1's file is
absent until its first row of D.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow.parquet as pq

from mdh_lib.candles.build import day_rows
from mdh_lib.candles.derivatives import TICKER_COLUMNS
from mdh_lib.candles.trades import TRADE_COLUMNS
from mdh_lib.catalog import Catalog
from mdh_lib.instruments import InstrumentKey
from mdh_lib.layout import dataset_path
from mdh_lib.schemas import BOOK_COLUMNS
from mdh_lib.timeframes import DAY_US, day_start_us

Key = InstrumentKey | str
TS = pl.col("timestamp")
# What the candles read of each event data type, and the features of each "as of" one.
EVENT_COLUMNS = {"trades": TRADE_COLUMNS, "liquidations": ["timestamp", "side", "amount"]}
AS_OF_COLUMNS = {
    "derivative_ticker": ["timestamp", *TICKER_COLUMNS],
    "book_snapshot_5": ["timestamp", *BOOK_COLUMNS],
    "options_chain": ["symbol", "timestamp", "type", "strike_price", "expiration", "open_interest", "mark_iv",
                      "underlying_price", "delta"],
}


@dataclass(frozen=True)
class Sources:
    """Which neighbour files a day's inputs came from (for the materialization metadata)."""

    previous_day_included: bool
    next_day_included: bool
    missing: tuple[str, ...]  # absent neighbour files, storage-relative paths
    from_previous_day: int  # rows taken from D-1's file (state and rows stamped in D)
    from_next_day: int  # rows taken from D+1's file (stamped before D's end)

    def __add__(self, other: Sources) -> Sources:
        return Sources(self.previous_day_included and other.previous_day_included,
                       self.next_day_included and other.next_day_included, self.missing + other.missing,
                       self.from_previous_day + other.from_previous_day, self.from_next_day + other.from_next_day)

    @staticmethod
    def total(parts) -> Sources:
        return sum(parts, Sources(True, True, (), 0, 0))

    def metadata(self) -> dict:
        return {"previous_day_included": self.previous_day_included, "next_day_included": self.next_day_included,
                "missing_neighbour_files": ", ".join(self.missing) or "none",
                "rows_from_previous_day": self.from_previous_day, "rows_from_next_day": self.from_next_day}


def _sorted(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenated in the given (file) order, then stably by timestamp."""
    return pl.concat(frames).sort("timestamp", maintain_order=True)


def last_rows(rows: pl.DataFrame, data_type: str, start: int) -> pl.DataFrame:
    """The rows (in timestamp order, all before ``start``) that can still be the latest of
    something at ``start`` or later: dropping the others changes no feature."""
    if rows.is_empty() or data_type == "book_snapshot_5":
        return rows.tail(1)
    index = pl.int_range(pl.len())
    if data_type == "derivative_ticker":
        last = rows.select(index.last().alias("_i"),
                           *(index.filter(pl.col(c).is_not_null()).last().alias(c) for c in TICKER_COLUMNS))
        return rows[sorted({i for i in last.row(0) if i is not None})]
    if data_type == "options_chain":
        live = rows.with_columns(_i=index).filter(pl.col("expiration") > start)
        return live.unique("symbol", keep="last").sort("_i").drop("_i")
    raise ValueError(f"{data_type} is not an 'as of' data type")


def _complete(state: pl.DataFrame, data_type: str, wanted: set[str]) -> bool:
    """Whether ``state`` holds every series of ``wanted`` (`_series`)."""
    if data_type == "derivative_ticker":
        return all(state[c].null_count() < state.height for c in wanted)
    if data_type == "options_chain":
        return wanted <= set(state["symbol"])
    return not state.is_empty()


def _series(pf: pq.ParquetFile, data_type: str, start: int) -> set[str]:
    """What the state of a file must hold: the ticker columns the file fills at all (from the
    row groups' null counts, so a column an exchange never sends does not make the backward
    scan read the whole file), the options with a row before ``start`` not expired at ``start``."""
    if data_type == "derivative_ticker":
        groups = [pf.metadata.row_group(g) for g in range(pf.metadata.num_row_groups)]
        names = pf.schema_arrow.names

        def all_null(group, c: str) -> bool:
            stats = group.column(names.index(c)).statistics
            return stats is not None and stats.has_null_count and stats.null_count == group.num_rows

        return {c for c in TICKER_COLUMNS if not all(all_null(g, c) for g in groups)}
    out: set[str] = set()
    if data_type == "options_chain":
        for i in range(pf.num_row_groups):
            group = pl.from_arrow(pf.read_row_group(i, columns=["symbol", "timestamp", "expiration"]))
            out |= set(group.filter((TS < start) & (pl.col("expiration") > start))["symbol"].unique())
    return out


def _previous_file(catalog: Catalog, data_type: str, date: dt.date, key: Key, columns: list[str],
                   state_of: str | None) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """(state at ``date``'s start from D-1's file, its rows stamped in ``date``), reading row
    groups from the last backwards: only those holding day rows and those needed for the state
    (with ``state_of`` None, only the day rows). None when the file is absent."""
    rel = dataset_path(("raw", data_type), date - dt.timedelta(days=1), key)
    if not catalog.storage.exists(rel):
        return None
    start = day_start_us(date)
    pf = catalog.storage.parquet_file(rel)
    wanted = _series(pf, state_of, start) if state_of else set()
    in_day, before = [], []
    for i in reversed(range(pf.num_row_groups)):
        group = pl.from_arrow(pf.read_row_group(i, columns=columns))
        in_day.insert(0, group.filter(TS.is_between(start, start + DAY_US, closed="left")))
        if state_of is None:
            if group.height and group["timestamp"][0] < start:
                break
            continue
        before.insert(0, group.filter(TS < start))
        state = last_rows(pl.concat(before), state_of, start)
        before = [state]
        if _complete(state, state_of, wanted):
            break
    empty = pl.from_arrow(pf.schema_arrow.empty_table()).select(columns)
    return pl.concat([empty, *before]), pl.concat([empty, *in_day])


def _neighbours(catalog: Catalog, data_type: str, date: dt.date, key: Key, columns: list[str],
                state_of: str | None):
    """(D-1 state, D-1 rows stamped in D, D+1 rows stamped before D's end, Sources)."""
    start, nxt = day_start_us(date), date + dt.timedelta(days=1)
    previous = _previous_file(catalog, data_type, date, key, columns, state_of)
    late = catalog.read(("raw", data_type), nxt, key, columns=columns, window=(None, start + DAY_US))
    missing = tuple(dataset_path(("raw", data_type), d, key)
                    for d, frame in ((date - dt.timedelta(days=1), previous), (nxt, late)) if frame is None)
    state, early = previous if previous is not None else (None, None)
    sources = Sources(previous is not None, late is not None, missing,
                      0 if previous is None else state.height + early.height, 0 if late is None else late.height)
    return state, early, late, sources


def day_events(catalog: Catalog, data_type: str, date: dt.date, key: Key,
               columns: list[str]) -> tuple[pl.DataFrame, Sources] | None:
    """The trades or liquidations stamped in ``date`` from the three files; None when D's own
    file is absent."""
    own = catalog.read(("raw", data_type), date, key, columns=columns)
    if own is None:
        return None
    _, early, late, sources = _neighbours(catalog, data_type, date, key, columns, None)
    return day_rows(own, late, date, early), sources


def day_as_of(catalog: Catalog, data_type: str, date: dt.date, key: Key) -> tuple[pl.DataFrame, Sources] | None:
    """The ticker or options-chain rows for ``date``'s features: the state at midnight, then
    every row stamped before ``date``'s end (`AS_OF_COLUMNS`); None when D's own file is absent."""
    columns = AS_OF_COLUMNS[data_type]
    end = day_start_us(date) + DAY_US
    own = catalog.read(("raw", data_type), date, key, columns=columns)
    if own is None:
        return None
    state, early, late, sources = _neighbours(catalog, data_type, date, key, columns, data_type)
    parts = [f for f in (state, early, own.filter(TS < end), late) if f is not None]
    return _sorted(parts), sources


def day_book(catalog: Catalog, date: dt.date, key: Key) -> tuple[Iterator[pl.DataFrame], Sources] | None:
    """book_snapshot_5 chunks for ``date``'s features, sorted by timestamp: the last snapshot
    before midnight, then D's file one row group at a time with the neighbours' rows stamped in
    D merged in; None when D's own file is absent."""
    data_type, columns = "book_snapshot_5", AS_OF_COLUMNS["book_snapshot_5"]
    start = day_start_us(date)
    own_before = catalog.read(("raw", data_type), date, key, columns=columns, window=(None, start))
    if own_before is None:
        return None
    state, early, late, sources = _neighbours(catalog, data_type, date, key, columns, data_type)
    empty = own_before.clear()
    late = empty if late is None else late
    initial = last_rows(_sorted([f for f in (state, own_before, late.filter(TS < start)) if f is not None]),
                        data_type, start)
    in_day = TS.is_between(start, start + DAY_US, closed="left")
    own = (c.filter(in_day) for c in catalog.batches(("raw", data_type), date, key, columns=columns))
    chunks = _merged(own, empty if early is None else early, late.filter(TS >= start))
    return (c for c in (initial, *chunks) if not c.is_empty()), sources


def _merged(chunks: Iterator[pl.DataFrame], before: pl.DataFrame, after: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """Sorted ``chunks`` with the few rows of an earlier file (``before``) and a later one
    (``after``) inserted in timestamp order, ties in file order; every chunk stays sorted and
    no chunk starts before the previous one ended."""
    for chunk in chunks:
        if chunk.is_empty():
            continue
        last = chunk["timestamp"][-1]
        take_before, take_after = before.filter(TS <= last), after.filter(TS < last)
        before, after = before.filter(TS > last), after.filter(TS >= last)
        yield _sorted([take_before, chunk, take_after])
    yield _sorted([before, after])


def candle_inputs(catalog: Catalog, date: dt.date, key: Key,
                  data_types) -> tuple[dict[str, pl.DataFrame], dict[str, Sources], list[str]]:
    """What ``date``'s candles read, for the candle data types among ``data_types``: the day's
    trades and liquidations (`day_events`) and ticker rows (`day_as_of`), each one's `Sources`,
    and the data types whose own file for ``date`` is absent."""
    frames, sources, absent = {}, {}, []
    for data_type in ("trades", "liquidations", "derivative_ticker"):
        if data_type not in data_types:
            continue
        got = (day_events(catalog, data_type, date, key, EVENT_COLUMNS[data_type]) if data_type in EVENT_COLUMNS
               else day_as_of(catalog, data_type, date, key))
        if got is None:
            absent.append(data_type)
        else:
            frames[data_type], sources[data_type] = got
    return frames, sources, absent
