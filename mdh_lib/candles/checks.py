"""Checks of a candle frame: types, OHLC consistency, the full grid.

Each check names what it guards; `check_candles` returns the failures (empty = passed) so
the Dagster layer can record them as asset-check results and refuse to write bad candles.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import polars as pl

from mdh_lib.candles.build import CANDLE_COLUMNS
from mdh_lib.frame_checks import Column, FrameSchema, Rule
from mdh_lib.timeframes import grid_failures

# Float sums of the same trades in another order differ in the last bits.
EPS = 1e-9

_INT = {"trade_count", "liquidation_count"}
_STR = {"exchange", "symbol", "instrument_key", "timeframe"}


def _dtype(col: str):
    if col == "timestamp":
        return pl.Datetime("us", "UTC")
    return pl.Int64 if col in _INT else pl.Utf8 if col in _STR else pl.Float64


def _tol(col: str) -> pl.Expr:
    return pl.col(col).abs() * EPS


@cache
def schema() -> FrameSchema:
    """The check of a candle frame (a Pandera schema, `mdh_lib.frame_checks`)."""
    rules = [
        Rule("ohlc_within_range",
             (pl.col("low") <= pl.min_horizontal("open", "close")) & (pl.max_horizontal("open", "close") <= pl.col("high")),
             error="low <= open, close <= high"),
        Rule("vwap_within_range",
             (pl.col("vwap") >= pl.col("low") - _tol("low")) & (pl.col("vwap") <= pl.col("high") + _tol("high")),
             error="vwap within [low, high]"),
        Rule("taker_volume_within_volume",
             pl.col("buy_volume_sum") + pl.col("sell_volume_sum") <= pl.col("volume") * (1 + EPS) + EPS,
             error="buy + sell volume <= volume"),
        Rule("empty_bucket_rule",
             (pl.col("trade_count") > 0) | (pl.col("open").is_null() & (pl.col("volume") == 0)),
             error="an empty bucket has volume 0 and null prices"),
    ]
    return FrameSchema("candles", {c: Column(_dtype(c), nullable=c not in ("timestamp", "volume", "trade_count", *_STR))
                                   for c in CANDLE_COLUMNS}, rules)


def check_candles(frame: pl.DataFrame, date: dt.date, timeframe: str) -> list[str]:
    """Failures of the candle checks (empty when the frame is good)."""
    return grid_failures(frame, date, timeframe) + [
        f"{e.get('check')}: {e.get('column') or ''} {e.get('error', '')[:160]}".strip()
        for e in schema().failures(frame)]
