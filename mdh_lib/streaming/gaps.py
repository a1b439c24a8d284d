"""Trades missed while disconnected, fetched back from the venue's REST trade history by id.

Binance trade ids (``t``) count up by one per trade of a symbol. After a reconnect (the feed
queues `mdh_lib.streaming.connection.RECONNECTED`), `GapTracker` compares the first trade id
of the new connection with the last one before it; a jump is a gap of known ids. The missing
trades are fetched with ``GET /api/v3/historicalTrades`` (spot) or ``/fapi/v1/historicalTrades``
(USDT-M), ``fromId`` + ``limit=1000`` pages, sent with ``X-MBX-APIKEY`` when
``MDH_BINANCE_API_KEY`` is set (Binance asks for a key on some of these endpoints). Each
trade is re-encoded as the websocket ``trade`` event it would have been and queued, so it
takes the normal path (normalisation, dedupe); then a `GapDone` marker is queued.

While a gap is open, buckets close only up to the exchange time of the last trade before it,
so the fetched trades are never late. A gap that cannot be filled (no REST endpoint, the
request fails, the history no longer reaches back) is logged, counted in the summary and
recorded in the ``gaps_live`` table (instrument, first/last missing id, the exchange time
span); closing then resumes, and the candles of the buckets it spans have ``gap`` true.

Deribit is not covered: its stream is not checked for gaps (trade_seq would allow it).
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
    first_id: int  # first missing trade id
    last_id: int  # last missing trade id
    start: int  # exchange time of the last trade before the gap (us)
    end: int  # exchange time of the first trade after it (us)


@dataclass(frozen=True)
class GapDone:
    """Queued after a gap's fetched trades: the gap is over (``filled`` or not)."""

    gap: Gap
    filled: bool


class GapTracker:
    """Finds gaps in Binance trade ids across reconnects and holds bucket closing while open."""

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.last: tuple[int, int] | None = None  # (id, exchange time) of the latest trade
        self.reconnected = False
        self.open: list[Gap] = []
        self.unfilled: list[Gap] = []

    def observe(self, trades: pl.DataFrame) -> Gap | None:
        """Take a batch of new trades; a gap when it is the first after a reconnect and ids jump."""
        ids = trades["id"].cast(pl.Int64, strict=False)
        if ids.is_empty() or ids.null_count():
            return None
        gap = None
        i = ids.arg_min()
        if self.reconnected and self.last is not None and ids[i] > self.last[0] + 1:
            gap = Gap(self.last[0] + 1, ids[i] - 1, self.last[1], trades["timestamp"][i])
            self.open.append(gap)
            log.warning("%s: trades %d to %d were missed while disconnected; fetching them",
                        self.instrument.instrument_key, gap.first_id, gap.last_id)
        self.reconnected = False
        j = ids.arg_max()
        if self.last is None or ids[j] > self.last[0]:
            self.last = (ids[j], trades["timestamp"][j])
        return gap

    def done(self, marker: GapDone) -> None:
        self.open.remove(marker.gap)
        if not marker.filled:
            self.unfilled.append(marker.gap)

    @property
    def hold(self) -> int | None:
        """Exchange time buckets may close up to while a gap is open."""
        return min(g.start for g in self.open) + 1 if self.open else None


async def fetch_gap(base: str, exchange: str, instrument: Instrument, gap: Gap, queue: asyncio.Queue) -> None:
    """Queue the gap's trades as websocket trade frames, then `GapDone`."""
    path = "/fapi/v1/historicalTrades" if exchange == "binance-futures" else "/api/v3/historicalTrades"
    key = os.environ.get("MDH_BINANCE_API_KEY")
    headers = {"X-MBX-APIKEY": key} if key else {}
    stream = f"{instrument.symbol.lower()}@trade"
    next_id, filled = gap.first_id, False
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), headers=headers) as session:
            while next_id <= gap.last_id:
                params = {"symbol": instrument.symbol, "fromId": next_id, "limit": PAGE}
                async with session.get(base + path, params=params) as response:
                    response.raise_for_status()
                    page = orjson.loads(await response.read())
                page = [t for t in page if t["id"] <= gap.last_id]
                if not page or page[0]["id"] != next_id:
                    raise LookupError(f"history starts at {page[0]['id'] if page else 'nothing'}, not {next_id}")
                received = time.time_ns() // 1_000
                for t in page:
                    frame = {"stream": stream, "data": {
                        "e": "trade", "E": t["time"], "T": t["time"], "s": instrument.symbol, "t": t["id"],
                        "p": t["price"], "q": t["qty"], "m": t["isBuyerMaker"]}}
                    await queue.put((received, orjson.dumps(frame).decode()))
                next_id = page[-1]["id"] + 1
        filled = True
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError, LookupError, KeyError) as exc:
        log.error("%s: trades %d to %d could not be fetched (%s); the gap stays in gaps_live",
                  instrument.instrument_key, gap.first_id, gap.last_id, exc or type(exc).__name__)
    await queue.put((time.time_ns() // 1_000, GapDone(gap, filled)))
