"""Venues and instruments published by the sample server, in Tardis metadata formats.

Everything here derives from the constants below and a stable hash (only `active` looks at
the clock), so the server, the tests and the benchmarks all see the same instruments. Also
holds the guesses used to describe a directory of real files.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import hashlib
import math
import re

import numpy as np

FIRST_DAY = dt.date(2019, 1, 1)
LAST_LISTING = dt.date(2027, 12, 31)
EXPORTED_UNTIL = dt.date(2028, 1, 1)
EPOCH = dt.date(1970, 1, 1)

SPOT_DATA_TYPES = ("trades", "book_snapshot_5", "quotes")
DERIVATIVE_DATA_TYPES = SPOT_DATA_TYPES + ("derivative_ticker", "liquidations")
OPTIONS_DATA_TYPES = ("options_chain",)
OPTIONS_SYMBOL = "OPTIONS"

VENUES = {
    "binance": {
        "name": "Binance Spot",
        "availableSince": FIRST_DAY,
        "availableChannels": ["trade", "aggTrade", "ticker", "depth", "depthSnapshot", "bookTicker"],
    },
    "binance-futures": {
        "name": "Binance USDT Futures",
        "availableSince": dt.date(2019, 9, 1),
        "availableChannels": ["trade", "aggTrade", "ticker", "depth", "markPrice", "depthSnapshot",
                              "bookTicker", "forceOrder", "openInterest"],
    },
    "bitmex": {
        "name": "BitMEX",
        "availableSince": dt.date(2019, 3, 30),
        "availableChannels": ["trade", "orderBookL2", "instrument", "liquidation", "quote"],
    },
    "deribit": {
        "name": "Deribit",
        "availableSince": FIRST_DAY,
        "availableChannels": ["book", "deribit_price_index", "trades", "ticker", "perpetual", "quote",
                              "markprice.options"],
    },
}

# (exchange, type, base) -> price/amount grid and fees, close to the real venues.
_SPECS = {
    ("binance", "spot", "BTC"): (0.01, 0.00001, 0.001, 0.001),
    ("binance", "spot", "ETH"): (0.01, 0.0001, 0.001, 0.001),
    ("binance-futures", "perpetual", "BTC"): (0.1, 0.001, 0.0002, 0.0004),
    ("binance-futures", "perpetual", "ETH"): (0.01, 0.001, 0.0002, 0.0004),
    ("bitmex", "perpetual", "BTC"): (0.1, 100, 0.0005, 0.0005),
    ("bitmex", "perpetual", "ETH"): (0.05, 1, 0.0005, 0.0005),
    ("deribit", "perpetual", "BTC"): (0.5, 10, 0.0, 0.0005),
    ("deribit", "perpetual", "ETH"): (0.05, 1, 0.0, 0.0005),
    ("deribit", "future", "BTC"): (2.5, 10, -0.0001, 0.0005),
    ("deribit", "future", "ETH"): (0.25, 1, -0.0001, 0.0005),
    ("deribit", "option", "BTC"): (0.0001, 0.1, 0.0003, 0.0003),
    ("deribit", "option", "ETH"): (0.0001, 1, 0.0003, 0.0003),
}
_LEVELS = {"BTC": (55_000.0, 0.48), "ETH": (2_450.0, 0.49)}  # centre, log amplitude
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def stable_hash(*parts: object) -> int:
    """64-bit hash of the parts that is the same in every process (unlike hash())."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def price_level(base: str, days: float | np.ndarray) -> float | np.ndarray:
    """Synthetic price of `base` at `days` since 1970-01-01: smooth, so consecutive days connect."""
    centre, amp = _LEVELS[base]
    ph = [stable_hash("phase", base, i) % 6283 / 1000 for i in range(3)]
    x = (0.72 * np.sin(2 * np.pi * days / 913 + ph[0]) + 0.2 * np.sin(2 * np.pi * days / 167 + ph[1])
         + 0.08 * np.sin(2 * np.pi * days / 41 + ph[2]))
    return centre * np.exp(amp * x)


def iso(day: dt.date | dt.datetime) -> str:
    """Tardis timestamp text, e.g. 2020-01-01T00:00:00.000Z."""
    if not isinstance(day, dt.datetime):
        day = dt.datetime.combine(day, dt.time())
    return day.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def iso_day(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def expiry_code(day: dt.date) -> str:
    """Deribit expiry code: 27DEC24, 9JUN20."""
    return f"{day.day}{_MONTHS[day.month - 1]}{day:%y}"


def _last_friday(year: int, month: int) -> dt.date:
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    return last - dt.timedelta(days=(last.weekday() - 4) % 7)


def _expiries(months: tuple[int, ...], lead_days: int) -> list[tuple[dt.date, dt.date]]:
    """(listing, expiry) pairs of contracts alive inside the catalogue's listing horizon."""
    out = []
    for year in range(FIRST_DAY.year, LAST_LISTING.year + 2):
        for month in months:
            expiry = _last_friday(year, month)
            listing = expiry - dt.timedelta(days=lead_days)
            if expiry >= FIRST_DAY and listing <= LAST_LISTING:
                out.append((max(listing, FIRST_DAY), expiry))
    return out


def _nice_step(x: float) -> float:
    mag = 10 ** math.floor(math.log10(x))
    return max(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag <= x)


def _grid(exchange: str, kind: str, base: str) -> dict:
    tick, amount, maker, taker = _SPECS[(exchange, kind, base)]
    return {"priceIncrement": tick, "amountIncrement": amount, "minTradeAmount": amount,
            "makerFee": maker, "takerFee": taker}


def _instrument(exchange, symbol, base, quote, kind, since, expiry=None, **extra) -> dict:
    row = {"id": symbol, "datasetId": symbol, "exchange": exchange, "baseCurrency": base,
           "quoteCurrency": quote, "type": kind, "active": True, "availableSince": iso(since)}
    if expiry is not None:
        expiry_at = dt.datetime.combine(expiry, dt.time(8))
        row["active"] = expiry_at > dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        row["availableTo"] = iso(expiry + dt.timedelta(days=1))
        row["expiry"] = iso(expiry_at)
    row.update(_grid(exchange, kind, base))
    row.update(extra)
    return row


def _deribit(base: str) -> list[dict]:
    index = f"{base.lower()}_usd"
    inverse = {"settlementCurrency": base, "inverse": True, "contractMultiplier": 1}
    rows = [_instrument("deribit", f"{base}-PERPETUAL", base, "USD", "perpetual", FIRST_DAY,
                        contractType="inverse_perpetual", underlyingIndex=index, **inverse)]
    for since, expiry in _expiries((3, 6, 9, 12), 182):
        rows.append(_instrument("deribit", f"{base}-{expiry_code(expiry)}", base, "USD", "future", since,
                                expiry, contractType="inverse_future", underlyingIndex=index, **inverse))
    for since, expiry in _expiries(tuple(range(1, 13)), 90):
        centre = float(price_level(base, (since - EPOCH).days))
        # ~15 strikes 8% apart: wide enough that the 25-delta options stay bracketed as the
        # price wanders over the 90 days an expiry is listed.
        step = _nice_step(centre * 0.08)
        count = 15 + stable_hash("strikes", base, expiry) % 3
        first = round(centre / step) - count // 2
        for i in range(count):
            strike = (first + i) * step
            strike = int(strike) if strike == int(strike) else strike
            for flag, name in (("C", "call"), ("P", "put")):
                rows.append(_instrument(
                    "deribit", f"{base}-{expiry_code(expiry)}-{strike}-{flag}", base, base, "option", since,
                    expiry, contractType=f"{name}_option", strikePrice=strike, optionType=name, **inverse))
    return rows


# Tardis's ``changes``: the values that held until each ``until`` (the synthetic days use the
# values in force on them, `mdh_lib.instruments.as_of`). XBTUSD's are those of its real record.
_CHANGES = {
    ("binance-futures", "BTCUSDT"): [{"until": "2020-11-05T06:00:00.000Z", "priceIncrement": 0.01}],
    ("bitmex", "XBTUSD"): [
        {"until": "2021-06-08T04:30:00.000Z", "amountIncrement": 1, "minTradeAmount": 1},
        {"until": "2024-07-31T04:00:00.000Z", "priceIncrement": 0.5},
        {"until": "2024-10-22T00:00:00.000Z", "makerFee": 0.0002, "takerFee": 0.00075},
    ],
}


def _bitmex() -> tuple[dict, ...]:
    """XBTUSD, inverse (USD contracts settled in BTC), and ETHUSD, quanto (priced in USD,
    settled in BTC at a fixed 0.000001 BTC per USD point): the two contract kinds whose
    settlement is neither the quote nor, for quanto, the base."""
    since = VENUES["bitmex"]["availableSince"]
    return (
        _instrument("bitmex", "XBTUSD", "BTC", "USD", "perpetual", since, settlementCurrency="BTC", inverse=True,
                    contractType="inverse_perpetual", contractMultiplier=1, underlyingIndex=".BXBT"),
        _instrument("bitmex", "ETHUSD", "ETH", "USD", "perpetual", since, settlementCurrency="BTC", inverse=False,
                    quanto=True, contractType="quanto_perpetual", contractMultiplier=0.000001,
                    underlyingIndex=".BETH"),
    )


@functools.lru_cache(maxsize=None)
def _instruments(exchange: str) -> tuple[dict, ...]:
    rows = _listed(exchange)
    for row in rows:
        if (exchange, row["id"]) in _CHANGES:
            row["changes"] = [dict(c) for c in _CHANGES[(exchange, row["id"])]]
    return rows


def _listed(exchange: str) -> tuple[dict, ...]:
    if exchange == "binance":
        return tuple(_instrument("binance", f"{b}USDT", b, "USDT", "spot", FIRST_DAY) for b in ("BTC", "ETH"))
    if exchange == "binance-futures":
        since = VENUES[exchange]["availableSince"]
        return tuple(_instrument(exchange, f"{b}USDT", b, "USDT", "perpetual", since, settlementCurrency="USDT",
                                 contractType="linear_perpetual", inverse=False, contractMultiplier=1)
                     for b in ("BTC", "ETH"))
    if exchange == "deribit":
        return tuple(_deribit("BTC") + _deribit("ETH"))
    if exchange == "bitmex":
        return _bitmex()
    raise KeyError(f"unknown exchange {exchange!r}")


@functools.lru_cache(maxsize=None)
def _by_id(exchange: str) -> dict[str, dict]:
    return {row["id"]: row for row in _instruments(exchange)}


def instruments(exchange: str) -> list[dict]:
    """/v1/instruments/{exchange}: every synthetic instrument (KeyError for an unknown venue)."""
    return [dict(row) for row in _instruments(exchange)]


def instrument(exchange: str, symbol: str) -> dict | None:
    return _by_id(exchange).get(symbol) if exchange in VENUES else None


def data_types(kind: str) -> tuple[str, ...]:
    return SPOT_DATA_TYPES if kind == "spot" else DERIVATIVE_DATA_TYPES


@functools.lru_cache(maxsize=None)
def _datasets(exchange: str) -> dict[str, dict]:
    out = {row["id"]: _window(row) | {"dataTypes": list(data_types(row["type"]))}
           for row in _instruments(exchange) if row["type"] != "option"}
    if exchange == "deribit":
        out[OPTIONS_SYMBOL] = {"id": OPTIONS_SYMBOL, "type": "option", "availableSince": iso(FIRST_DAY),
                               "dataTypes": list(OPTIONS_DATA_TYPES)}
    return out


def dataset_symbols(exchange: str) -> list[dict]:
    """datasets.symbols: what has downloadable files (single options only via the OPTIONS group)."""
    return [dict(row) for row in _datasets(exchange).values()]


def dataset(exchange: str, symbol: str) -> dict | None:
    """The datasets.symbols entry of one symbol, or None."""
    return _datasets(exchange).get(symbol) if exchange in VENUES else None


def options_on(day: dt.date) -> list[dict]:
    """Deribit options listed on `day` (the rows of that day's OPTIONS file)."""
    return [row for row in _instruments("deribit") if row["type"] == "option"
            and iso_day(row["availableSince"]) <= day < iso_day(row["availableTo"])]


def _window(row: dict) -> dict:
    keys = ("id", "type", "availableSince", "availableTo")
    return {k: row[k] for k in keys if k in row}


def details(exchange: str, name: str, since: dt.date, channels: list[str], listed: list[dict],
            datasets: list[dict], until: dt.date) -> dict:
    """/v1/exchanges/{exchange} body from instruments and dataset symbols."""
    kinds = sorted({t for row in datasets for t in row["dataTypes"]})
    return {
        "id": exchange, "name": name, "enabled": True, "availableSince": iso(since),
        "availableChannels": channels,
        "availableSymbols": [_window(row) for row in listed],
        "datasets": {"formats": ["csv"], "exportedFrom": iso(since), "exportedUntil": iso(until),
                     "dataTypes": kinds, "symbols": datasets},
        "incidentReports": [],
    }


def exchange_details(exchange: str) -> dict:
    """/v1/exchanges/{exchange} for a synthetic venue (KeyError for an unknown venue)."""
    venue = VENUES[exchange]
    return details(exchange, venue["name"], venue["availableSince"], venue["availableChannels"],
                   list(_instruments(exchange)), dataset_symbols(exchange), EXPORTED_UNTIL)


_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "EUR", "BTC", "ETH")
_FUTURE = re.compile(r"^[A-Z0-9]+-\d{1,2}[A-Z]{3}\d{2}$")
_OPTION = re.compile(r"^[A-Z0-9]+-\d{1,2}[A-Z]{3}\d{2}-[\d.]+-[CP]$")


def guess_type(exchange: str, symbol: str) -> str:
    """Instrument type of a symbol seen only as a file name."""
    if symbol in (OPTIONS_SYMBOL, "OPTIONS-PERPETUALS") or _OPTION.match(symbol):
        return "option"
    if symbol.endswith("PERPETUAL") or symbol == "PERPETUALS":
        return "perpetual"
    if exchange.startswith("deribit") and _FUTURE.match(symbol):
        return "future"
    if exchange in ("binance-futures", "binance-delivery", "bybit", "bitmex", "okex-swap"):
        return "perpetual"
    return "spot"


def guess_instrument(exchange: str, symbol: str, since: dt.date, until: dt.date) -> dict:
    """A Tardis instrument row for a symbol known only from files (grid and fees are placeholders)."""
    parts = re.split(r"[-_/]", symbol)
    if len(parts) > 1:
        base = parts[0]
        quote = parts[1] if parts[1] in _QUOTES else "USD"
    else:
        quote = next((q for q in _QUOTES if symbol.endswith(q) and symbol != q), "")
        base = symbol[: len(symbol) - len(quote)] if quote else symbol
    base = "BTC" if base == "XBT" else base
    return {"id": symbol, "datasetId": symbol, "exchange": exchange, "baseCurrency": base,
            "quoteCurrency": quote or "USD", "type": guess_type(exchange, symbol), "active": True,
            "availableSince": iso(since), "availableTo": iso(until), "priceIncrement": 0.01,
            "amountIncrement": 0.001, "minTradeAmount": 0.001, "makerFee": 0.0, "takerFee": 0.0}
