"""A local websocket server replaying exchange-format messages, for tests and benchmarks.

`ReplayServer` listens on 127.0.0.1 (a free port) in a background thread and sends a fixed
list of text messages to whoever connects, whatever the path (Binance combined-stream URLs,
Deribit's ``/ws/api/v2``). It can:

- wait for a JSON-RPC subscribe request and answer it (``rpc=True``, Deribit);
- drop the connection abruptly after ``drop_after`` messages, and on the reconnect resume
  ``rewind`` messages before the drop point (so the client sees some trades twice);
- go silent after ``silent_after`` messages while keeping the connection open (a stale
  stream), resuming where it stopped on the next connection;
- pace messages at ``rate`` per second, or send them as fast as possible.

Malformed messages are simply strings in the list. The encoders below turn Tardis-format
frames (trades, liquidations, derivative_ticker) into Binance and Deribit messages; each
carries the row's Tardis ``local_timestamp`` as a top-level field, which the live path
honours only in replay clock mode (MDH_WS_REPLAY_CLOCK=1), so delays equal batch.
"""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import polars as pl
import websockets
from websockets.asyncio.server import ServerConnection, serve


def _ms(us: int) -> int:
    return us // 1_000


def binance_trades(trades: pl.DataFrame, stream: str) -> list[tuple[int, str]]:
    """(local_timestamp, message) per trade row: Binance ``trade`` events, combined-stream wrapped."""
    return [(r["local_timestamp"], orjson.dumps({
        "stream": stream, "local_timestamp": r["local_timestamp"],
        "data": {"e": "trade", "E": _ms(r["local_timestamp"]), "s": r["symbol"], "t": int(r["id"]),
                 "p": repr(r["price"]), "q": repr(r["amount"]), "T": _ms(r["timestamp"]), "m": r["side"] == "sell"},
    }).decode()) for r in trades.iter_rows(named=True)]


def binance_force_orders(liquidations: pl.DataFrame, stream: str) -> list[tuple[int, str]]:
    """Binance futures ``forceOrder`` events (side SELL = a long liquidated = Tardis ``sell``)."""
    return [(r["local_timestamp"], orjson.dumps({
        "stream": stream, "local_timestamp": r["local_timestamp"],
        "data": {"e": "forceOrder", "E": _ms(r["local_timestamp"]), "o": {
            "s": r["symbol"], "S": r["side"].upper(), "o": "LIMIT", "f": "IOC", "q": repr(r["amount"]),
            "p": repr(r["price"]), "ap": repr(r["price"]), "X": "FILLED", "l": repr(r["amount"]),
            "z": repr(r["amount"]), "T": _ms(r["timestamp"])}},
    }).decode()) for r in liquidations.iter_rows(named=True)]


def binance_mark_prices(ticker: pl.DataFrame, stream: str) -> list[tuple[int, str]]:
    """Binance futures ``markPriceUpdate`` events from derivative_ticker rows with a mark price."""
    def text(x) -> str:
        return "" if x is None else repr(x)

    rows = ticker.filter(pl.col("mark_price").is_not_null())
    return [(r["local_timestamp"], orjson.dumps({
        "stream": stream, "local_timestamp": r["local_timestamp"],
        "data": {"e": "markPriceUpdate", "E": _ms(r["timestamp"]), "s": r["symbol"], "p": text(r["mark_price"]),
                 "i": text(r["index_price"]), "P": text(r["mark_price"]), "r": text(r["funding_rate"]),
                 "T": _ms(r["funding_timestamp"] or 0)},
    }).decode()) for r in rows.iter_rows(named=True)]


def deribit_trades(trades: pl.DataFrame) -> list[tuple[int, str]]:
    """Deribit ``trades.{instrument}.100ms`` notifications, one trade each."""
    return [(r["local_timestamp"], orjson.dumps({
        "jsonrpc": "2.0", "method": "subscription", "local_timestamp": r["local_timestamp"],
        "params": {"channel": f"trades.{r['symbol']}.100ms", "data": [{
            "trade_seq": i, "trade_id": str(r["id"]), "timestamp": _ms(r["timestamp"]), "tick_direction": 0,
            "price": r["price"], "mark_price": r["price"], "instrument_name": r["symbol"], "index_price": r["price"],
            "direction": r["side"], "amount": r["amount"]}]},
    }).decode()) for i, r in enumerate(trades.iter_rows(named=True))]


def merged(*parts: list[tuple[int, str]]) -> list[str]:
    """Messages of several streams in arrival (local_timestamp) order, as one connection sees them."""
    return [m for _, m in sorted((x for p in parts for x in p), key=lambda x: x[0])]


class ReplayServer:
    def __init__(self, messages: list[str], *, rate: float | None = None, drop_after: int | None = None,
                 rewind: int = 0, silent_after: int | None = None, rpc: bool = False):
        self.messages, self.rate, self.rpc = messages, rate, rpc
        self.drop_after, self.rewind, self.silent_after = drop_after, rewind, silent_after
        self.position = 0  # the next message to send
        self.connections = 0
        self.paths: list[str] = []
        self.requests: list[str] = []
        self._dropped = self._silenced = False
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def done(self) -> bool:
        return self.position >= len(self.messages)

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.paths.append(ws.request.path)
        try:
            if self.rpc:
                request = orjson.loads(await ws.recv())
                self.requests.append(request.get("method"))
                await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                                            "result": request.get("params", {}).get("channels", [])}).decode())
            start = max(self.position - self.rewind, 0) if self._dropped else self.position
            t0, sent = time.monotonic(), 0
            for i in range(start, len(self.messages)):
                if self.drop_after is not None and not self._dropped and i == self.drop_after:
                    self._dropped = True
                    ws.transport.abort()  # no close frame: a dropped TCP connection
                    return
                if self.silent_after is not None and not self._silenced and i == self.silent_after:
                    self._silenced = True
                    break
                await ws.send(self.messages[i])
                self.position = max(self.position, i + 1)
                sent += 1
                if self.rate and sent % 50 == 0:
                    await asyncio.sleep(max(t0 + sent / self.rate - time.monotonic(), 0))
            await ws.wait_closed()
        except websockets.ConnectionClosed:
            pass

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def start(self) -> "ReplayServer":
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="mdh-ws-replay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("replay server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
