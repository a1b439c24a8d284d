"""A local websocket server replaying exchange-format messages, for tests and benchmarks.

`ReplayServer` listens on 127.0.0.1 (a free port) in a background thread and sends a fixed
list of text messages to whoever connects, whatever the path (Binance combined-stream URLs,
Deribit's ``/ws/api/v2``). It can:

- wait for a JSON-RPC subscribe request and answer it (``rpc=True``, Deribit);
- drop the connection abruptly after ``drop_after`` messages, and on the reconnect resume
  ``rewind`` messages before the drop point (so the client sees some trades twice), or
  ``-rewind`` after it when negative (those trades are lost, as while a client is down);
- go silent after ``silent_after`` messages while keeping the connection open (a stale
  stream), resuming where it stopped on the next connection;
- pace messages at ``rate`` per second, or send them as fast as possible.

Malformed messages are simply strings in the list. The encoders below turn Tardis-format
rows (trades, liquidations, derivative_ticker, book_snapshot_5) into the exchanges' own
messages, exactly as documented by Binance and Deribit (nothing added), each paired with the
row's Tardis ``local_timestamp`` so `merged` can order several streams as one connection saw
them. `RestServer` is a local HTTP stand-in for Binance's open-interest endpoint.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod

import orjson
import polars as pl
import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve


def _ms(us: int) -> int:
    return us // 1_000


def _text(x) -> str | None:
    return None if x is None else repr(x)


def binance_trades(trades: pl.DataFrame, stream: str, *, futures: bool = False) -> list[tuple[int, str]]:
    """(local_timestamp, message) per trade row: Binance ``trade`` events, combined-stream
    wrapped (USDT-M futures events also carry ``X`` = MARKET)."""
    def data(r: dict) -> dict:
        d = {"e": "trade", "E": _ms(r["local_timestamp"]), "T": _ms(r["timestamp"]), "s": r["symbol"],
             "t": int(r["id"]), "p": repr(r["price"]), "q": repr(r["amount"])}
        return {**d, "X": "MARKET", "m": r["side"] == "sell"} if futures else {**d, "m": r["side"] == "sell", "M": True}

    return [(r["local_timestamp"], orjson.dumps({"stream": stream, "data": data(r)}).decode())
            for r in trades.iter_rows(named=True)]


def binance_force_orders(liquidations: pl.DataFrame, stream: str) -> list[tuple[int, str]]:
    """Binance futures ``forceOrder`` events (side SELL = a long liquidated = Tardis ``sell``)."""
    return [(r["local_timestamp"], orjson.dumps({
        "stream": stream,
        "data": {"e": "forceOrder", "E": _ms(r["local_timestamp"]), "o": {
            "s": r["symbol"], "S": r["side"].upper(), "o": "LIMIT", "f": "IOC", "q": repr(r["amount"]),
            "p": repr(round(r["price"] * 0.99, 2)), "ap": repr(r["price"]), "X": "FILLED", "l": repr(r["amount"]),
            "z": repr(r["amount"]), "T": _ms(r["timestamp"])}},
    }).decode()) for r in liquidations.iter_rows(named=True)]


def binance_mark_prices(ticker: pl.DataFrame, stream: str) -> list[tuple[int, str]]:
    """Binance futures ``markPriceUpdate`` events from derivative_ticker rows with a mark price."""
    rows = ticker.filter(pl.col("mark_price").is_not_null())
    return [(r["local_timestamp"], orjson.dumps({
        "stream": stream,
        "data": {"e": "markPriceUpdate", "E": _ms(r["timestamp"]), "s": r["symbol"], "p": _text(r["mark_price"]),
                 "i": _text(r["index_price"]), "P": _text(r["mark_price"]), "r": _text(r["funding_rate"]) or "",
                 "T": _ms(r["funding_timestamp"] or 0)},
    }).decode()) for r in rows.iter_rows(named=True)]


def _levels(r: dict, side: str) -> list[list[str]]:
    return [[repr(r[f"{side}[{i}].price"]), repr(r[f"{side}[{i}].amount"])] for i in range(5)
            if r[f"{side}[{i}].price"] is not None]


def binance_depth5(book: pl.DataFrame, stream: str, *, futures: bool = True) -> list[tuple[int, str]]:
    """``<s>@depth5@100ms`` messages from book_snapshot_5 rows: USDT-M futures ``depthUpdate``
    events (``E``, ``T``, ``b``/``a``), or spot's untimed ``lastUpdateId``/``bids``/``asks``."""
    def data(i: int, r: dict) -> dict:
        if not futures:
            return {"lastUpdateId": i, "bids": _levels(r, "bids"), "asks": _levels(r, "asks")}
        return {"e": "depthUpdate", "E": _ms(r["local_timestamp"]), "T": _ms(r["timestamp"]), "s": r["symbol"],
                "U": 2 * i, "u": 2 * i + 1, "pu": 2 * i - 1, "b": _levels(r, "bids"), "a": _levels(r, "asks")}

    return [(r["local_timestamp"], orjson.dumps({"stream": stream, "data": data(i, r)}).decode())
            for i, r in enumerate(book.iter_rows(named=True))]


def _deribit(channel: str, data) -> str:
    return orjson.dumps({"jsonrpc": "2.0", "method": "subscription",
                         "params": {"channel": channel, "data": data}}).decode()


def _deribit_trade(seq: int, r: dict, liquidation: str | None = None) -> dict:
    t = {"trade_seq": seq, "trade_id": str(r["id"]), "timestamp": _ms(r["timestamp"]), "tick_direction": 0,
         "price": r["price"], "mark_price": r["price"], "instrument_name": r["symbol"], "index_price": r["price"],
         "direction": r["side"], "amount": r["amount"]}
    return {**t, "liquidation": liquidation} if liquidation else t


def deribit_trades(trades: pl.DataFrame, liquidation: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """Deribit ``trades.{instrument}.100ms`` notifications, one trade each, ``trade_seq`` = the
    row number; ``liquidation`` maps trade ids to the ``liquidation`` field (M, T or MT)."""
    liquidation = liquidation or {}
    return [(r["local_timestamp"], _deribit(f"trades.{r['symbol']}.100ms",
                                            [_deribit_trade(i, r, liquidation.get(str(r["id"])))]))
            for i, r in enumerate(trades.iter_rows(named=True))]


def deribit_tickers(ticker: pl.DataFrame) -> list[tuple[int, str]]:
    """Deribit ``ticker.{instrument}.100ms`` notifications from derivative_ticker rows."""
    return [(r["local_timestamp"], _deribit(f"ticker.{r['symbol']}.100ms", {
        "timestamp": _ms(r["timestamp"]), "instrument_name": r["symbol"], "state": "open", "settlement_price": 1.0,
        "open_interest": r["open_interest"], "mark_price": r["mark_price"], "index_price": r["index_price"],
        "current_funding": r["funding_rate"], "funding_8h": r["funding_rate"], "last_price": r["last_price"],
        "best_bid_price": r["mark_price"], "best_ask_price": r["mark_price"], "stats": {"volume": 1.0}}))
        for r in ticker.iter_rows(named=True)]


def deribit_books(book: pl.DataFrame) -> list[tuple[int, str]]:
    """Deribit ``book.{instrument}.none.10.100ms`` snapshots from book_snapshot_5 rows."""
    def levels(r: dict, side: str) -> list[list[float]]:
        return [[float(p), float(a)] for p, a in _levels(r, side)]

    return [(r["local_timestamp"], _deribit(f"book.{r['symbol']}.none.10.100ms", {
        "timestamp": _ms(r["timestamp"]), "instrument_name": r["symbol"], "change_id": i,
        "bids": levels(r, "bids"), "asks": levels(r, "asks")}))
        for i, r in enumerate(book.iter_rows(named=True))]


def merged(*parts: list[tuple[int, str]]) -> list[str]:
    """Messages of several streams in arrival (local_timestamp) order, as one connection sees them."""
    return [m for _, m in sorted((x for p in parts for x in p), key=lambda x: x[0])]


class _Background(ABC):
    """A local server on its own event loop in a daemon thread; ``_main`` sets ``port``,
    then ``_ready``, and serves until ``_stop`` is set."""

    name = "server"

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    async def _main(self) -> None: ...

    def start(self):
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"mdh-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ReplayServer(_Background):
    name = "websocket replay server"

    def __init__(self, messages: list[str], *, rate: float | None = None, drop_after: int | None = None,
                 rewind: int = 0, silent_after: int | None = None, rpc: bool = False):
        super().__init__()
        self.messages, self.rate, self.rpc = messages, rate, rpc
        self.drop_after, self.rewind, self.silent_after = drop_after, rewind, silent_after
        self.position = 0  # the next message to send
        self.connections = 0
        self.paths: list[str] = []
        self.requests: list[str] = []
        self._dropped = self._silenced = False

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



class RestServer(_Background):
    """Binance's REST endpoints the live path uses, on 127.0.0.1 (a free port) in a background
    thread: ``GET /fapi/v1/openInterest?symbol=S`` answers ``open_interest()``;
    ``GET /fapi/v1/historicalTrades`` and ``/api/v3/historicalTrades`` (``fromId``, ``limit``)
    page through ``trades`` (Tardis trade rows, numeric ids), and Deribit's
    ``GET /api/v2/public/get_last_trades_by_instrument`` (``start_seq``, ``end_seq``,
    ``count``) through them with ``trade_seq`` = the row number, as `deribit_trades` numbers
    them. ``requests`` counts answers."""

    name = "REST stand-in"

    def __init__(self, open_interest=lambda: 0.0, trades: pl.DataFrame | None = None):
        super().__init__()
        self.open_interest, self.trades = open_interest, trades
        self.requests = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = {"symbol": request.query.get("symbol", ""), "openInterest": repr(float(self.open_interest())),
                "time": time.time_ns() // 1_000_000}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _history(self, request: web.Request) -> web.Response:
        self.requests += 1
        first, limit = int(request.query["fromId"]), int(request.query.get("limit", 500))
        rows = self.trades.filter(pl.col("id").cast(pl.Int64) >= first).head(limit)
        body = [{"id": int(r["id"]), "price": repr(r["price"]), "qty": repr(r["amount"]),
                 "quoteQty": repr(r["price"] * r["amount"]), "time": _ms(r["timestamp"]),
                 "isBuyerMaker": r["side"] == "sell", "isBestMatch": True} for r in rows.iter_rows(named=True)]
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _deribit_history(self, request: web.Request) -> web.Response:
        self.requests += 1
        q = request.query
        first, last, count = int(q["start_seq"]), int(q["end_seq"]), int(q.get("count", 10))
        rows = self.trades.with_row_index("seq").filter(pl.col("seq").is_between(first, last)).head(count)
        trades = [_deribit_trade(r["seq"], r) for r in rows.iter_rows(named=True)]
        body = {"jsonrpc": "2.0", "result": {"trades": trades, "has_more": bool(trades) and trades[-1]["trade_seq"] < last}}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/v2/public/get_last_trades_by_instrument", self._deribit_history)
        app.router.add_get("/fapi/v1/openInterest", self._handle)
        for path in ("/fapi/v1/historicalTrades", "/api/v3/historicalTrades"):
            app.router.add_get(path, self._history)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

