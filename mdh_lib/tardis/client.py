"""Talking to Tardis.dev (or the local sample server) through the official tardis-dev client.

Every failure becomes one `TardisError` line that names the URL (never the API key): the
client itself already retries 429 (honouring Retry-After up to 300 s) and 5xx with back-off,
and fails at once on 401, 403 and 404.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import urllib.error
from dataclasses import dataclass

import aiohttp
import tardis_dev

from mdh_lib.config import bypass_proxy_for_local


class TardisError(RuntimeError):
    """A Tardis request that failed for good; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # crosses from a helper process with its status (`mdh_lib.ingest`)
        return type(self), (str(self), self.status)

    @property
    def refused(self) -> bool:
        """Whether Tardis refused the request for want of a (paid) key: 401 or 403."""
        return self.status in (401, 403)


_FREE_DAYS = "and without one only the first day of each month is available"
_PAID_METADATA = "and instrument metadata needs a paid key"


def _error(exc: Exception, url: str, api_key: str, without_key: str = _FREE_DAYS) -> TardisError:
    status = exc.code if isinstance(exc, urllib.error.HTTPError) else None
    return TardisError(_explain(exc, url, api_key, without_key), status)


def _scrub(text: str, api_key: str) -> str:
    return text.replace(api_key, "***") if api_key else text


def _explain(exc: Exception, url: str, api_key: str, without_key: str = _FREE_DAYS) -> str:
    """One line for a failed request; ``without_key`` says what a keyless refusal means."""
    if isinstance(exc, urllib.error.HTTPError):
        body = (exc.msg or "").strip().splitlines()[0][:200] if exc.msg else ""
        code = exc.code
        if code in (401, 403):
            hint = "the API key was refused: check TARDIS_API_KEY" if api_key else f"no TARDIS_API_KEY is set, {without_key}"
            why = f"HTTP {code}: {hint}"
        elif code == 404:
            why = "HTTP 404: no such file on Tardis (unknown exchange, symbol or data type)"
        elif code == 429:
            why = f"HTTP 429: rate limited (Retry-After {exc.headers.get('Retry-After', '?') if exc.headers else '?'} s)"
        else:
            why = f"HTTP {code}" + (f": {body}" if body else "")
        return _scrub(f"{why} for {url}", api_key)
    if isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError)):
        return _scrub(f"could not download {url}: {type(exc).__name__}: {exc}", api_key)
    return _scrub(f"download of {url} failed: {type(exc).__name__}: {exc}", api_key)


def normalized_symbol(symbol: str) -> str:
    """The symbol as it appears in dataset URLs: upper-cased, ``:`` and ``/`` written ``-``."""
    return symbol.replace(":", "-").replace("/", "-").upper()


def dataset_url(endpoint: str, exchange: str, data_type: str, date: dt.date, symbol: str) -> str:
    return f"{endpoint}/{exchange}/{data_type}/{date:%Y/%m/%d}/{normalized_symbol(symbol)}.csv.gz"


@dataclass(frozen=True)
class DayFile:
    """One Tardis dataset file: an exchange's data type for one symbol and UTC day."""

    exchange: str
    data_type: str
    date: dt.date
    symbol: str

    def url(self, endpoint: str) -> str:
        return dataset_url(endpoint, self.exchange, self.data_type, self.date, self.symbol)

    def local_path(self, folder: str) -> str:
        day = dt.datetime.combine(self.date, dt.time())
        return os.path.join(folder, file_name(self.exchange, self.data_type, day, normalized_symbol(self.symbol), "csv"))


@dataclass(frozen=True)
class Download:
    path: str
    url: str
    bytes: int


def file_name(exchange: str, data_type: str, date: dt.datetime, symbol: str, fmt: str) -> str:
    return f"{exchange}/{data_type}/{date:%Y-%m-%d}/{symbol}.{fmt}.gz"


async def _download(f: DayFile, endpoint: str, api_key: str, dest_dir: str, timeout: int) -> Download:
    try:
        await tardis_dev.download_datasets_async(
            exchange=f.exchange, data_types=[f.data_type], symbols=[f.symbol],
            from_date=f.date.isoformat(), to_date=(f.date + dt.timedelta(days=1)).isoformat(),
            api_key=api_key, download_dir=dest_dir, endpoint=endpoint, timeout=timeout,
            get_filename=file_name, skip_if_exists=False, concurrency=1,
        )
    except Exception as exc:  # the client raises HTTPError, aiohttp and OS errors alike
        raise _error(exc, f.url(endpoint), api_key) from None
    path = f.local_path(dest_dir)
    return Download(path, f.url(endpoint), os.path.getsize(path))


def download_days(
    files: list[DayFile], *, endpoint: str, api_key: str, dest_dir: str, concurrency: int = 20, timeout: int = 600,
) -> dict[DayFile, Download | TardisError]:
    """Download many files at once (at most ``concurrency`` in flight), each through the
    official client with its retries; a failure is returned in place of its download."""
    bypass_proxy_for_local(endpoint)

    async def run() -> list:
        gate = asyncio.Semaphore(concurrency)

        async def one(f: DayFile):
            async with gate:
                try:
                    return await _download(f, endpoint, api_key, dest_dir, timeout)
                except TardisError as exc:
                    return exc

        return await asyncio.gather(*(one(f) for f in files))

    return dict(zip(files, asyncio.run(run())))


def download_day(f: DayFile, *, endpoint: str, api_key: str, dest_dir: str) -> Download:
    """Download one file into ``dest_dir`` (give each attempt a fresh folder, so a bad
    earlier download is never reused)."""
    got = download_days([f], endpoint=endpoint, api_key=api_key, dest_dir=dest_dir)[f]
    if isinstance(got, TardisError):
        raise got
    return got


def exchange_details(exchange: str, *, endpoint: str) -> dict:
    bypass_proxy_for_local(endpoint)
    try:
        return tardis_dev.get_exchange_details(exchange, endpoint=endpoint)
    except Exception as exc:
        raise _error(exc, f"{endpoint}/exchanges/{exchange}", "") from None


def instrument_records(exchange: str, *, endpoint: str, api_key: str) -> list[dict]:
    """All instruments of ``exchange`` from ``/v1/instruments`` (a paid key on the real service;
    a refusal is a `TardisError` whose ``refused`` is true)."""
    bypass_proxy_for_local(endpoint)
    try:
        records = tardis_dev.get_instrument_info(exchange, api_key=api_key, endpoint=endpoint)
    except Exception as exc:
        raise _error(exc, f"{endpoint}/instruments/{exchange}", api_key, _PAID_METADATA) from None
    return records if isinstance(records, list) else [records]


def refuses_without_key(exchange: str, *, endpoint: str) -> bool:
    """Whether the service refuses ``/v1/instruments`` without a key, as Tardis does: then it
    is Tardis's free access, which serves only the first day of each month. The request
    filters on an id no instrument has, so a service that answers sends an empty list; any
    other failure says nothing about access (False: the steps that follow report it)."""
    bypass_proxy_for_local(endpoint)
    try:
        tardis_dev.get_instrument_info(exchange, filter={"id": "-"}, api_key="", endpoint=endpoint)
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403)
    except Exception:
        return False
    return False
