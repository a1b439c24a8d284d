"""A day's candles for every timeframe, from one read of its ticks.

Late trades (Tardis splits files by local arrival time): a trade belongs to the day of its
exchange ``timestamp``. Day D's candles are built from day D's file rows stamped in D plus
day D+1's file rows stamped in D (the few trades that arrived after midnight); the rows of
day D's file stamped before midnight belong to D-1's candles. When D+1's file is not there
yet, D's candles leave those late trades out and say so (``next_day_included`` false in the
materialization); building D again once D+1 is downloaded adds them. Every trade is counted
exactly once, in the day of its exchange timestamp. Liquidations follow the same rule; ticker
values are "as of" a time, so earlier rows only set the starting state.
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


def day_rows(current: pl.DataFrame, next_day: pl.DataFrame | None, date: dt.date) -> pl.DataFrame:
    """The rows stamped in ``date``: from its own file, then the next day's late arrivals."""
    start = day_start_us(date)
    in_day = pl.col("timestamp").is_between(start, start + DAY_US, closed="left")
    parts = [current.filter(in_day)] + ([next_day.filter(in_day)] if next_day is not None else [])
    return pl.concat(parts).sort("timestamp", maintain_order=True) if len(parts) > 1 else parts[0]


def candles(
    trades: pl.DataFrame, date: dt.date, instrument: Instrument, *, timeframes: Iterable[str] = TIMEFRAMES,
    ticker: pl.DataFrame | None = None, liquidations: pl.DataFrame | None = None,
    options: dict[str, pl.DataFrame] | None = None,
) -> dict[str, pl.DataFrame]:
    """Full-grid candles per timeframe. ``trades``/``liquidations`` are the day's rows
    (`day_rows`); ``ticker`` the day's file as is; ``options`` per timeframe the frames of
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
