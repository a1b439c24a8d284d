"""Trades missed while disconnected, fetched back from the venue's REST trade history.

Each venue numbers an instrument's trades: Binance's trade id ``t`` and Deribit's
``trade_seq`` count up by one per trade. After a reconnect (the feed queues
`mdh_lib.streaming.connection.RECONNECTED`), `GapTracker` compares the first number of the
new connection with the last one before it; a jump is a gap of known trades. They are
fetched and re-encoded as the websocket messages they would have been, queued, and take the
normal path (normalisation, dedupe); then a `GapDone` marker is queued.

- Binance: ``GET /api/v3/historicalTrades`` (spot) or ``/fapi/v1/historicalTrades`` (USDT-M),
  ``fromId`` + ``limit=1000`` pages, with ``X-MBX-APIKEY`` when ``MDH_BINANCE_API_KEY`` is set
  (Binance asks for a key on some of these endpoints).
- Deribit: ``GET /api/v2/public/get_last_trades_by_instrument`` with ``start_seq``,
  ``end_seq``, ``count=1000``, ``sorting=asc`` pages.

While a gap is open, buckets close only up to the exchange time of the last trade before it,
so the fetched trades are never late. A gap that cannot be filled (no REST endpoint, the
request fails, the history no longer reaches back) is logged, counted in the summary and
recorded in the ``gaps_live`` table (instrument, first/last missing number, the exchange
time span); closing then resumes, and the candles of the buckets it spans have ``gap`` true.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

import aiohttp
import orjson
import polars as pl

from mdh_lib.frames import Instrument

log = logging.getLogger("mdh.streaming")
PAGE = 1_000


@dataclass(frozen=True)
class Gap:
    first_id: int  # first missing trade number (Binance id, Deribit trade_seq)
    last_id: int  # last missing trade number
    start: int  # exchange time of the last trade before the gap (us)
    end: int  # exchange time of the first trade after it (us)


@dataclass(frozen=True)
class GapDone:
    """Queued after a gap's fetched trades: the gap is over (``filled`` or not)."""

    gap: Gap
    filled: bool


class GapTracker:
    """Finds gaps in a venue's trade numbers across reconnects and holds bucket closing while open."""

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.last: tuple[int, int] | None = None  # (id, exchange time) of the latest trade
        self.reconnected = False
        self.open: list[Gap] = []
        self.unfilled: list[Gap] = []

    def observe(self, sequence: pl.DataFrame | None) -> Gap | None:
        """Take a batch's trade numbers (``seq``, ``timestamp``); a gap when it is the first
        batch after a reconnect and the numbers jump."""
        if sequence is None or sequence.is_empty():
            return None
        seq = sequence["seq"]
        gap = None
        i = seq.arg_min()
        if self.reconnected and self.last is not None and seq[i] > self.last[0] + 1:
            gap = Gap(self.last[0] + 1, seq[i] - 1, self.last[1], sequence["timestamp"][i])
            self.open.append(gap)
            log.warning("%s: trades %d to %d were missed while disconnected; fetching them",
                        self.instrument.instrument_key, gap.first_id, gap.last_id)
        self.reconnected = False
        j = seq.arg_max()
        if self.last is None or seq[j] > self.last[0]:
            self.last = (seq[j], sequence["timestamp"][j])
        return gap

    def done(self, marker: GapDone) -> None:
        self.open.remove(marker.gap)
        if not marker.filled:
            self.unfilled.append(marker.gap)

    @property
    def hold(self) -> int | None:
        """Exchange time buckets may close up to while a gap is open."""
        return min(g.start for g in self.open) + 1 if self.open else None


async def _binance_pages(session: aiohttp.ClientSession, base: str, exchange: str, instrument: Instrument,
                         gap: Gap):
    """Pages of the gap's trades as Binance ``trade`` websocket frames."""
    path = "/fapi/v1/historicalTrades" if exchange == "binance-futures" else "/api/v3/historicalTrades"
    key = os.environ.get("MDH_BINANCE_API_KEY")
    headers = {"X-MBX-APIKEY": key} if key else {}
    stream = f"{instrument.symbol.lower()}@trade"
    next_id = gap.first_id
    while next_id <= gap.last_id:
        params = {"symbol": instrument.symbol, "fromId": next_id, "limit": PAGE}
        async with session.get(base + path, params=params, headers=headers) as response:
            response.raise_for_status()
            page = [t for t in orjson.loads(await response.read()) if t["id"] <= gap.last_id]
        if not page or page[0]["id"] != next_id:
            raise LookupError(f"the history starts at {page[0]['id'] if page else 'nothing'}, not {next_id}")
        yield [{"stream": stream, "data": {
            "e": "trade", "E": t["time"], "T": t["time"], "s": instrument.symbol, "t": t["id"], "p": t["price"],
            "q": t["qty"], "m": t["isBuyerMaker"]}} for t in page]
        next_id = page[-1]["id"] + 1


async def _deribit_pages(session: aiohttp.ClientSession, base: str, instrument: Instrument, gap: Gap):
    """Pages of the gap's trades as Deribit ``trades`` notifications."""
    channel = f"trades.{instrument.symbol}.100ms"
    next_seq = gap.first_id
    while next_seq <= gap.last_id:
        params = {"instrument_name": instrument.symbol, "start_seq": next_seq, "end_seq": gap.last_id,
                  "count": PAGE, "sorting": "asc"}
        async with session.get(base + "/api/v2/public/get_last_trades_by_instrument", params=params) as response:
            response.raise_for_status()
            page = orjson.loads(await response.read())["result"]["trades"]
        if not page or page[0]["trade_seq"] != next_seq:
            raise LookupError(f"the history starts at {page[0]['trade_seq'] if page else 'nothing'}, not {next_seq}")
        yield [{"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": page}}]
        next_seq = page[-1]["trade_seq"] + 1


async def fetch_gap(base: str, exchange: str, instrument: Instrument, gap: Gap, queue: asyncio.Queue) -> None:
    """Queue the gap's trades as websocket frames, then `GapDone`."""
    filled = False
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            pages = (_deribit_pages(session, base, instrument, gap) if exchange == "deribit"
                     else _binance_pages(session, base, exchange, instrument, gap))
            async for frames in pages:
                received = time.time_ns() // 1_000
                for frame in frames:
                    await queue.put((received, orjson.dumps(frame).decode()))
        filled = True
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError, LookupError, KeyError) as exc:
        log.error("%s: trades %d to %d could not be fetched (%s); the gap stays in gaps_live",
                  instrument.instrument_key, gap.first_id, gap.last_id, exc or type(exc).__name__)
    await queue.put((time.time_ns() // 1_000, GapDone(gap, filled)))
