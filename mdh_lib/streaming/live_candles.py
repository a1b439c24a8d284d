"""Live candles: the batch candle code (`trade_bars`, `on_grid`, `ticker_columns`,
`liquidation_columns`, `with_liquidations`) applied to each bucket once it closes.

Every bucket is computed from its own trades only, in arrival order (which for a replay is
Tardis's file order), so a closed live bucket holds exactly the numbers of the batch candle.
The trades of open buckets are kept; nothing older than the oldest open bucket is.

When a bucket [start, end) closes:

- a trade with exchange timestamp >= end + ``close_grace_us`` arrives (the grace absorbs
  trades that arrive slightly out of timestamp order; Binance's trade stream is in order);
- or the receive clock passes end + ``idle_close_us`` (a quiet market);
- or at shutdown, when the clock has passed its end.

Policies (documented in the README):

- The first bucket of each timeframe is partial (the stream started inside it): it is not
  emitted. Likewise the bucket still open at shutdown is not emitted; its trades are in the
  ticks table.
- A trade for an already closed bucket is late: counted and logged, not in any candle
  (batch includes it, so that candle differs from batch).
- Empty buckets between closed ones are emitted on the grid as batch does (trade_count 0,
  volume 0, null prices).
- Ticker columns are "as of the bucket end" from the updates received so far; liquidation
  columns sum the bucket's liquidations. oi_change stays null without open interest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import polars as pl

from mdh_lib.candles.build import CANDLE_COLUMNS, OPTION_COLUMNS
from mdh_lib.candles.derivatives import TICKER_COLUMNS, liquidation_columns, ticker_columns, with_liquidations
from mdh_lib.candles.trades import TRADE_COLUMNS, on_grid, trade_bars
from mdh_lib.frames import Instrument, with_ids
from mdh_lib.streaming.venues import empty_ticker
from mdh_lib.timeframes import DAY_US, to_datetime, width_us

log = logging.getLogger("mdh.streaming")


class LiveCandles:
    def __init__(self, instrument: Instrument, timeframes: Iterable[str], *, close_grace_us: int = 0,
                 idle_close_us: int = 2_000_000, with_derivatives: bool = False):
        self.instrument = instrument
        self.timeframes = sorted(set(timeframes), key=width_us)
        self.close_grace_us, self.idle_close_us = close_grace_us, idle_close_us
        self.with_derivatives = with_derivatives
        self.start: dict[str, int] = {}  # end of the first (partial) bucket per timeframe
        self.closed_until: dict[str, int] = {}
        self.watermark: int | None = None  # the latest exchange timestamp of a trade
        self.late = {tf: 0 for tf in self.timeframes}
        self._trades: list[pl.DataFrame] = []
        self._liquidations: list[pl.DataFrame] = []
        self._ticker = empty_ticker()

    def add(self, trades: pl.DataFrame, liquidations: pl.DataFrame, ticker: pl.DataFrame) -> None:
        """Take a batch (raw trades schema for trades and liquidations; ticker updates)."""
        if trades.height:
            ts = trades["timestamp"]
            if not self.closed_until:
                first = ts.min()
                for tf in self.timeframes:
                    w = width_us(tf)
                    self.start[tf] = self.closed_until[tf] = first // w * w + w
            for tf in self.timeframes:
                late = int(((ts < self.closed_until[tf]) & (ts >= self.start[tf])).sum())
                if late:
                    self.late[tf] += late
                    log.warning("%d late trade(s) for closed %s candles of %s (not in those candles)",
                                late, tf, self.instrument.instrument_key)
            self.watermark = max(self.watermark or ts.max(), ts.max())
            self._trades.append(trades.select(TRADE_COLUMNS))
        if liquidations.height:
            self._liquidations.append(liquidations.select("timestamp", "side", "amount"))
        if ticker.height:
            self._ticker = pl.concat([self._ticker, ticker.select(self._ticker.columns)])

    def close(self, now_us: int | None = None, *, final: bool = False) -> dict[str, pl.DataFrame]:
        """Candles of the buckets that close now, per timeframe (only timeframes with some)."""
        if not self.closed_until:
            return {}
        trades = pl.concat(self._trades) if len(self._trades) > 1 else self._trades[0]
        liquidations = pl.concat(self._liquidations) if self._liquidations else None
        closing = {}
        for tf in self.timeframes:
            w = width_us(tf)
            ends = [(self.watermark - self.close_grace_us) // w * w]
            if now_us is not None:  # at most a day per call: a wrong clock cannot flood the grid
                clock_end = (now_us - (0 if final else self.idle_close_us)) // w * w
                ends.append(min(clock_end, self.closed_until[tf] + DAY_US))
            if max(ends) > self.closed_until[tf]:
                closing[tf] = (self.closed_until[tf], max(ends))
        out = {}
        if closing:
            # one trade_bars call for every timeframe: each bucket still comes from its own trades
            lo, hi = min(a for a, _ in closing.values()), max(b for _, b in closing.values())
            bars = trade_bars(trades.filter(pl.col("timestamp").is_between(lo, hi, closed="left")), list(closing))
            for tf, (start, end) in closing.items():
                out[tf] = self._candles(tf, start, end, bars[tf], liquidations)
                self.closed_until[tf] = end
        keep = min(self.closed_until.values())
        trades = trades.filter(pl.col("timestamp") >= keep)
        self._trades = [trades]
        if liquidations is not None:
            self._liquidations = [liquidations.filter(pl.col("timestamp") >= keep)]
        self._compact_ticker(keep)
        return out

    def _candles(self, tf: str, start: int, end: int, bars: pl.DataFrame,
                 liquidations: pl.DataFrame | None) -> pl.DataFrame:
        """The batch composition of `mdh_lib.candles.build.candles` over the grid [start, end)."""
        in_range = pl.col("timestamp").is_between(start, end, closed="left")
        grid = pl.DataFrame({"bucket": pl.int_range(start, end, width_us(tf), eager=True, dtype=pl.Int64)})
        frame = on_grid(grid, bars)
        ticker = self._ticker if self.with_derivatives else None
        frame = frame.join(ticker_columns(grid, ticker, tf), on="bucket", how="left")
        # in timestamp order, as batch stores raw files: sums then add in the same order
        liq = liquidations.filter(in_range).sort("timestamp", maintain_order=True) if liquidations is not None else None
        frame = with_liquidations(frame, liquidation_columns(liq, tf)).with_columns(to_datetime())
        frame = frame.with_columns([pl.lit(None, pl.Float64).alias(c) for c in OPTION_COLUMNS])
        return with_ids(frame, self.instrument, tf).select(CANDLE_COLUMNS)

    def _compact_ticker(self, keep: int) -> None:
        """Older updates shrink to one row: the last value of each column as of ``keep``."""
        old = self._ticker.filter(pl.col("timestamp") < keep)
        if old.height <= 1:
            return
        state = old.select(timestamp=pl.lit(keep - 1, pl.Int64),
                           **{c: pl.col(c).drop_nulls().last() for c in TICKER_COLUMNS})
        self._ticker = pl.concat([state, self._ticker.filter(pl.col("timestamp") >= keep)])
