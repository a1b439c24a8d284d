"""A day's candles for every timeframe, from one read of its ticks.

A row belongs to the day of its exchange ``timestamp``, whichever day's file holds it (Tardis
splits files by local arrival time): `mdh_lib.candles.day_inputs` assembles a day's trades and
liquidations (`day_rows`: the rows stamped in D from D-1's, D's and D+1's files, each counted
exactly once) and its ticker rows (the state at midnight carried from D-1, then every row
stamped before D's end), and says which neighbour files were absent. Building D again once
they exist adds their rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl

from mdh_lib.candles.derivatives import DERIVATIVE_COLUMNS, liquidation_columns, ticker_columns, with_liquidations
from mdh_lib.candles.trades import BAR_COLUMNS, on_grid, trade_bars
from mdh_lib.frames import ID_COLUMNS, Instrument, with_ids
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, day_start_us, grid, to_datetime

OPTION_COLUMNS = ["skew_25d_put_call_ratio", "atm_mark_iv"]
CANDLE_COLUMNS = ID_COLUMNS + BAR_COLUMNS + DERIVATIVE_COLUMNS + OPTION_COLUMNS


def day_rows(current: pl.DataFrame, next_day: pl.DataFrame | None, date: dt.date,
             previous_day: pl.DataFrame | None = None) -> pl.DataFrame:
    """The rows stamped in ``date`` from the previous day's file, its own and the next day's
    (late arrivals), in timestamp order, ties in that file order."""
    start = day_start_us(date)
    if previous_day is None and next_day is None and (
            current.is_empty() or (current["timestamp"].min() >= start and current["timestamp"].max() < start + DAY_US)):
        return current  # every row is the day's: no copy
    in_day = pl.col("timestamp").is_between(start, start + DAY_US, closed="left")
    parts = [f.filter(in_day) for f in (previous_day, current, next_day) if f is not None]
    return pl.concat(parts).sort("timestamp", maintain_order=True) if len(parts) > 1 else parts[0]


def candles(
    trades: pl.DataFrame, date: dt.date, instrument: Instrument, *, timeframes: Iterable[str] = TIMEFRAMES,
    ticker: pl.DataFrame | None = None, liquidations: pl.DataFrame | None = None,
    options: dict[str, pl.DataFrame] | None = None,
) -> dict[str, pl.DataFrame]:
    """Full-grid candles per timeframe. ``trades``/``liquidations`` are the day's rows
    (`day_rows`); ``ticker`` the rows stamped before the day's end, those before its start
    being the initial state (`mdh_lib.candles.day_inputs.day_as_of`); ``options`` per timeframe the frames of
    `mdh_lib.features.options.options_columns` for the instrument's underlying."""
    timeframes = list(timeframes)
    bars = trade_bars(trades, timeframes)
    out = {}
    for tf in timeframes:
        frame = on_grid(grid(date, tf), bars[tf])
        frame = frame.join(ticker_columns(grid(date, tf), ticker, tf), on="bucket", how="left")
        frame = with_liquidations(frame, liquidation_columns(liquidations, tf))
        frame = frame.with_columns(to_datetime())
        if options and tf in options:
            frame = frame.join(options[tf].select("timestamp", *OPTION_COLUMNS), on="timestamp", how="left")
        else:
            frame = frame.with_columns([pl.lit(None, pl.Float64).alias(c) for c in OPTION_COLUMNS])
        out[tf] = with_ids(frame, instrument, tf).select(CANDLE_COLUMNS)
    return out
