"""Candle columns from derivative_ticker and liquidations (perpetuals and futures).

- funding_rate, predicted_funding_rate, open_interest, mark_price, index_price: the last
  non-null value with timestamp before the bucket end. A bucket without an update carries
  the value over from earlier (as of the bucket end): rows stamped before the grid's start
  are the initial state (for a day, those carried over from the previous day's file and the
  pre-midnight rows of its own, `mdh_lib.candles.day_inputs`); before any value at all, null.
- oi_change: open_interest minus the previous bucket's; for the first bucket, minus the value
  as of the grid's start (so a 24h candle has one: the day's change), null without one.
- liquidation_buy_volume / liquidation_sell_volume / liquidation_count: sum of amount by
  Tardis side (buy = a short was liquidated, a forced buy) and number of liquidations with
  timestamp in the bucket; 0 when none.
- liquidation_with_rising_oi / liquidation_with_falling_oi: the bucket's liquidation volume
  (buy + sell) when oi_change > 0 / < 0, else 0.
"""

from __future__ import annotations

import polars as pl

from mdh_lib.features.sums import ordered_sum
from mdh_lib.timeframes import bucket_start, width_us

TICKER_COLUMNS = ["funding_rate", "predicted_funding_rate", "open_interest", "mark_price", "index_price"]
LIQUIDATION_COLUMNS = ["liquidation_buy_volume", "liquidation_sell_volume", "liquidation_count"]
DERIVATIVE_COLUMNS = TICKER_COLUMNS + ["oi_change"] + LIQUIDATION_COLUMNS + [
    "liquidation_with_rising_oi", "liquidation_with_falling_oi"]


def ticker_columns(grid: pl.DataFrame, ticker: pl.DataFrame | None, timeframe: str) -> pl.DataFrame:
    """``bucket`` plus the ticker columns and oi_change, as of each bucket end."""
    if ticker is None:
        return grid.with_columns([pl.lit(None, pl.Float64).alias(c) for c in TICKER_COLUMNS + ["oi_change"]])
    first = grid["bucket"][0]
    # Rows before the day start become one "initial state" bucket just before the grid.
    initial = first - width_us(timeframe)
    bucket = pl.max_horizontal(bucket_start("timestamp", timeframe), pl.lit(initial))
    last = (
        ticker.lazy()
        .filter(pl.col("timestamp") < grid["bucket"][-1] + width_us(timeframe))
        .group_by(bucket.alias("bucket"))
        .agg([pl.col(c).drop_nulls().last() for c in TICKER_COLUMNS])
        .collect()
    )
    extended = pl.concat([pl.DataFrame({"bucket": [initial]}, schema={"bucket": pl.Int64}), grid])
    state = (
        extended.join(last, on="bucket", how="left")
        .sort("bucket")
        .with_columns([pl.col(c).forward_fill() for c in TICKER_COLUMNS])
        .with_columns(oi_change=pl.col("open_interest") - pl.col("open_interest").shift(1))
    )
    return state.filter(pl.col("bucket") >= first)


def liquidation_columns(liquidations: pl.DataFrame | None, timeframe: str) -> pl.DataFrame:
    """``bucket`` plus liquidation volumes and count, for buckets with liquidations."""
    schema = {"bucket": pl.Int64, "liquidation_buy_volume": pl.Float64, "liquidation_sell_volume": pl.Float64,
              "liquidation_count": pl.Int64}
    if liquidations is None or liquidations.is_empty():
        return pl.DataFrame(schema=schema)
    amount = pl.col("amount")
    return (
        liquidations.lazy()
        .group_by(bucket_start("timestamp", timeframe).alias("bucket"))
        .agg(
            liquidation_buy_volume=ordered_sum(amount.filter(pl.col("side") == "buy")),
            liquidation_sell_volume=ordered_sum(amount.filter(pl.col("side") == "sell")),
            liquidation_count=pl.len().cast(pl.Int64),
        )
        .collect()
    )


def with_liquidations(frame: pl.DataFrame, liquidations: pl.DataFrame) -> pl.DataFrame:
    """Join liquidation columns (0 when none) and split their volume by the sign of oi_change."""
    total = pl.col("liquidation_buy_volume") + pl.col("liquidation_sell_volume")
    oi = pl.col("oi_change").fill_null(0.0)
    return (
        frame.join(liquidations, on="bucket", how="left")
        .with_columns([pl.col(c).fill_null(0) for c in LIQUIDATION_COLUMNS])
        .with_columns(
            liquidation_with_rising_oi=pl.when(oi > 0).then(total).otherwise(0.0),
            liquidation_with_falling_oi=pl.when(oi < 0).then(total).otherwise(0.0),
        )
    )
