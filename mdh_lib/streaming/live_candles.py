"""Live candles and book features: the batch code applied to each bucket once it closes.

Candles use `trade_bars`, `on_grid`, `ticker_columns`, `liquidation_columns` and
`with_liquidations` (as `mdh_lib.candles.build.candles`); book features use
`mdh_lib.features.book.book_features` on the snapshots around the closed buckets. Every
bucket is computed from its own events only, in arrival order (for a replay, Tardis's file
order), so a closed live bucket holds exactly the numbers of the batch row.

Closing (`close`): the caller passes an exchange time ``until`` (`mdh_lib.streaming.clock`):
every bucket whose end is at or before it closes, in every timeframe. The caller passes the
watermark minus ``MDH_WS_CLOSE_GRACE`` while frames flow, and the quiet-market estimate minus
``MDH_WS_IDLE_CLOSE`` when none arrive, so empty buckets are only written for exchange time
that has passed.

Policies (documented in the README):

- The first bucket of each timeframe is partial (the stream started inside it): not emitted.
  The bucket still open at the stop is not emitted either; its trades are in the ticks table.
- An event (trade, liquidation, ticker or book update) for an already closed bucket is late:
  counted and logged, not in any row (batch includes it, so that row differs from batch).
  Binance pushes at most one liquidation a second per symbol, up to a second after it
  happened: a close grace of 1 s keeps every one in its bucket.
- Empty buckets between closed ones are emitted on the grid as batch does (trade_count 0,
  volume 0, null prices; the book carries the last snapshot's state).
- ``gap`` (after the batch columns): true when trades of the bucket were missed while
  disconnected and could not be fetched back (`mdh_lib.streaming.gaps`).
- Ticker columns are "as of the bucket end" from the updates received so far, and oi_change
  uses the open interest as of the previous bucket end, as in batch. Binance open-interest
  rows carry the last mark-price time (Tardis's rule): a poll answered just after a bucket
  closed is stamped inside it, so batch counts that value in the closed bucket and live in
  the next; the two agree whenever open interest did not change between two polls.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

import polars as pl

from mdh_lib.candles.build import CANDLE_COLUMNS, OPTION_COLUMNS
from mdh_lib.candles.derivatives import TICKER_COLUMNS, liquidation_columns, ticker_columns, with_liquidations
from mdh_lib.candles.trades import TRADE_COLUMNS, on_grid, trade_bars
from mdh_lib.features.book import book_features
from mdh_lib.frames import Instrument, with_ids
from mdh_lib.streaming.venues import empty_book, empty_ticker
from mdh_lib.timeframes import DAY_US, to_datetime, width_us

log = logging.getLogger("mdh.streaming")


class LiveCandles:
    def __init__(self, instrument: Instrument, timeframes: Iterable[str], *, with_derivatives: bool = False):
        self.instrument = instrument
        self.timeframes = sorted(set(timeframes), key=width_us)
        self.with_derivatives = with_derivatives
        self.with_book = False  # book features are written once a snapshot has arrived
        self.start: dict[str, int] = {}  # end of the first (partial) bucket per timeframe
        self.closed_until: dict[str, int] = {}
        self.late = {tf: 0 for tf in self.timeframes}  # trades
        self.late_other = 0  # liquidations, ticker and book updates
        self._trades: list[pl.DataFrame] = []
        self._liquidations: list[pl.DataFrame] = []
        self._ticker = empty_ticker().drop("local_timestamp")
        self._book = empty_book().drop("local_timestamp")

    def add(self, trades: pl.DataFrame, liquidations: pl.DataFrame, ticker: pl.DataFrame,
            book: pl.DataFrame) -> None:
        """Take a batch: trades and liquidations (raw trades schema), ticker updates, book
        snapshots (all with exchange ``timestamp``)."""
        stamped = [f["timestamp"] for f in (trades, liquidations, ticker, book) if f.height]
        if not stamped:
            return
        if not self.closed_until:
            first = min(s.min() for s in stamped)
            for tf in self.timeframes:
                w = width_us(tf)
                self.start[tf] = self.closed_until[tf] = first // w * w + w
        if trades.height:
            ts = trades["timestamp"]
            for tf in self.timeframes:
                late = int(((ts < self.closed_until[tf]) & (ts >= self.start[tf])).sum())
                if late:
                    self.late[tf] += late
                    log.warning("%d late trade(s) for closed %s buckets of %s (not in those rows)",
                                late, tf, self.instrument.instrument_key)
            self._trades.append(trades.select(TRADE_COLUMNS))
        oldest = min(self.closed_until.values())
        start = min(self.start.values())
        # open-interest rows carry the last mark-price time by convention (Tardis's), not late
        own = ticker.filter(pl.col("own")) if "own" in ticker.columns else ticker
        late = sum(int(((f["timestamp"] < oldest) & (f["timestamp"] >= start)).sum())
                   for f in (liquidations, own, book) if f.height)
        if late:
            self.late_other += late
            log.warning("%d late liquidation, ticker or book update(s) for closed buckets of %s (not in those rows)",
                        late, self.instrument.instrument_key)
        if liquidations.height:
            self._liquidations.append(liquidations.select("timestamp", "side", "amount"))
        if ticker.height:
            self._ticker = pl.concat([self._ticker, ticker.select(self._ticker.columns)])
        if book.height:
            self._book = pl.concat([self._book, book.select(self._book.columns)])
            self.with_book = True

    def close(self, until: int | None, unfilled: Iterable = ()) -> tuple[dict[str, pl.DataFrame],
                                                                       dict[str, pl.DataFrame]]:
        """(candles, book features) of the buckets ending at or before exchange time ``until``,
        per timeframe (only timeframes with some). Candles of buckets that overlap an
        ``unfilled`` gap (`mdh_lib.streaming.gaps.Gap`) have ``gap`` true."""
        if not self.closed_until or until is None:
            return {}, {}
        closing = {}
        for tf in self.timeframes:
            end = until // width_us(tf) * width_us(tf)
            if end > self.closed_until[tf]:
                closing[tf] = (self.closed_until[tf], end)
        if not closing:
            return {}, {}
        trades = pl.concat(self._trades) if self._trades else pl.DataFrame(schema=_TRADE_SCHEMA)
        liquidations = pl.concat(self._liquidations) if self._liquidations else None
        # one trade_bars call for every timeframe: each bucket still comes from its own trades
        lo, hi = min(a for a, _ in closing.values()), max(b for _, b in closing.values())
        bars = trade_bars(trades.filter(pl.col("timestamp").is_between(lo, hi, closed="left")), list(closing))
        spans = [(g.start, g.end) for g in unfilled]
        candles = {tf: self._candles(tf, start, end, bars[tf], liquidations, spans)
                   for tf, (start, end) in closing.items()}
        book = self._book_features(closing) if self.with_book else {}
        for tf, (_, end) in closing.items():
            self.closed_until[tf] = end
        keep = min(self.closed_until.values())
        self._trades = [trades.filter(pl.col("timestamp") >= keep)]
        if liquidations is not None:
            self._liquidations = [liquidations.filter(pl.col("timestamp") >= keep)]
        self._ticker = _compact(self._ticker, keep, lambda old: old.select(
            timestamp=pl.lit(keep - 1, pl.Int64), **{c: pl.col(c).drop_nulls().last() for c in TICKER_COLUMNS}))
        # the last snapshot before `keep` is the state and the OFI predecessor of what follows
        self._book = _compact(self._book, keep, lambda old: old.tail(1))
        return candles, book

    def _candles(self, tf: str, start: int, end: int, bars: pl.DataFrame, liquidations: pl.DataFrame | None,
                 gaps: list[tuple[int, int]]) -> pl.DataFrame:
        """The batch composition of `mdh_lib.candles.build.candles` over the grid [start, end),
        plus ``gap``: the bucket overlaps a span of trades that could not be fetched."""
        in_range = pl.col("timestamp").is_between(start, end, closed="left")
        grid = pl.DataFrame({"bucket": pl.int_range(start, end, width_us(tf), eager=True, dtype=pl.Int64)})
        frame = on_grid(grid, bars)
        ticker = self._ticker if self.with_derivatives else None
        frame = frame.join(ticker_columns(grid, ticker, tf), on="bucket", how="left")
        # in timestamp order, as batch stores raw files: sums then add in the same order
        liq = liquidations.filter(in_range).sort("timestamp", maintain_order=True) if liquidations is not None else None
        frame = with_liquidations(frame, liquidation_columns(liq, tf)).with_columns(to_datetime())
        frame = frame.with_columns([pl.lit(None, pl.Float64).alias(c) for c in OPTION_COLUMNS])
        bucket, w = pl.col("bucket"), width_us(tf)
        gap = pl.any_horizontal([(bucket <= b) & (bucket + w > a) for a, b in gaps]) if gaps else pl.lit(False)
        return with_ids(frame.with_columns(gap=gap), self.instrument, tf).select(*CANDLE_COLUMNS, "gap")

    def _book_features(self, closing: dict[str, tuple[int, int]]) -> dict[str, pl.DataFrame]:
        """Batch book features (`book_features`, one UTC day at a time) of the closing buckets:
        the snapshots kept hold the state and OFI predecessor before the range."""
        snapshots = self._book = self._book.sort("timestamp", maintain_order=True)
        lo, hi = min(a for a, _ in closing.values()), max(b for _, b in closing.values())
        out: dict[str, list[pl.DataFrame]] = {tf: [] for tf in closing}
        for day in range(lo // DAY_US, (hi - 1) // DAY_US + 1):
            date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
            features = book_features([snapshots], date, list(closing))
            for tf, (start, end) in closing.items():
                out[tf].append(features[tf].filter(
                    pl.col("timestamp").dt.epoch("us").is_between(start, end, closed="left")))
        return {tf: with_ids(pl.concat(frames), self.instrument, tf) for tf, frames in out.items()}


_TRADE_SCHEMA = {"timestamp": pl.Int64, "local_timestamp": pl.Int64, "side": pl.String, "price": pl.Float64,
                 "amount": pl.Float64}


def _compact(frame: pl.DataFrame, keep: int, state) -> pl.DataFrame:
    """Rows at or after ``keep``, preceded by ``state(older rows)`` when there are older rows."""
    old = frame.filter(pl.col("timestamp") < keep)
    if old.height <= 1:
        return frame
    return pl.concat([state(old), frame.filter(pl.col("timestamp") >= keep)])
