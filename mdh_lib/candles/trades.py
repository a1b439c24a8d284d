"""Trade bars: OHLCV, VWAP and the trade-based HFT features of SPEC section 6.

`trade_bars` is the one implementation of candle maths from trades. Batch calls it on a whole
day, the live path on the trades of each closed bucket: the numbers are identical because the
aggregation is per bucket and sees every trade of it. Within a bucket trades are in exchange
``timestamp`` order, ties in Tardis's (``local_timestamp``) order, so open is the first and
close the last trade of that order.

Per bucket (only buckets with trades; `on_grid` adds the empty ones):

- open, high, low, close: first, max, min, last trade price
- volume: sum of amount; trade_count: number of trades
- vwap = price_vwap = sum(price*amount) / sum(amount) (null when the volume is 0)
- buy_volume_sum / sell_volume_sum: sum of amount where the taker side is buy / sell
  (Tardis side ``unknown`` counts in neither, so buy + sell <= volume)
- size_avg: mean trade amount
- delay_median / delay_mean / delay_min / delay_max: local_timestamp - timestamp in
  milliseconds (exact median of the bucket's trades)
"""

from __future__ import annotations

import polars as pl

from mdh_lib.timeframes import bucket_start

TRADE_COLUMNS = ["timestamp", "local_timestamp", "side", "price", "amount"]
BAR_COLUMNS = [
    "open", "high", "low", "close", "volume", "vwap", "trade_count", "buy_volume_sum", "sell_volume_sum",
    "size_avg", "price_vwap", "delay_median", "delay_mean", "delay_min", "delay_max",
]
# What an empty bucket holds (SPEC: trade_count 0, volume 0, null prices).
EMPTY_BAR = {"volume": 0.0, "trade_count": 0, "buy_volume_sum": 0.0, "sell_volume_sum": 0.0}


def trade_bars(trades: pl.DataFrame | pl.LazyFrame, timeframe: str) -> pl.DataFrame:
    """Bars of ``trades`` (sorted by timestamp) per ``timeframe`` bucket, column ``bucket`` (int64 us)."""
    delay = (pl.col("local_timestamp") - pl.col("timestamp")).cast(pl.Float64) / 1_000.0
    amount, price = pl.col("amount"), pl.col("price")
    volume = amount.sum()
    notional = (price * amount).sum()
    vwap = pl.when(volume > 0).then(notional / volume).otherwise(None)
    bars = (
        trades.lazy()
        .group_by(bucket_start("timestamp", timeframe).alias("bucket"), maintain_order=True)
        .agg(
            open=price.first(), high=price.max(), low=price.min(), close=price.last(),
            volume=volume, vwap=vwap, trade_count=pl.len().cast(pl.Int64),
            buy_volume_sum=amount.filter(pl.col("side") == "buy").sum(),
            sell_volume_sum=amount.filter(pl.col("side") == "sell").sum(),
            size_avg=amount.mean(), price_vwap=vwap,
            delay_median=delay.median(), delay_mean=delay.mean(), delay_min=delay.min(), delay_max=delay.max(),
        )
        .sort("bucket")
    )
    return bars.collect()


def on_grid(grid: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Bars on the full grid: empty buckets get zero counts and volumes, null prices."""
    return grid.join(bars, on="bucket", how="left").with_columns(
        [pl.col(c).fill_null(v) for c, v in EMPTY_BAR.items()]
    )
