"""Talking to Tardis.dev (or the local sample server) through the official tardis-dev client.

Every failure becomes one `TardisError` line that names the URL (never the API key): the
client itself already retries 429 (honouring Retry-After up to 300 s) and 5xx with back-off,
and fails at once on 401, 403 and 404.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.error
from dataclasses import dataclass

import aiohttp
import tardis_dev

from mdh_lib.config import bypass_proxy_for_local


class TardisError(RuntimeError):
    """A Tardis request that failed for good."""


def _scrub(text: str, api_key: str) -> str:
    return text.replace(api_key, "***") if api_key else text


def _explain(exc: Exception, url: str, api_key: str) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        body = (exc.msg or "").strip().splitlines()[0][:200] if exc.msg else ""
        code = exc.code
        if code in (401, 403):
            hint = (
                "the API key was refused: check TARDIS_API_KEY"
                if api_key
                else "no TARDIS_API_KEY is set, and without one only the first day of each month is available"
            )
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
class Download:
    path: str
    url: str
    bytes: int


def file_name(exchange: str, data_type: str, date: dt.datetime, symbol: str, fmt: str) -> str:
    return f"{exchange}/{data_type}/{date:%Y-%m-%d}/{symbol}.{fmt}.gz"


def download_day(
    exchange: str, data_type: str, date: dt.date, symbol: str, *, endpoint: str, api_key: str, dest_dir: str,
    timeout: int = 600,
) -> Download:
    """Download one day's file into ``dest_dir`` (a fresh folder per attempt: a bad earlier
    download is never reused) and return where it landed."""
    bypass_proxy_for_local(endpoint)
    url = dataset_url(endpoint, exchange, data_type, date, symbol)
    try:
        tardis_dev.download_datasets(
            exchange=exchange, data_types=[data_type], symbols=[symbol],
            from_date=date.isoformat(), to_date=(date + dt.timedelta(days=1)).isoformat(),
            api_key=api_key, download_dir=dest_dir, endpoint=endpoint, timeout=timeout,
            get_filename=file_name, skip_if_exists=False, concurrency=1,
        )
    except Exception as exc:  # the client raises HTTPError, aiohttp and OS errors alike
        raise TardisError(_explain(exc, url, api_key)) from None
    path = os.path.join(dest_dir, file_name(exchange, data_type, dt.datetime.combine(date, dt.time()), normalized_symbol(symbol), "csv"))
    return Download(path, url, os.path.getsize(path))


def exchange_details(exchange: str, *, endpoint: str) -> dict:
    bypass_proxy_for_local(endpoint)
    try:
        return tardis_dev.get_exchange_details(exchange, endpoint=endpoint)
    except Exception as exc:
        raise TardisError(_explain(exc, f"{endpoint}/exchanges/{exchange}", "")) from None


def instrument_records(exchange: str, *, endpoint: str, api_key: str) -> list[dict]:
    """All instruments of ``exchange`` from ``/v1/instruments`` (a paid key on the real service)."""
    bypass_proxy_for_local(endpoint)
    try:
        records = tardis_dev.get_instrument_info(exchange, api_key=api_key, endpoint=endpoint)
    except Exception as exc:
        raise TardisError(_explain(exc, f"{endpoint}/instruments/{exchange}", api_key)) from None
    return records if isinstance(records, list) else [records]
