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
of a flat sum). Medians are taken from the trades themselves for each timeframe (`_medians`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

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
SELECT_FROM = 50_000  # trades per bucket on average from which medians are selected in NumPy
SLICE_ROWS = 262_144  # trades per slice of the 15-second reduction (`_slices`)
THREAD_FROM = 100_000  # trades from which the medians are taken on threads of their own
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


def _selected_medians(delay: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The exact median of each run of ``delay`` (runs start at ``starts``) by selection
    (`numpy.partition`), with polars' formula for an even count (lower + (upper - lower) / 2),
    so the value is the one `_grouped_medians` gives, to the bit."""
    ends = np.append(starts[1:], len(delay))
    out = np.empty(len(starts))
    for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        part, k = delay[start:end].copy(), (end - start) // 2
        if (end - start) % 2:
            out[i] = np.partition(part, k)[k]
        else:
            part.partition([k - 1, k])
            out[i] = part[k - 1] + (part[k] - part[k - 1]) * 0.5
    return out


def _grouped_medians(ts: pl.Series, delay: np.ndarray, timeframes: list[str]) -> dict[str, pl.DataFrame]:
    """Exact ``delay_median`` per bucket of each timeframe: polars group-bys, in one parallel
    `collect_all` (buckets are runs of the sorted timestamps: the sorted fast path applies)."""
    with_delay = pl.LazyFrame({"timestamp": ts, "delay": delay})
    return dict(zip(timeframes, pl.collect_all([
        with_delay.with_columns(bucket=(pl.col("timestamp") // width_us(tf) * width_us(tf)).set_sorted())
        .group_by("bucket", maintain_order=True).agg(delay_median=pl.col("delay").median()) for tf in timeframes])))


def _medians(ts: pl.Series, delay: np.ndarray, buckets: dict[str, tuple[np.ndarray, np.ndarray]],
             ) -> list[Callable[[], dict[str, pl.DataFrame]]]:
    """The work of the exact ``delay_median`` per bucket of each timeframe (``buckets``: its
    bucket starts and the index of each bucket's first trade), in two independent parts:
    timeframes whose buckets hold `SELECT_FROM` trades or more on average select each
    bucket's median in NumPy (polars sorts a group that large: ~4x slower), the rest are
    polars group-bys."""
    small = [tf for tf, (_, first) in buckets.items() if len(delay) < SELECT_FROM * len(first)]
    large = {tf: b for tf, b in buckets.items() if tf not in small}
    return [functools.partial(_grouped_medians, ts, delay, small),
            lambda: {tf: pl.DataFrame({"bucket": bucket, "delay_median": _selected_medians(delay, first)})
                     for tf, (bucket, first) in large.items()}]


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
    taker = pl.DataFrame({"side": side, "amount": amount}).select(  # Tardis's unknown side is neither
        **{k: pl.when(pl.col("side") == k).then(pl.col("amount")).otherwise(0.0) for k in ("buy", "sell")})
    return {
        "open": price[starts], "close": price[ends],
        "high": np.maximum.reduceat(price, starts), "low": np.minimum.reduceat(price, starts),
        "delay_min": np.minimum.reduceat(delay, starts), "delay_max": np.maximum.reduceat(delay, starts),
        "count": np.diff(np.append(starts, n)),
        "volume": np.add.reduceat(amount, starts), "notional": np.add.reduceat(price * amount, starts),
        **{k: np.add.reduceat(taker[k].to_numpy(), starts) for k in ("buy", "sell")},
        "delay_sum": np.add.reduceat(delay, starts),
    }


def _slices(ts: pl.Series) -> list[tuple[int, int]]:
    """Row ranges of about `SLICE_ROWS` trades, each ending on a 15-second boundary, so every
    bucket is reduced whole (its sums are the live path's, to the bit) from small contiguous
    copies of the columns: a day read from Parquet is chunked by row group, and a contiguous
    copy of each whole column costs the day's memory again and, in a fresh process (each CLI
    command), its page faults (~0.1 s for a 3.2M-trade day)."""
    out, start, width = [], 0, width_us(BASE)
    while start < len(ts):
        end = min(start + SLICE_ROWS, len(ts))
        if end < len(ts):
            boundary = ts[end] // width * width
            end = ts.search_sorted(boundary, side="left")
            if end <= start:  # one bucket holds more than SLICE_ROWS trades: it is the slice
                end = ts.search_sorted(boundary + width, side="left")
        out.append((start, end))
        start = end
    return out


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
    delay, slices = np.empty(trades.height), _slices(trades["timestamp"])
    local_starts, base_start = [], []
    for start, end in slices:  # the delays and the 15-second runs, a slice at a time
        ts = trades["timestamp"][start:end].to_numpy()
        np.divide(trades["local_timestamp"][start:end].to_numpy() - ts, 1_000.0, out=delay[start:end])
        base_bucket = ts // width_us(BASE) * width_us(BASE)
        local_starts.append(_runs(base_bucket))
        base_start.append(base_bucket[local_starts[-1]])
    base_start = np.concatenate(base_start)
    starts = np.concatenate([run + start for run, (start, _) in zip(local_starts, slices)])
    runs = {tf: _runs(base_start // width_us(tf) * width_us(tf)) for tf in timeframes}  # of the 15s partials
    bucket = {tf: base_start[r] // width_us(tf) * width_us(tf) for tf, r in runs.items()}
    parts = _medians(trades["timestamp"], delay, {tf: (bucket[tf], starts[runs[tf]]) for tf in timeframes})
    # A large day's medians on threads of their own while the partials are reduced on this
    # one (polars and NumPy's selection release the GIL); a small one's inline.
    with ThreadPoolExecutor(len(parts), thread_name_prefix="mdh-medians") if trades.height >= THREAD_FROM \
            else nullcontext() as pool:
        pending = [pool.submit(part) for part in parts] if pool else []
        base = [_base(trades["price"][start:end].to_numpy(), trades["amount"][start:end].to_numpy(),
                      delay[start:end], trades["side"][start:end], run)
                for run, (start, end) in zip(local_starts, slices)]
        base = {k: np.concatenate([b[k] for b in base]) for k in base[0]}
        done = [p.result() for p in pending] or [part() for part in parts]
    medians = {tf: frame for part in done for tf, frame in part.items()}
    return {tf: _frame(bucket[tf], _reduce(base, runs[tf]), medians[tf]) for tf in timeframes}


def on_grid(grid: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Bars on the full grid: empty buckets get zero counts and volumes, null prices."""
    return grid.join(bars, on="bucket", how="left").with_columns(
        [pl.col(c).fill_null(v) for c, v in EMPTY_BAR.items()]
    )
