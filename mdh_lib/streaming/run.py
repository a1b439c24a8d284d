"""The live path end to end: feed -> bounded queue -> batch processing -> warehouse.

Tasks on one event loop: the `Feed` reader only queues raw frames (as does the REST poller of
`mdh_lib.streaming.rest`, where the venue has one); the processor takes whatever is queued
(up to ``max_batch`` frames) and runs `Pipeline.process` on it: parse, normalise, dedupe,
buffer ticks, update live candles and book features, close the buckets that exchange time
has passed (`mdh_lib.streaming.clock`). Ticks are written every ``flush_interval`` seconds (or
sooner when ``max_batch`` rows wait), candles and book features as they close, all through
`WarehouseSink` (its own thread), which is only ever handed Arrow tables converted on the
event loop: no frame is shared between threads.

Closing: while frames flow, a bucket closes once the exchange time of the messages received
has passed its end + ``close_grace``. In a quiet market (the processor waited for frames and
none came) the exchange time is estimated as receive time minus the measured offset, and a
bucket closes once that estimate passes its end + ``idle_close``. A backlog (queued frames,
a burst, a stall) never closes anything by the clock, so it cannot make trades late.

Stop: SIGINT, SIGTERM or the end of ``--duration``. The reader stops, frames already
received are processed, buckets whose end + ``close_grace`` the estimated exchange time has
passed close, and everything is written before `run_stream` returns (within about a second
of the stop). The bucket still open is not written (see `mdh_lib.streaming.live_candles`).

Settings (environment; the defaults suit the public exchanges):

| variable | meaning | default |
|---|---|---|
| MDH_WS_STALE_TIMEOUT | seconds without a message before reconnecting | 30 |
| MDH_WS_MAX_CONNECTION_AGE | seconds before a connection is rotated (Binance: 24 h limit) | 84600 |
| MDH_WS_BACKOFF_INITIAL / MDH_WS_BACKOFF_MAX | reconnect backoff (full jitter), seconds | 0.5 / 30 |
| MDH_WS_FLUSH_INTERVAL | seconds between tick micro-batches | 1 |
| MDH_WS_MAX_PENDING | frames queued before the reader waits (backpressure) | 100000 |
| MDH_WS_CLOSE_GRACE | exchange-time seconds past a bucket end before it closes | 0.5 |
| MDH_WS_IDLE_CLOSE | estimated exchange-time seconds past a bucket end before a quiet market closes it | 2 |
| MDH_REST_POLL_INTERVAL | seconds between REST polls (Binance USDT-M open interest) | 5 |
| MDH_REST_ENDPOINT_{VENUE} | REST base URL (see `mdh_lib.streaming.rest`); unset while MDH_WS_ENDPOINT_{VENUE} is set: no REST | the exchange's |
| MDH_BINANCE_API_KEY | sent as X-MBX-APIKEY when fetching missed trades (`mdh_lib.streaming.gaps`) | none |
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl
from rich.table import Table

from mdh_lib.config import non_negative
from mdh_lib.frames import Instrument
from mdh_lib.streaming.clock import ExchangeClock
from mdh_lib.streaming.connection import RECONNECTED, ConnectionSettings, Feed
from mdh_lib.streaming.gaps import Gap, GapDone, GapTracker, fetch_gap
from mdh_lib.streaming.live_candles import LiveCandles
from mdh_lib.streaming.rest import poller
from mdh_lib.streaming.sinks import WarehouseSink
from mdh_lib.streaming.ticks import Deduper, parse_routed
from mdh_lib.streaming.venues import StreamingError, Venue, resolve, venue, with_ticker_time
from mdh_lib.timeframes import width_us

log = logging.getLogger("mdh.streaming")
LIVE_TIMEFRAMES = ("15s", "1m")
QUIET_PROBE = 0.02  # seconds a wait for frames must last, empty, to call the market quiet


def _env_number(name: str, default: float, env) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return non_negative(name, text)
    except ValueError as exc:
        raise StreamingError(str(exc)) from None


@dataclass
class StreamSettings:
    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    flush_interval: float = 1.0
    max_batch: int = 20_000
    max_pending: int = 100_000
    dedupe_window: int = 100_000
    close_grace: float = 0.5
    idle_close: float = 2.0
    rest_poll: float = 5.0

    @classmethod
    def from_env(cls, env=None) -> "StreamSettings":
        env = os.environ if env is None else env
        d = cls()
        conn = ConnectionSettings(
            stale_timeout=_env_number("MDH_WS_STALE_TIMEOUT", d.connection.stale_timeout, env),
            max_age=_env_number("MDH_WS_MAX_CONNECTION_AGE", d.connection.max_age, env),
            backoff_initial=_env_number("MDH_WS_BACKOFF_INITIAL", d.connection.backoff_initial, env),
            backoff_max=_env_number("MDH_WS_BACKOFF_MAX", d.connection.backoff_max, env),
        )
        return cls(
            connection=conn, flush_interval=_env_number("MDH_WS_FLUSH_INTERVAL", d.flush_interval, env),
            max_pending=max(int(_env_number("MDH_WS_MAX_PENDING", d.max_pending, env)), 1),
            close_grace=_env_number("MDH_WS_CLOSE_GRACE", d.close_grace, env),
            idle_close=_env_number("MDH_WS_IDLE_CLOSE", d.idle_close, env),
            rest_poll=max(_env_number("MDH_REST_POLL_INTERVAL", d.rest_poll, env), 0.05),
        )


@dataclass
class Counts:
    messages: int = 0
    malformed: int = 0
    ignored: int = 0
    foreign: int = 0
    trades: int = 0
    duplicates: int = 0
    liquidations: int = 0
    ticker_updates: int = 0
    book_updates: int = 0


Closed = tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]  # (candles, book features) per timeframe


class Pipeline:
    """Frames to ticks, closed candles and book features, with no I/O (so the benchmark times
    exactly this)."""

    def __init__(self, v: Venue, instrument: Instrument, timeframes: Iterable[str] = (),
                 settings: StreamSettings | None = None):
        self.venue, self.instrument = v, instrument
        self.settings = settings or StreamSettings()
        self.counts = Counts()
        self.clock = ExchangeClock()
        self.dedupe = Deduper(self.settings.dedupe_window)
        self._ticker_time: int | None = None
        self._grace_us = int(self.settings.close_grace * 1e6)
        self._idle_us = int(self.settings.idle_close * 1e6)
        self.gaps = GapTracker(instrument)
        self.new_gaps: list[Gap] = []  # found by `process`, for the caller to fetch
        timeframes = tuple(timeframes)
        self.candles = LiveCandles(
            instrument, timeframes, with_derivatives=v.exchange != "binance") if timeframes else None

    def process(self, received: list[int], frames: list[str]) -> tuple[pl.DataFrame, Closed]:
        """New (deduplicated) ticks and what closed, from frames received at ``received``
        (microseconds)."""
        c = self.counts
        c.messages += len(frames)
        parsed, bad = parse_routed(frames, received, self.venue.schemas, self.venue.route)
        for i in bad[:5]:  # a burst of garbage must not flood the log
            log.warning("malformed message skipped: %.200r", frames[i])
        if len(bad) > 5:
            log.warning("... and %d more malformed message(s) in this batch skipped", len(bad) - 5)
        batch = self.venue.normalize(parsed, self.instrument)
        if batch.malformed:
            log.warning("%d message(s) without the fields of their event skipped", batch.malformed)
        if batch.foreign and not c.foreign:
            log.warning("messages for %s on the %s connection rejected (counted, logged once)",
                        batch.foreign_symbol, self.instrument.symbol)
        trades, dups = self.dedupe(batch.trades)
        gap = self.gaps.observe(batch.sequence)
        if gap is not None:
            self.new_gaps.append(gap)
        c.malformed += len(bad) + batch.malformed
        c.ignored += batch.ignored
        c.foreign += batch.foreign
        c.trades += trades.height
        c.duplicates += dups
        c.liquidations += batch.liquidations.height
        c.ticker_updates += batch.ticker.height
        stamped = [f.select("timestamp", "local_timestamp") for f in (trades, batch.liquidations, batch.ticker,
                                                                        batch.book)]
        self.clock.observe(pl.concat(stamped))
        ticker = with_ticker_time(batch.ticker.with_columns(own=pl.col("timestamp").is_not_null()),
                                  self._ticker_time, self.clock.offset)
        own = batch.ticker["timestamp"].max()
        if own is not None:
            self._ticker_time = max(own, self._ticker_time or own)
        book = batch.book
        if book["timestamp"].null_count():  # spot depth has no time: receive time mapped to exchange time
            mapped = pl.col("local_timestamp") - pl.lit(self.clock.offset, pl.Int64)
            book = book.with_columns(timestamp=pl.coalesce("timestamp", mapped)).drop_nulls("timestamp")
        c.book_updates += book.height
        if self.candles is None:
            return trades, ({}, {})
        self.candles.add(trades, batch.liquidations, ticker, book)
        return trades, self._close(self._watermark_until())

    def _close(self, until: int | None) -> Closed:
        """Close up to exchange time ``until``, but not past an open gap's start."""
        hold = self.gaps.hold
        if until is not None and hold is not None:
            until = min(until, hold)
        return self.candles.close(until, self.gaps.unfilled) if self.candles is not None else ({}, {})

    def _watermark_until(self) -> int | None:
        w = self.clock.watermark
        return None if w is None else w - self._grace_us

    def tick(self, now_us: int, *, final: bool = False) -> Closed:
        """What closes by the estimated exchange time: a quiet market (the caller found no
        frame waiting), or the stop (``final``: gaps still being fetched count as unfilled)."""
        if final:
            for gap in list(self.gaps.open):
                self.gaps.done(GapDone(gap, False))
        est = self.clock.estimate(now_us)
        if est is None:
            return {}, {}
        return self._close(est - (self._grace_us if final else self._idle_us))

    def reconnected(self) -> None:
        """The feed reconnected: the next trade ids show whether trades were missed."""
        self.gaps.reconnected = True

    def gap_done(self, marker: GapDone) -> Closed:
        """A gap's fetched trades are processed (or the fetch failed): closing resumes."""
        self.gaps.done(marker)
        return self._close(self._watermark_until())


@dataclass
class Summary:
    venue: str
    instrument_key: str
    url: str
    seconds: float
    counts: Counts
    connections: int
    reconnects: int
    stale_reconnects: int
    rotations: int
    late_trades: dict[str, int]
    late_other: int
    gaps_unfilled: int
    written: dict[str, int]
    write_failures: dict[str, int]

    def table(self, title: str) -> Table:
        """The one-screen summary the commands print."""
        table = Table(title=f"{title}: {self.venue} {self.instrument_key}", show_header=False)
        for name, value in self.rows():
            table.add_row(name, value)
        return table

    def rows(self) -> list[tuple[str, str]]:
        c = self.counts
        out = [("instrument", self.instrument_key), ("endpoint", self.url), ("seconds", f"{self.seconds:.1f}"),
               ("messages", f"{c.messages:,}"), ("trades", f"{c.trades:,}"),
               ("duplicates dropped", f"{c.duplicates:,}"),
               ("malformed skipped", f"{c.malformed:,}"), ("other symbols rejected", f"{c.foreign:,}"),
               ("liquidations", f"{c.liquidations:,}"), ("ticker updates", f"{c.ticker_updates:,}"),
               ("book updates", f"{c.book_updates:,}"), ("connections", f"{self.connections}"),
               ("reconnects", f"{self.reconnects} ({self.stale_reconnects} stale, {self.rotations} rotations)")]
        out += [(f"late trades {tf}", f"{n:,}") for tf, n in self.late_trades.items()]
        if self.late_trades:
            out.append(("late other updates", f"{self.late_other:,}"))
        out.append(("gaps not filled", f"{self.gaps_unfilled:,}"))
        out += [(f"rows written {t}", f"{n:,}") for t, n in sorted(self.written.items())]
        out += [(f"rows NOT written {t}", f"{n:,}") for t, n in sorted(self.write_failures.items()) if n]
        return out


class LiveStream:
    def __init__(self, v: Venue, instrument: Instrument, *, ticks: bool, timeframes: Iterable[str] = (),
                 warehouse: str | None = None, settings: StreamSettings | None = None,
                 on_candles: Callable[[pl.DataFrame], None] | None = None):
        self.venue, self.instrument, self.ticks = v, instrument, ticks
        self.settings = settings or StreamSettings.from_env()
        self.pipeline = Pipeline(v, instrument, timeframes, self.settings)
        self.url = v.url(instrument.symbol)
        self.rest = v.rest_url()
        self.table = v.table(instrument)
        self.warehouse, self.on_candles = warehouse, on_candles
        self._ticks: list[pl.DataFrame] = []
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Ask a running stream to stop and flush (from any thread)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _emit(self, sink: WarehouseSink, closed: Closed) -> None:
        """Hand closed rows to the sink as Arrow tables (immutable, so the writer thread shares
        nothing mutable with this one); the polars frame stays on this thread for printing."""
        candles, book = closed
        for tf, frame in book.items():
            sink.put(f"book_features_live_{tf}", frame.to_arrow())
        for tf, frame in candles.items():
            sink.put(f"candles_live_{tf}", frame.to_arrow())
            if self.on_candles:
                self.on_candles(frame)

    def _flush(self, sink: WarehouseSink) -> None:
        if self._ticks:
            sink.put(self.table, pl.concat(self._ticks).to_arrow())
            self._ticks = []

    def _process(self, sink: WarehouseSink, items: list[tuple[int, object]]) -> None:
        """Frames in order; the markers among them (a reconnect, a gap fetched) in their place."""
        frames: list[tuple[int, str]] = []
        for received, item in items:
            if isinstance(item, str):
                frames.append((received, item))
                continue
            self._frames(sink, frames)
            frames = []
            if item is RECONNECTED:
                self.pipeline.reconnected()
            else:
                self._emit(sink, self.pipeline.gap_done(item))
                if not item.filled:
                    self._gap_row(sink, item.gap)
        self._frames(sink, frames)

    def _frames(self, sink: WarehouseSink, frames: list[tuple[int, str]]) -> None:
        if not frames:
            return
        ticks, closed = self.pipeline.process([r for r, _ in frames], [f for _, f in frames])
        if self.ticks and ticks.height:
            self._ticks.append(ticks)
        self._emit(sink, closed)
        for gap in self.pipeline.new_gaps:
            if self.rest is None:
                log.error("%s: trades %d to %d were missed and cannot be fetched (%s is not set)",
                          self.instrument.instrument_key, gap.first_id, gap.last_id, self.venue.rest_env)
                self._emit(sink, self.pipeline.gap_done(GapDone(gap, False)))
                self._gap_row(sink, gap)
            else:
                self._fills.add(asyncio.create_task(fetch_gap(self.rest, self.venue.exchange, self.instrument, gap,
                                                              self._queue)))
        self.pipeline.new_gaps.clear()

    def _gap_row(self, sink: WarehouseSink, gap: Gap) -> None:
        """A gap that could not be filled, in ``gaps_live``."""
        i = self.instrument
        row = pl.DataFrame({"exchange": [i.exchange], "symbol": [i.symbol], "instrument_key": [i.instrument_key],
                            "first_id": [gap.first_id], "last_id": [gap.last_id],
                            "start": [gap.start], "end": [gap.end]}).with_columns(
            pl.col("start", "end").cast(pl.Datetime("us", "UTC")))
        sink.put("gaps_live", row.to_arrow())

    async def run(self, duration: float = 0) -> Summary:
        s = self.settings
        loop = self._loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        signals = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                pass
        queue = self._queue = asyncio.Queue(s.max_pending)
        self._fills: set[asyncio.Task] = set()
        feed = Feed(self.url, self.venue.subscribe(self.instrument.symbol), queue, s.connection)
        sink = await asyncio.to_thread(WarehouseSink, self.warehouse)
        t0 = time.monotonic()
        deadline = t0 + duration if duration else None
        feed_task = asyncio.create_task(feed.run(stop))
        poll = poller(self.venue, self.instrument, self.rest, s.rest_poll) if self.pipeline.candles else None
        poll_task = asyncio.create_task(poll.run(stop, queue)) if poll else None
        stop_task = asyncio.create_task(stop.wait())
        last_flush = t0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = s.flush_interval - (now - last_flush)
                if deadline is not None:
                    wait = min(wait, deadline - now)
                getter = asyncio.create_task(queue.get())
                await asyncio.wait({getter, stop_task, feed_task}, timeout=max(wait, 0),
                                   return_when=asyncio.FIRST_COMPLETED)
                getter.cancel()
                items = [getter.result()] if getter.done() and not getter.cancelled() else []
                while items and len(items) < s.max_batch:
                    try:
                        items.append(queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                if items:
                    self._process(sink, items)
                elif time.monotonic() - now >= min(QUIET_PROBE, s.flush_interval) and not stop.is_set():
                    self._emit(sink, self.pipeline.tick(time.time_ns() // 1_000))  # quiet: nothing came
                if time.monotonic() - last_flush >= s.flush_interval or sum(map(len, self._ticks)) >= s.max_batch:
                    self._flush(sink)
                    last_flush = time.monotonic()
                if feed_task.done():
                    feed_task.result()  # a feed that ended on its own failed: raise it
                    break
        finally:
            stop.set()
            tasks = {feed_task, *self._fills} | ({poll_task} if poll_task else set())
            await asyncio.wait(tasks, timeout=0.3)  # a connect in progress is not waited for
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, stop_task, return_exceptions=True)
            items = []
            while not queue.empty():
                items.append(queue.get_nowait())
            for i in range(0, len(items), s.max_batch):
                self._process(sink, items[i:i + s.max_batch])
            open_gaps = list(self.pipeline.gaps.open)
            self._emit(sink, self.pipeline.tick(time.time_ns() // 1_000, final=True))
            for gap in open_gaps:
                self._gap_row(sink, gap)
            self._flush(sink)
            await asyncio.to_thread(sink.close)
            for sig in signals:
                loop.remove_signal_handler(sig)
        st = feed.stats
        candles = self.pipeline.candles
        return Summary(
            venue=self.venue.exchange, instrument_key=self.instrument.instrument_key, url=self.url,
            seconds=time.monotonic() - t0, counts=self.pipeline.counts, connections=st.connections,
            reconnects=st.reconnects, stale_reconnects=st.stale, rotations=st.rotations,
            late_trades=dict(candles.late) if candles else {}, late_other=candles.late_other if candles else 0,
            gaps_unfilled=len(self.pipeline.gaps.unfilled),
            written=dict(sink.written), write_failures=dict(sink.failed),
        )


def run_stream(venue_name: str, symbol: str, *, ticks: bool = True, timeframes: Iterable[str] = (),
               duration: float = 0, warehouse: str | None = None, settings: StreamSettings | None = None,
               on_candles: Callable[[pl.DataFrame], None] | None = None) -> Summary:
    """Stream ``symbol`` of ``venue_name`` for ``duration`` seconds (0 = until SIGINT/SIGTERM):
    ticks to ``ticks_{venue}_{symbol}`` when ``ticks``, candles and book features of
    ``timeframes`` to ``candles_live_{tf}`` and ``book_features_live_{tf}``. StreamingError
    for a bad venue, symbol, timeframe or setting."""
    v = venue(venue_name)
    instrument = resolve(v, symbol)
    timeframes = tuple(timeframes)
    for tf in timeframes:
        try:
            width_us(tf)
        except ValueError as exc:
            raise StreamingError(str(exc)) from None
    if duration < 0:
        raise StreamingError(f"--duration {duration} must be >= 0 (0 = until stopped)")
    stream = LiveStream(v, instrument, ticks=ticks, timeframes=timeframes, warehouse=warehouse,
                        settings=settings, on_candles=on_candles)
    return asyncio.run(stream.run(duration))


def candle_lines(frame: pl.DataFrame) -> list[str]:
    """One line per candle: time, timeframe, symbol, OHLC, volume, trades, VWAP."""
    def num(x) -> str:
        return "-" if x is None else f"{x:.10g}"

    return [f"{r['timestamp']:%Y-%m-%dT%H:%M:%SZ} {r['timeframe']:>3} {r['exchange']} {r['symbol']} "
            f"o={num(r['open'])} h={num(r['high'])} l={num(r['low'])} c={num(r['close'])} v={num(r['volume'])} "
            f"n={r['trade_count']} vwap={num(r['vwap'])}" for r in frame.iter_rows(named=True)]
