"""Data a venue serves only over REST, polled into the websocket frame queue.

Binance USDT-M futures publishes open interest only at ``GET /fapi/v1/openInterest?symbol=S``
(``{"openInterest": "10659.509", "symbol": "BTCUSDT", "time": 1589437530011}``). Tardis
records it the same way, as a polled ``<s>@openInterest`` channel; the poller wraps each
response as that combined-stream frame and queues it with its receive time, so it is
normalised, ordered and timed like any websocket message (`mdh_lib.streaming.venues`).

The base URL is ``MDH_REST_ENDPOINT_{VENUE}`` (e.g. ``MDH_REST_ENDPOINT_BINANCE_FUTURES=
http://127.0.0.1:9002``), else the exchange's, except when ``MDH_WS_ENDPOINT_{VENUE}``
redirects the stream and no REST endpoint is set: then nothing is polled (a redirected
stream asks nothing of the exchange). Polls every ``MDH_REST_POLL_INTERVAL`` seconds; a
failed poll is logged (once per run of failures) and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson

from mdh_lib.frames import Instrument
from mdh_lib.streaming.venues import Venue

log = logging.getLogger("mdh.streaming")


class OpenInterestPoller:
    def __init__(self, base: str, symbol: str, interval: float):
        self.url = f"{base}/fapi/v1/openInterest"
        self.symbol, self.interval = symbol, interval
        self.stream = f"{symbol.lower()}@openInterest"
        self.polls = self.failures = 0

    async def run(self, stop: asyncio.Event, queue: asyncio.Queue) -> None:
        timeout = aiohttp.ClientTimeout(total=max(self.interval, 2.0))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            failing = False
            while not stop.is_set():
                try:
                    async with session.get(self.url, params={"symbol": self.symbol}) as response:
                        response.raise_for_status()
                        body = orjson.loads(await response.read())
                    await queue.put((time.time_ns() // 1_000,
                                     orjson.dumps({"stream": self.stream, "data": body}).decode()))
                    self.polls += 1
                    failing = False
                except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
                    self.failures += 1
                    if not failing:
                        log.warning("%s: open interest poll failed (%s); retrying every %.1f s", self.url,
                                    exc or type(exc).__name__, self.interval)
                    failing = True
                try:
                    await asyncio.wait_for(stop.wait(), self.interval)
                except asyncio.TimeoutError:
                    pass


def poller(v: Venue, instrument: Instrument, base: str | None, interval: float) -> OpenInterestPoller | None:
    """The venue's REST poller, or None (no REST data for the venue, or no REST endpoint)."""
    if base is None or v.exchange != "binance-futures":
        return None
    return OpenInterestPoller(base, instrument.symbol, interval)
