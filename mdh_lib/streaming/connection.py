"""One venue stream kept alive: reconnects with backoff, a stale-stream timeout, and
rotation before an exchange's connection age limit (Binance closes a connection at 24 h).

The reader does no parsing: it stamps each text frame with its receive time and puts it in a
bounded queue. When the processor falls behind, ``put`` waits, the reader stops reading, the
websocket's own bounded buffer fills and TCP flow control slows the sender: memory stays
bounded under bursts.

- Reconnect: exponential backoff with full jitter (a uniform delay in [0, min(cap,
  initial * 2**attempt)]), reset once a connection has stayed healthy for ``healthy_after``.
- Stale: no frame for ``stale_timeout`` seconds -> the connection is dropped and reopened
  (protocol pings alone do not prove that the subscription still delivers).
- After a reconnect the reader queues `RECONNECTED` before the new connection's frames, so
  the processor knows where trades may be missing (`mdh_lib.streaming.gaps`).
- Rotation: at ``max_age`` (default 23.5 h) a new connection is opened and subscribed first,
  and the old one is closed ``overlap`` seconds later (make before break, so no gap); trades
  delivered by both are dropped by the id deduper.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection

log = logging.getLogger("mdh.streaming")
RECONNECTED = object()  # queued in place of a frame after a reconnect (not after a rotation: that overlaps)


@dataclass
class ConnectionSettings:
    stale_timeout: float = 30.0
    max_age: float = 84_600.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    healthy_after: float = 60.0
    overlap: float = 1.0
    open_timeout: float = 10.0


class Backoff:
    """Exponential backoff with full jitter."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None):
        self.initial, self.cap, self.attempt = initial, cap, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        delay = self.rng.uniform(0, min(self.cap, self.initial * 2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return delay

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class ConnectionStats:
    connections: int = 0
    reconnects: int = 0
    stale: int = 0
    rotations: int = 0
    failures: int = 0


class Feed:
    """Frames of ``url`` into ``queue`` as ``(receive_us, text)`` until ``stop`` is set."""

    def __init__(self, url: str, subscribe: list[str], queue: asyncio.Queue, settings: ConnectionSettings):
        self.url, self.subscribe, self.queue, self.settings = url, subscribe, queue, settings
        self.stats = ConnectionStats()
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self._last = time.monotonic()

    async def _open(self, stop: asyncio.Event) -> ClientConnection | None:
        """A subscribed connection, retrying with backoff; None once ``stop`` is set."""
        while not stop.is_set():
            try:
                ws = await websockets.connect(self.url, open_timeout=self.settings.open_timeout,
                                              max_queue=256, close_timeout=1)
                for message in self.subscribe:
                    await ws.send(message)
                self.stats.reconnects += self.stats.connections > 0
                self.stats.connections += 1
                self._last = time.monotonic()
                return ws
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
                self.stats.failures += 1
                delay = self.backoff.next()
                log.warning("%s: cannot connect (%s); retrying in %.2f s", self.url, exc or type(exc).__name__, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        return None

    async def _read(self, ws: ClientConnection) -> None:
        put, clock = self.queue.put, time.time_ns
        try:
            async for frame in ws:
                if isinstance(frame, str):
                    self._last = time.monotonic()
                    await put((clock() // 1_000, frame))
        except websockets.ConnectionClosed as exc:
            log.warning("%s: connection closed (%s)", self.url, exc)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        tick = min(1.0, s.stale_timeout / 4)
        stopped = asyncio.create_task(stop.wait())
        try:
            await self._supervise(stop, stopped, tick)
        finally:
            stopped.cancel()

    async def _supervise(self, stop: asyncio.Event, stopped: asyncio.Task, tick: float) -> None:
        s = self.settings
        ws = await self._open(stop)
        while ws is not None:
            opened = time.monotonic()
            reader = asyncio.create_task(self._read(ws))
            while not stop.is_set() and not reader.done():
                await asyncio.wait([reader, stopped], timeout=tick, return_when=asyncio.FIRST_COMPLETED)
                now = time.monotonic()
                if self.queue.full():  # the reader waits for the processor, not for the exchange
                    self._last = now
                if now - opened > s.healthy_after:
                    self.backoff.reset()
                if now - self._last > s.stale_timeout:
                    self.stats.stale += 1
                    log.warning("%s: no message for %.1f s; reconnecting", self.url, s.stale_timeout)
                    break
                if now - opened > s.max_age:
                    new = await self._open(stop)
                    if new is None:
                        break
                    self.stats.rotations += 1
                    log.info("%s: connection rotated after %.0f s", self.url, now - opened)
                    asyncio.get_running_loop().call_later(s.overlap, reader.cancel)
                    await asyncio.wait([reader])
                    ws.transport.abort()
                    ws, opened = new, time.monotonic()
                    reader = asyncio.create_task(self._read(ws))
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            ws.transport.abort()
            if stop.is_set():
                return
            delay = self.backoff.next()
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            ws = await self._open(stop)
            if ws is not None:  # frames sent while disconnected are lost: the processor fills the gap
                await self.queue.put((time.time_ns() // 1_000, RECONNECTED))
