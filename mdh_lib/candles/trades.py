"""Trade bars: OHLCV, VWAP and the trade-based HFT features of SPEC section 6.

`trade_bars` is the one implementation of candle maths from trades. Batch calls it on a whole
day, the live path on the trades of each closed bucket: the numbers are identical because
every bucket is computed from its own trades only, in a fixed order. Within a bucket trades
are in exchange ``timestamp`` order, ties in Tardis's (``local_timestamp``) order, so open
is the first and close the last trade of that order.

Per bucket (only buckets with trades; `on_grid` adds the empty ones):

- open, high, low, close: first, max, min, last trade price
- volume: sum of amount; trade_count: number of trades
- vwap = price_vwap = sum(price*amount) / sum(amount) (null when the volume is 0)
- buy_volume_sum / sell_volume_sum: sum of amount where the taker side is buy / sell
  (Tardis side ``unknown`` counts in neither, so buy + sell <= volume)
- size_avg: mean trade amount
- delay_median / delay_mean / delay_min / delay_max: local_timestamp - timestamp in
  milliseconds (the median is the exact median of the bucket's trades, never a median of
  medians)

How: trades are sorted, so a bucket is a contiguous run of rows. The 15-second runs are
reduced once (`numpy.ufunc.reduceat`, left to right within a run); every longer timeframe,
being a whole number of 15-second buckets aligned to the day, reduces those partials again
(exact for first, last, min, max and counts; sums are re-associated, within float rounding
of a flat sum). Medians are taken from the trades themselves for each timeframe.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

from mdh_lib.timeframes import TIMEFRAMES, width_us

TRADE_COLUMNS = ["timestamp", "local_timestamp", "side", "price", "amount"]
BAR_COLUMNS = [
    "open", "high", "low", "close", "volume", "vwap", "trade_count", "buy_volume_sum", "sell_volume_sum",
    "size_avg", "price_vwap", "delay_median", "delay_mean", "delay_min", "delay_max",
]
# What an empty bucket holds (SPEC: trade_count 0, volume 0, null prices).
EMPTY_BAR = {"volume": 0.0, "trade_count": 0, "buy_volume_sum": 0.0, "sell_volume_sum": 0.0}
BASE = "15s"
_SUMS = ("volume", "notional", "buy", "sell", "delay_sum")


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def _reduce(parts: dict[str, np.ndarray], starts: np.ndarray) -> dict[str, np.ndarray]:
    """Combine consecutive partials (or single trades) that share a bucket."""
    ends = np.append(starts[1:], len(parts["count"])) - 1
    out = {
        "open": parts["open"][starts], "close": parts["close"][ends],
        "high": np.maximum.reduceat(parts["high"], starts), "low": np.minimum.reduceat(parts["low"], starts),
        "delay_min": np.minimum.reduceat(parts["delay_min"], starts),
        "delay_max": np.maximum.reduceat(parts["delay_max"], starts),
        "count": np.add.reduceat(parts["count"], starts),
    }
    out.update({k: np.add.reduceat(parts[k], starts) for k in _SUMS})
    return out


def _frame(bucket: np.ndarray, agg: dict[str, np.ndarray], medians: pl.DataFrame) -> pl.DataFrame:
    volume, count = agg["volume"], agg["count"]
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap = np.where(volume > 0, agg["notional"] / volume, np.nan)
    frame = pl.DataFrame({
        "bucket": bucket, "open": agg["open"], "high": agg["high"], "low": agg["low"], "close": agg["close"],
        "volume": volume, "vwap": vwap, "trade_count": count.astype(np.int64),
        "buy_volume_sum": agg["buy"], "sell_volume_sum": agg["sell"], "size_avg": volume / count,
        "price_vwap": vwap, "delay_mean": agg["delay_sum"] / count,
        "delay_min": agg["delay_min"], "delay_max": agg["delay_max"],
    }).with_columns(pl.col("vwap", "price_vwap").fill_nan(None))
    return frame.join(medians, on="bucket", how="left").select(["bucket", *BAR_COLUMNS])


def _base(price: np.ndarray, amount: np.ndarray, delay: np.ndarray, side: pl.Series,
          starts: np.ndarray) -> dict[str, np.ndarray]:
    """The 15-second partials straight from the trades: what `_reduce` of per-trade parts
    gives, each per-trade array made just before its reduction and dropped after it (the
    day's trades are held once, not once per column)."""
    n = len(price)
    ends = np.append(starts[1:], n) - 1
    return {
        "open": price[starts], "close": price[ends],
        "high": np.maximum.reduceat(price, starts), "low": np.minimum.reduceat(price, starts),
        "delay_min": np.minimum.reduceat(delay, starts), "delay_max": np.maximum.reduceat(delay, starts),
        "count": np.diff(np.append(starts, n)),
        "volume": np.add.reduceat(amount, starts), "notional": np.add.reduceat(price * amount, starts),
        "buy": np.add.reduceat(np.where((side == "buy").to_numpy(), amount, 0.0), starts),
        "sell": np.add.reduceat(np.where((side == "sell").to_numpy(), amount, 0.0), starts),
        "delay_sum": np.add.reduceat(delay, starts),
    }


def trade_bars(trades: pl.DataFrame, timeframes: Iterable[str] = TIMEFRAMES) -> dict[str, pl.DataFrame]:
    """Bars of ``trades`` (sorted by timestamp; TRADE_COLUMNS) per timeframe, column
    ``bucket`` (int64 us start), for the buckets that have trades."""
    timeframes = list(timeframes)
    if not trades["timestamp"].is_sorted():
        trades = trades.sort("timestamp", maintain_order=True)
    if not trades.height:
        empty = pl.DataFrame(schema={"bucket": pl.Int64, "delay_median": pl.Float64})
        parts = ("open", "close", "high", "low", "count", "volume", "notional", "delay_sum", "delay_min",
                 "delay_max", "buy", "sell")
        return {tf: _frame(np.array([], np.int64), {k: np.array([]) for k in parts}, empty) for tf in timeframes}
    ts = trades["timestamp"].to_numpy()
    delay = (trades["local_timestamp"].to_numpy() - ts) / 1_000.0
    base_width = width_us(BASE)
    base_bucket = ts // base_width * base_width
    starts = _runs(base_bucket)
    base = _base(trades["price"].to_numpy(), trades["amount"].to_numpy(), delay, trades["side"], starts)
    base_start = base_bucket[starts]
    del base_bucket
    with_delay = pl.DataFrame({"timestamp": trades["timestamp"], "delay": delay})
    out = {}
    for tf in timeframes:
        width = width_us(tf)
        bucket = base_start // width * width
        runs = _runs(bucket)
        medians = (  # buckets are runs of the sorted timestamps: the sorted fast path applies
            with_delay.with_columns(bucket=(pl.col("timestamp") // width * width).set_sorted())
            .group_by("bucket", maintain_order=True).agg(delay_median=pl.col("delay").median()))
        out[tf] = _frame(bucket[runs], _reduce(base, runs), medians)
    return out


def on_grid(grid: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Bars on the full grid: empty buckets get zero counts and volumes, null prices."""
    return grid.join(bars, on="bucket", how="left").with_columns(
        [pl.col(c).fill_null(v) for c, v in EMPTY_BAR.items()]
    )
