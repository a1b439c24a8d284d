"""Timeframes and the daily bucket grid shared by candles, book, options and MFT features.

Buckets are half-open [start, end) on the exchange ``timestamp`` (int64 microseconds UTC) and
labelled by their start. Every timeframe divides a UTC day exactly, so a day always has the
full grid of ``86_400 s / width`` buckets.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

US = 1_000_000
DAY_US = 86_400 * US
TIMEFRAMES: dict[str, int] = {
    "15s": 15 * US,
    "1m": 60 * US,
    "5m": 300 * US,
    "15m": 900 * US,
    "1h": 3_600 * US,
    "4h": 14_400 * US,
    "24h": DAY_US,
}
MFT_TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "24h")


def width_us(timeframe: str) -> int:
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r} (one of {', '.join(TIMEFRAMES)})") from None


def day_start_us(date: dt.date) -> int:
    return int(dt.datetime.combine(date, dt.time(), dt.timezone.utc).timestamp()) * US


def bucket_start(col: str | pl.Expr, timeframe: str) -> pl.Expr:
    """The int64 start of the bucket holding each timestamp (microseconds)."""
    expr = pl.col(col) if isinstance(col, str) else col
    width = width_us(timeframe)
    return (expr // width) * width


def grid(date: dt.date, timeframe: str) -> pl.DataFrame:
    """The day's full grid: one row per bucket, column ``bucket`` (int64 us start)."""
    width = width_us(timeframe)
    start = day_start_us(date)
    return pl.DataFrame({"bucket": pl.int_range(start, start + DAY_US, width, eager=True, dtype=pl.Int64)})


def to_datetime(col: str = "bucket", name: str = "timestamp") -> pl.Expr:
    """Int64 microseconds to a UTC datetime column."""
    return pl.col(col).cast(pl.Datetime("us", "UTC")).alias(name)


def grid_failures(frame: pl.DataFrame, date: dt.date, timeframe: str) -> list[str]:
    """Why ``frame`` is not exactly the day's grid (row count, first bucket, strictly
    increasing timestamps); empty when it is."""
    expected = DAY_US // width_us(timeframe)
    if frame.height != expected:
        return [f"full_grid: {frame.height} rows, expected {expected}"]
    ts = frame["timestamp"].dt.epoch("us")
    if ts[0] != day_start_us(date):
        return [f"full_grid: first bucket {frame['timestamp'][0]} is not the start of {date}"]
    if (ts.diff().drop_nulls() != width_us(timeframe)).any():
        return ["full_grid: timestamps are not the day's consecutive buckets"]
    return []
