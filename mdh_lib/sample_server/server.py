"""Local Tardis.dev-compatible HTTP server, so the project runs offline through the official
tardis-dev client: synthetic data, or real files from a directory, plus injectable faults."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hmac
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from . import catalog, synthetic
from .faults import BODY_KINDS, Faults, damage

_CACHE_BYTES = 256 * 2**20  # recently served synthetic bodies kept in memory
_CACHE_ONE = 64 * 2**20
_SKIP_LOG = "/_admin"


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


def _filtered(rows: list[dict], spec: dict) -> list[dict]:
    """Apply an instruments ?filter=: field equality (a list means any of), and availability
    windows (availableSince / availableTo keep instruments available at some time in between)."""
    def keep(row: dict) -> bool:
        for key, want in spec.items():
            if key == "availableSince":
                if "availableTo" in row and row["availableTo"][:10] <= want[:10]:
                    return False
            elif key == "availableTo":
                if row["availableSince"][:10] >= want[:10]:
                    return False
            elif row.get(key) not in (want if isinstance(want, list) else [want]):
                return False
        return True

    return [row for row in rows if keep(row)]


@functools.lru_cache(maxsize=None)
def _synthetic_json(kind: str, exchange: str) -> bytes:
    body = catalog.exchange_details(exchange) if kind == "details" else catalog.instruments(exchange)
    return json.dumps(body).encode()


class _Synthetic:
    """Deterministic generated days (catalog venues only)."""

    cacheable = True

    def __init__(self, trades_per_day: int) -> None:
        self.trades_per_day = trades_per_day

    def details(self, exchange: str) -> bytes | None:
        return _synthetic_json("details", exchange) if exchange in catalog.VENUES else None

    def instruments(self, exchange: str) -> list[dict] | None:
        return json.loads(_synthetic_json("instruments", exchange)) if exchange in catalog.VENUES else None

    def check(self, exchange: str, data_type: str, day: dt.date, symbol: str) -> tuple[int, str] | None:
        try:
            synthetic.validate(exchange, data_type, day, symbol)
        except LookupError as exc:
            return 404, str(exc)
        except ValueError as exc:
            return 400, str(exc)
        return None

    def load(self, exchange: str, data_type: str, day: dt.date, symbol: str) -> bytes:
        return synthetic.day_csv_gz(exchange, data_type, day, symbol, self.trades_per_day)


class _Directory:
    """Files laid out as {exchange}/{data_type}/{YYYY}/{MM}/{DD}/{SYMBOL}.csv.gz, metadata from
    instruments/{exchange}.json when present, otherwise derived from the files."""

    cacheable = False

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"data directory {root} does not exist")

    def _path(self, *parts: str) -> Path | None:
        path = self.root.joinpath(*parts).resolve()
        return path if path.is_relative_to(self.root) else None

    def _files(self, exchange: str) -> dict[str, dict]:
        """symbol -> data types and first/last day of the files on disk."""
        out: dict[str, dict] = {}
        base = self._path(exchange)
        for path in base.glob("*/[0-9]*/[0-9]*/[0-9]*/*.csv.gz") if base else ():
            data_type, year, month, day, name = path.relative_to(base).parts
            try:
                date = dt.date(int(year), int(month), int(day))
            except ValueError:
                continue
            entry = out.setdefault(name[: -len(".csv.gz")], {"dataTypes": set(), "first": date, "last": date})
            entry["dataTypes"].add(data_type)
            entry["first"], entry["last"] = min(entry["first"], date), max(entry["last"], date)
        return out

    def _listed(self, exchange: str) -> list[dict] | None:
        path = self._path("instruments", f"{exchange}.json")
        if path is None or not path.is_file():
            return None
        body = json.loads(path.read_text())
        return body if isinstance(body, list) else [body]

    def instruments(self, exchange: str) -> list[dict] | None:
        listed = self._listed(exchange)
        if listed is not None:
            return listed
        files = self._files(exchange)
        return [catalog.guess_instrument(exchange, symbol, f["first"], f["last"] + dt.timedelta(days=1))
                for symbol, f in sorted(files.items()) if symbol != catalog.OPTIONS_SYMBOL] or None

    def details(self, exchange: str) -> bytes | None:
        files, listed = self._files(exchange), self.instruments(exchange)
        if not files and listed is None:
            return None
        types = {row["id"]: row.get("type") for row in listed or []}
        datasets = [{"id": symbol, "type": types.get(symbol) or catalog.guess_type(exchange, symbol),
                     "availableSince": catalog.iso(f["first"]),
                     "availableTo": catalog.iso(f["last"] + dt.timedelta(days=1)),
                     "dataTypes": sorted(f["dataTypes"])} for symbol, f in sorted(files.items())]
        days = ([f["first"] for f in files.values()]
                or [catalog.iso_day(row["availableSince"]) for row in listed if "availableSince" in row]
                or [dt.date.today()])
        until = max([f["last"] + dt.timedelta(days=1) for f in files.values()] or [max(days)])
        venue = catalog.VENUES.get(exchange, {})
        body = catalog.details(exchange, venue.get("name", exchange), min(days),
                               venue.get("availableChannels", []), listed or [], datasets, until)
        return json.dumps(body).encode()

    def file(self, exchange: str, data_type: str, day: dt.date, symbol: str) -> Path | None:
        return self._path(exchange, data_type, f"{day:%Y}", f"{day:%m}", f"{day:%d}", f"{symbol}.csv.gz")

    def check(self, exchange: str, data_type: str, day: dt.date, symbol: str) -> tuple[int, str] | None:
        path = self.file(exchange, data_type, day, symbol)
        if path is None or not path.is_file():
            return 404, f"no {data_type} file for {exchange} {symbol} on {day}"
        return None

    def load(self, exchange: str, data_type: str, day: dt.date, symbol: str) -> bytes:
        return self.file(exchange, data_type, day, symbol).read_bytes()


class SampleServer:
    """The Tardis-compatible server, run in a background thread with its own event loop.

    `endpoint` serves as both TARDIS_DATASETS_ENDPOINT and TARDIS_API_ENDPOINT. With `api_key`
    set, requests must send `Authorization: Bearer <key>`: without a key only the first day of
    each month is served and `/v1/instruments` answers 401 (Tardis's free access), a wrong key
    gets 401. `free_access` does the same without a key of its own: any key counts as a paid
    one (`mdh sample-server --require-key`). The key is never logged or echoed.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, trades_per_day: int = 20_000,
                 host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 latency_ms: float = 0, free_access: bool = False) -> None:
        self.host, self.port = host, port
        self.latency_ms = latency_ms
        self._trades_per_day = trades_per_day
        self._api_key = api_key
        self._free_access = free_access
        self._source = _Directory(data_dir) if data_dir else _Synthetic(trades_per_day)
        self._faults = Faults()
        self._log: list[tuple[str, str, int]] = []
        self._log_lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple, bytes] = collections.OrderedDict()
        self._inflight: dict[tuple, asyncio.Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None

    # --- faults and request log ------------------------------------------------------------------

    def inject(self, kind: str, match: str | None = None, times: int | None = None, **params) -> None:
        """Add a fault rule (see faults.py for kinds and parameters)."""
        self._faults.add(kind, match, times, **params)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path without query, status) of every request served so far."""
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def trades_per_day(self) -> int:
        """Size of a synthetic day: trades of a BTC instrument (other data types scale with it)."""
        return self._trades_per_day

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> "SampleServer":
        """Serve in a daemon thread; returns once listening (port 0 picks a free port)."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), daemon=True,
                                        name="mdh-sample-server")
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> "SampleServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, failure: list) -> None:
        loop = asyncio.new_event_loop()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mdh-sample-body")
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, self.host, self.port).start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # reported to start() in the caller's thread
            failure.append(exc)
            loop.run_until_complete(runner.cleanup())
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            self._executor.shutdown(wait=False, cancel_futures=True)
            loop.close()

    # --- HTTP ------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v1/exchanges/{exchange}", self._exchange)
        app.router.add_get("/v1/instruments/{exchange}", self._instruments)
        app.router.add_get("/v1/instruments/{exchange}/{symbol}", self._instruments)
        app.router.add_get(r"/v1/{exchange}/{data_type}/{y:\d{4}}/{m:\d{2}}/{d:\d{2}}/{file}", self._data)
        app.router.add_post("/_admin/faults", self._admin_add)
        app.router.add_delete("/_admin/faults", self._admin_clear)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith(_SKIP_LOG):
            return await handler(request)
        status = 500
        try:
            delay = self.latency_ms + sum(r.params.get("ms", 0) for r in self._faults.take(request.path, ("latency",)))
            if delay:
                await asyncio.sleep(delay / 1000)
            rules = self._faults.take(request.path, ("status",))
            if rules:
                code = int(rules[0].params["status"])
                headers = {"Retry-After": str(int(rules[0].params.get("retry_after", 1)))} if code == 429 else None
                response = _error(code, f"injected {code} fault", headers)
            else:
                response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            with self._log_lock:
                self._log.append((request.method, request.path, status))

    def _auth(self, request: web.Request) -> str:
        """'ok', 'missing' or 'wrong' for the request's API key."""
        if self._api_key is None and not self._free_access:
            return "ok"
        header = request.headers.get("Authorization", "")
        given = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        if not header:
            return "missing"
        if self._api_key is None:
            return "ok" if given else "wrong"
        return "ok" if hmac.compare_digest(given.encode(), self._api_key.encode()) else "wrong"

    async def _exchange(self, request: web.Request) -> web.Response:
        exchange = request.match_info["exchange"]
        body = await asyncio.get_running_loop().run_in_executor(self._executor, self._source.details, exchange)
        if body is None:
            return _error(404, f"unknown exchange {exchange}")
        return web.Response(body=body, content_type="application/json")

    async def _instruments(self, request: web.Request) -> web.Response:
        if self._auth(request) != "ok":
            return _error(401, "a valid API key is required for instruments metadata (not part of free access)")
        exchange, symbol = request.match_info["exchange"], request.match_info.get("symbol")
        rows = await asyncio.get_running_loop().run_in_executor(self._executor, self._source.instruments, exchange)
        if rows is None:
            return _error(404, f"unknown exchange {exchange}")
        if symbol is not None:
            row = next((r for r in rows if r["id"] == symbol), None)
            return web.json_response(row) if row else _error(404, f"unknown symbol {symbol} for {exchange}")
        if "filter" in request.query:
            try:
                spec = json.loads(request.query["filter"])
                rows = _filtered(rows, spec)
            except (ValueError, TypeError, AttributeError):
                return _error(400, "filter must be a JSON object of instrument fields")
        return web.json_response(rows)

    async def _data(self, request: web.Request) -> web.Response:
        info = request.match_info
        exchange, data_type, name = info["exchange"], info["data_type"], info["file"]
        if not name.endswith(".csv.gz"):
            return _error(404, "only .csv.gz datasets are served")
        symbol = name[: -len(".csv.gz")]
        try:
            day = dt.date(int(info["y"]), int(info["m"]), int(info["d"]))
        except ValueError:
            return _error(400, f"invalid date {info['y']}-{info['m']}-{info['d']}")
        auth = self._auth(request)
        if auth == "wrong" or (auth == "missing" and day.day != 1):
            return _error(401, "invalid or missing API key: without a key only the first day of each month "
                               "is available")
        problem = self._source.check(exchange, data_type, day, symbol)
        if problem:
            return _error(*problem)
        rules = self._faults.take(request.path, BODY_KINDS)
        if not rules and isinstance(self._source, _Directory):  # a file on disk, sent by the kernel (sendfile)
            return web.FileResponse(self._source.file(exchange, data_type, day, symbol),
                                    headers={"Content-Type": "application/gzip"})
        body = await self._body((exchange, data_type, day, symbol))
        if rules:
            body = await asyncio.get_running_loop().run_in_executor(self._executor, damage, rules[0], body)
        return web.Response(body=body, content_type="application/gzip")

    async def _body(self, key: tuple) -> bytes:
        """The file body; synthetic ones are generated once even when requested concurrently and
        the recent ones kept in a small LRU."""
        loop = asyncio.get_running_loop()
        if not self._source.cacheable:
            return await loop.run_in_executor(self._executor, self._source.load, *key)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        future = self._inflight.get(key)
        if future is None:
            future = loop.run_in_executor(self._executor, self._source.load, *key)
            self._inflight[key] = future
            future.add_done_callback(functools.partial(self._settle, key))
        return await asyncio.shield(future)

    def _settle(self, key: tuple, future: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        body = future.result()
        if len(body) <= _CACHE_ONE:
            self._cache[key] = body
            while sum(map(len, self._cache.values())) > _CACHE_BYTES:
                self._cache.popitem(last=False)

    async def _admin_add(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            self.inject(spec.pop("kind"), spec.pop("match", None), spec.pop("times", None), **spec)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _error(400, f"bad fault: {exc}")
        return web.json_response({"ok": True}, status=201)

    async def _admin_clear(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"ok": True})


def serve_forever(host: str = "127.0.0.1", port: int = 8765, data_dir: str | os.PathLike | None = None,
                  trades_per_day: int = 20_000, api_key: str | None = None, latency_ms: float = 0,
                  free_access: bool = False) -> None:
    """Run the server in the foreground (for `mdh sample-server`) until Ctrl-C or SIGTERM."""
    def interrupt(*_):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
    server = SampleServer(data_dir, trades_per_day, host, port, api_key, latency_ms, free_access).start()
    source = f"files in {data_dir}" if data_dir else f"synthetic data, {trades_per_day} trades/day"
    if free_access:
        source += "; without a key: no /v1/instruments and only the first day of each month"
    try:  # a Ctrl-C as soon as the line is out is a clean stop too
        print(f"Tardis-compatible sample server on {server.endpoint} ({source}); Ctrl-C to stop", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
