"""Deterministic synthetic Tardis CSV days, generated vectorised and gzipped in parallel chunks.

One (exchange, data type, date, symbol, size) always gives the same bytes: every random stream
is seeded from a stable hash of what it describes. An instrument's trades, book snapshots,
quotes, tickers and liquidations all read one quote path, so they agree with each other, and
every instrument follows its underlying's daily price path, so venues agree too.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import gzip
import itertools
import math
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.compute as pc

from mdh_lib.instruments import as_of

from . import catalog

_PREFIX = ["exchange", "symbol", "timestamp", "local_timestamp"]
HEADERS = {
    "trades": _PREFIX + ["id", "side", "price", "amount"],
    "book_snapshot_5": _PREFIX + [f"{side}[{i}].{field}" for i in range(5)
                                  for side in ("asks", "bids") for field in ("price", "amount")],
    "quotes": _PREFIX + ["ask_amount", "ask_price", "bid_price", "bid_amount"],
    "derivative_ticker": _PREFIX + ["funding_timestamp", "funding_rate", "predicted_funding_rate",
                                    "open_interest", "last_price", "index_price", "mark_price"],
    "liquidations": _PREFIX + ["id", "side", "price", "amount"],
    "options_chain": _PREFIX + ["type", "strike_price", "expiration", "open_interest", "last_price",
                                "bid_price", "bid_amount", "bid_iv", "ask_price", "ask_amount", "ask_iv",
                                "mark_price", "mark_iv", "underlying_index", "underlying_price",
                                "delta", "gamma", "vega", "theta", "rho"],
}

_DAY_US = 86_400_000_000
_SEC = 86_400
_SECONDS = np.arange(_SEC + 1, dtype=np.float64)
_YEAR_US = 365.25 * _DAY_US
_HOURS8_US = 8 * 3_600_000_000
_LATENCY_MS = {"binance": 4.0, "binance-futures": 3.0, "bitmex": 6.0, "deribit": 2.0}
_NOTIONAL_USD = {"spot": 600.0, "perpetual": 2_500.0, "future": 4_000.0}
_OPEN_INTEREST_USD = {"perpetual": 2e9, "future": 2e8}
_ID_STRIDE = 50_000_000  # trade ids per day, so ids keep increasing across days

_CHUNK_ROWS = 250_000
_BLOCK = 50_000  # rows per random block: chunking never changes the output
_LEVEL = 1
_WORKERS = os.cpu_count() or 2
_POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="mdh-synthetic")
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
_EMPTY_GZ = gzip.compress(b"", mtime=0)
_CSV = pacsv.WriteOptions(include_header=False, quoting_style="none")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(catalog.stable_hash(*parts))


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _day_us(day: dt.date) -> int:
    return (day - catalog.EPOCH).days * _DAY_US


def _grid(x: float) -> tuple[int, int]:
    """An increment as num/den so that units * num / den is the nearest double to the decimal."""
    return Decimal(str(x)).as_integer_ratio()


def _expiry_us(row: dict) -> int:
    return int(dt.datetime.fromisoformat(row["expiry"].replace("Z", "+00:00")).timestamp()) * 1_000_000


# --- the shared market of one underlying on one day -------------------------------------------


@dataclass(frozen=True)
class _Market:
    logf: np.ndarray  # log fair spot price at each second of the day (86,401 points)
    cum: np.ndarray  # cumulative trading activity at each second
    carry: float  # annualised futures basis
    atm_iv: float  # at-the-money implied volatility (fraction)


@functools.lru_cache(maxsize=16)
def _market(base: str, day: dt.date) -> _Market:
    rng = _rng("market", base, day)
    d0 = (day - catalog.EPOCH).days
    hours = _SECONDS[:-1] / 3600
    # activity by UTC hour: Asia ~02:00, Europe ~09:00, US ~15:30
    cycle = (0.5 + 0.35 * np.exp(-(((hours - 2) / 2.5) ** 2)) + 0.6 * np.exp(-(((hours - 9) / 2.5) ** 2))
             + 1.0 * np.exp(-(((hours - 15.5) / 3) ** 2)))
    noise = np.convolve(rng.standard_normal(1500), np.exp(-np.arange(60) / 20), "same")[:1440]
    act = cycle * np.repeat(np.exp(0.45 * noise / noise.std()), 60)
    sigma = 0.015 + 0.025 * rng.random()
    inc = rng.standard_normal(_SEC) * np.sqrt(act / act.mean()) * sigma / math.sqrt(_SEC)
    for _ in range(rng.poisson(2)):  # sharp moves: a jump spread over a few minutes, busy markets
        start, length = int(rng.integers(0, _SEC - 600)), int(rng.integers(20, 240))
        inc[start:start + length] += rng.normal(0, 0.012) / length
        act[start:start + length] *= 4
    path = np.concatenate([[0.0], np.cumsum(inc)])
    target = math.log(catalog.price_level(base, d0 + 1) / catalog.price_level(base, d0))
    path -= np.linspace(0, 1, _SEC + 1) * (path[-1] - target)
    phase = catalog.stable_hash("vol", base) % 628 / 100
    return _Market(
        logf=math.log(catalog.price_level(base, d0)) + path,
        cum=np.concatenate([[0.0], np.cumsum(act)]),
        carry=0.07 + 0.04 * math.sin(2 * math.pi * d0 / 400 + phase),
        atm_iv=(0.55 if base == "BTC" else 0.65) * math.exp(0.25 * math.sin(2 * math.pi * d0 / 300 + phase)),
    )


def _spot(mkt: _Market, day: dt.date, ts: np.ndarray) -> np.ndarray:
    return np.exp(np.interp((ts - _day_us(day)) / 1e6, _SECONDS, mkt.logf))


def _arrivals(rng, mkt: _Market, n: int, hi: float, burst: float, gap: float) -> np.ndarray:
    """Sorted seconds in [0, hi) of about n events: clusters of mean size `burst` (gaps of
    `gap` s inside) whose starts follow the day's activity curve."""
    if n <= 0:
        return np.empty(0)
    sizes = rng.geometric(1 / burst, size=int(n / burst * 1.5) + 64)
    total = np.cumsum(sizes)
    if total[-1] < n:
        sizes = np.append(sizes, np.ones(n - total[-1], dtype=sizes.dtype))
        total = np.cumsum(sizes)
    k = int(np.searchsorted(total, n)) + 1
    sizes = sizes[:k]
    sizes[-1] -= total[k - 1] - n
    marks = np.cumsum(rng.exponential(size=k + 1))  # sorted uniforms
    starts = np.interp(marks[:k] / marks[-1] * np.interp(hi, _SECONDS, mkt.cum), mkt.cum, _SECONDS)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    gaps = rng.exponential(gap, size=n)
    gaps[first] = 0
    run = np.cumsum(gaps, out=gaps)
    t = np.repeat(starts - run[first], sizes)
    t += run
    t.sort()
    return t[t < hi]


def _stamp(rng, exchange: str, day: dt.date, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local_timestamp, timestamp) in us: arrival in the day, exchange time in ms a few ms
    earlier (lognormal latency with occasional spikes of tens to hundreds of ms)."""
    lat = _LATENCY_MS[exchange] * 1e3 * np.exp(0.5 * rng.standard_normal(t.size))
    spikes = np.zeros(_SEC + 1)
    for _ in range(rng.poisson(3)):
        start = int(rng.integers(0, _SEC))
        spikes[start:start + int(rng.integers(1, 30))] += rng.lognormal(math.log(80), 0.8) * 1e3
    lat += spikes[t.astype(np.int64)]
    local = _day_us(day) + (t * 1e6).astype(np.int64)
    return local, (local - np.maximum(lat, 200).astype(np.int64)) // 1000 * 1000


_TABLE = 1 << 16


@functools.lru_cache(maxsize=64)
def _amounts(median: float, lot: tuple[int, int]) -> pa.Array:
    """A heavy-tailed amount law as 65,536 equally likely decimal texts (whole increments):
    drawing indices into it is ten times cheaper than sampling, and writes as a dictionary."""
    rng = _rng("amounts", median)
    tail = (1 - rng.random(_TABLE)) ** (-1 / 1.7)
    units = np.sort(np.clip(np.rint(median * rng.lognormal(0, 0.8, _TABLE) * tail), 1, median * 5000 + 1))
    return pa.array(units * lot[0] / lot[1]).cast(pa.string())


def _draw(rng, n: int) -> np.ndarray:
    return rng.integers(0, _TABLE, n, dtype=np.uint16)


def _amount_col(index: np.ndarray, median: float, lot: tuple[int, int]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index), _amounts(median, lot))


@functools.lru_cache(maxsize=8)
def _geometric_table(p: float) -> np.ndarray:
    return _rng("geometric", p).geometric(p, 4096).astype(np.int16)


def _geometric(rng, p: float, n: int) -> np.ndarray:
    return _geometric_table(p)[rng.integers(0, 4096, n, dtype=np.uint16)]


def _blocked(draw: Callable, parts: tuple, lo: int, hi: int) -> np.ndarray:
    """draw(rng, m) -> array (..., m), for rows lo..hi, seeded per fixed block of rows."""
    first = lo // _BLOCK
    blocks = [draw(_rng(*parts, b), _BLOCK) for b in range(first, (hi - 1) // _BLOCK + 1)]
    return np.concatenate(blocks, axis=-1)[..., lo - first * _BLOCK: hi - first * _BLOCK]


# --- columns -------------------------------------------------------------------------------------


def _grid_col(units: np.ndarray, grid: tuple[int, int], null: np.ndarray | None = None) -> pa.Array:
    """Decimal values units*increment; dictionary-encoded (fast to write) when the range is small."""
    num, den = grid
    if units.size and units.max() - units.min() < max(4 * units.size, 1 << 16):
        lo = int(units.min())
        words = pa.array(np.arange(lo, int(units.max()) + 1) * num / den).cast(pa.string())
        return pa.DictionaryArray.from_arrays(pa.array((units - lo).astype(np.int32), mask=null), words)
    return pa.array(units * num / den, mask=null)


def _decimals(x: np.ndarray, places: int, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.rint(x * 10.0**places) / 10.0**places, mask=null)


def _words(words: list[str], index: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(words))


def _const(word: str, n: int) -> pa.Array:
    return _words([word], np.zeros(n, dtype=np.int32))


# --- instruments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inst:
    exchange: str
    symbol: str
    base: str
    kind: str
    inverse: bool
    tick: tuple[int, int]
    lot: tuple[int, int]
    expiry_us: int | None
    hi: float  # seconds of the day with data (the day ends early on expiry)
    mkt: _Market
    day: dt.date

    def fair(self, ts: np.ndarray) -> np.ndarray:
        f = _spot(self.mkt, self.day, ts)
        if self.kind == "future":
            return f * np.exp(self.mkt.carry * (self.expiry_us - ts) / _YEAR_US)
        return f * (1 + self.premium) if self.kind == "perpetual" else f

    @property
    def premium(self) -> float:
        return self.mkt.carry * 8 / (24 * 365)

    def trades_count(self, trades_per_day: int) -> int:
        weight = (1.0 if self.base == "BTC" else 0.6) * (0.25 if self.kind == "future" else 1.0)
        share = np.interp(self.hi, _SECONDS, self.mkt.cum) / self.mkt.cum[-1]
        return int(round(trades_per_day * weight * share))

    def median_units(self, notional_usd: float) -> float:
        price = 1.0 if self.inverse else math.exp(self.mkt.logf[0])
        return max(notional_usd / price * self.lot[1] / self.lot[0], 1.0)

    def ids(self, rank: np.ndarray, offset: int) -> pa.Array:
        ids = (self.day - catalog.FIRST_DAY).days * _ID_STRIDE + offset + rank
        if self.exchange != "deribit":
            return pa.array(ids)
        return pc.binary_join_element_wise(f"{self.base}-", pa.array(ids).cast(pa.string()), "")


def validate(exchange: str, data_type: str, day: dt.date | str, symbol: str) -> None:
    """Raise LookupError (unknown venue/symbol/data type) or ValueError (date outside the window)."""
    day = _as_date(day)
    entry = catalog.dataset(exchange, symbol)
    if entry is None:
        raise LookupError(f"unknown symbol {symbol} for {exchange}" if exchange in catalog.VENUES
                          else f"unknown exchange {exchange}")
    if data_type not in entry["dataTypes"]:
        raise LookupError(f"no {data_type} data for {exchange} {symbol}")
    since, until = entry["availableSince"], entry.get("availableTo")
    if day < catalog.iso_day(since) or (until and day >= catalog.iso_day(until)):
        raise ValueError(f"{exchange} {symbol} has data from {since[:10]}"
                         f"{' until ' + until[:10] if until else ''}, not on {day}")


def _inst(exchange: str, symbol: str, day: dt.date) -> _Inst:
    row = as_of(catalog.instrument(exchange, symbol), day)  # the tick and lot of that day
    expiry_us = None
    hi = float(_SEC)
    if "expiry" in row:
        expiry_us = _expiry_us(row)
        hi = min(hi, (expiry_us - _day_us(day)) / 1e6)
    return _Inst(exchange, symbol, row["baseCurrency"], row["type"], bool(row.get("inverse")),
                 _grid(row["priceIncrement"]), _grid(row["amountIncrement"]), expiry_us, hi,
                 _market(row["baseCurrency"], day), day)


# --- data types ----------------------------------------------------------------------------------

_Build = Callable[[int, int], list]  # rows lo..hi -> Arrow columns in header order
_NO_ROWS: tuple[int, _Build] = (0, lambda lo, hi: [])


@dataclass
class _Book:
    """Quote path in exchange-time order plus the snapshot rows in file (local time) order."""

    ts_sorted: np.ndarray
    bid: np.ndarray  # best bid / ask in ticks, exchange-time order
    ask: np.ndarray
    rank: np.ndarray  # file row -> exchange-time index
    local: np.ndarray
    ts: np.ndarray
    bid_size: np.ndarray  # level-0 sizes (indices into _amounts), file order
    ask_size: np.ndarray


def _book(inst: _Inst, n_trades: int) -> _Book:
    rng = _rng("book", inst.exchange, inst.symbol, inst.day, n_trades)
    t = _arrivals(rng, inst.mkt, int(round(3.2 * n_trades)), inst.hi, 2.5, 0.004)
    local, ts = _stamp(rng, inst.exchange, inst.day, t)
    n = ts.size
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    x = inst.fair(ts_sorted)
    x *= inst.tick[1] / inst.tick[0]
    x += rng.normal(0, 0.6, n)
    spread = _geometric(rng, 0.7, n)
    change = rng.random(n) < 0.45  # most updates only change sizes
    change[0] = True
    change[1:] &= ts_sorted[1:] != ts_sorted[:-1]  # same exchange time -> same best prices
    keep = np.maximum.accumulate(np.where(change, np.arange(n), 0))
    x = np.rint(x, out=x) - spread // 2
    bid = x[keep].astype(np.int64)
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    return _Book(ts_sorted, bid, bid + spread[keep], rank, local, ts, _draw(rng, n), _draw(rng, n))


def _book_snapshot_5(inst: _Inst, n_trades: int) -> tuple[int, _Build]:
    book = _book(inst, n_trades)
    median = inst.median_units(_NOTIONAL_USD[inst.kind]) * 3

    def levels(rng, m: int) -> np.ndarray:
        """Rows 0-7: gaps in ticks between levels; rows 8-15: amount indices of levels 1-4."""
        return np.stack([_geometric(rng, 0.55, m) for _ in range(8)] + [_draw(rng, m) for _ in range(8)])

    def build(lo: int, hi: int) -> list:
        m = hi - lo
        draws = _blocked(levels, ("levels", inst.exchange, inst.symbol, inst.day, n_trades), lo, hi)
        r = book.rank[lo:hi]
        ask, bid = book.ask[r], book.bid[r]
        ask_size, bid_size = book.ask_size[lo:hi], book.bid_size[lo:hi]
        cols = [_const(inst.exchange, m), _const(inst.symbol, m), pa.array(book.ts[lo:hi]),
                pa.array(book.local[lo:hi])]
        for level in range(5):
            if level:
                ask, bid = ask + draws[2 * level - 2], bid - draws[2 * level - 1]
                ask_size, bid_size = draws[6 + 2 * level].astype(np.uint16), draws[7 + 2 * level].astype(np.uint16)
            cols += [_grid_col(ask, inst.tick), _amount_col(ask_size, median, inst.lot),
                     _grid_col(bid, inst.tick), _amount_col(bid_size, median, inst.lot)]
        return cols

    return book.ts.size, build


def _quotes(inst: _Inst, n_trades: int) -> tuple[int, _Build]:
    book = _book(inst, n_trades)
    median = inst.median_units(_NOTIONAL_USD[inst.kind]) * 3
    rows = np.flatnonzero(_rng("quotes", inst.exchange, inst.symbol, inst.day).random(book.ts.size) < 0.625)

    def build(lo: int, hi: int) -> list:
        j = rows[lo:hi]
        r = book.rank[j]
        return [_const(inst.exchange, j.size), _const(inst.symbol, j.size), pa.array(book.ts[j]),
                pa.array(book.local[j]), _amount_col(book.ask_size[j], median, inst.lot),
                _grid_col(book.ask[r], inst.tick), _grid_col(book.bid[r], inst.tick),
                _amount_col(book.bid_size[j], median, inst.lot)]

    return rows.size, build


def _at(book: _Book, ts: np.ndarray) -> np.ndarray:
    """Index of the quote in force at each exchange time."""
    return np.maximum(np.searchsorted(book.ts_sorted, ts, "right") - 1, 0)


def _trades(inst: _Inst, n_trades: int) -> tuple[int, _Build]:
    book = _book(inst, n_trades)
    rng = _rng("trades", inst.exchange, inst.symbol, inst.day, n_trades)
    t = _arrivals(rng, inst.mkt, n_trades, inst.hi, 3.0, 0.015)
    local, ts = _stamp(rng, inst.exchange, inst.day, t)
    n = ts.size
    i = _at(book, ts)
    momentum = np.sign(book.bid[i] - book.bid[np.maximum(i - 5, 0)])
    buy = rng.random(n) < 0.5 + 0.2 * momentum
    price = np.where(buy, book.ask[i], book.bid[i])
    median = inst.median_units(_NOTIONAL_USD[inst.kind])
    amount = _draw(rng, n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(ts, kind="stable")] = np.arange(n)

    def build(lo: int, hi: int) -> list:
        s = slice(lo, hi)
        return [_const(inst.exchange, hi - lo), _const(inst.symbol, hi - lo), pa.array(ts[s]), pa.array(local[s]),
                inst.ids(rank[s], 1), _words(["sell", "buy"], buy[s]), _grid_col(price[s], inst.tick),
                _amount_col(amount[s], median, inst.lot)]

    return n, build


def _derivative_ticker(inst: _Inst, n_trades: int) -> tuple[int, _Build]:
    book = _book(inst, n_trades)
    rng = _rng("ticker", inst.exchange, inst.symbol, inst.day, n_trades)
    n = max(n_trades // 20, math.ceil(1440 * inst.hi / _SEC))
    t = (np.arange(n) + 0.5 + rng.uniform(-0.3, 0.3, n)) * inst.hi / n
    local, ts = _stamp(rng, inst.exchange, inst.day, t)
    i = _at(book, ts)
    last = np.where(rng.random(n) < 0.5, book.ask[i], book.bid[i])
    usd = _OPEN_INTEREST_USD[inst.kind] * (1 if inst.base == "BTC" else 0.6)
    d0 = (inst.day - catalog.EPOCH).days
    levels = [usd * math.exp(0.3 * math.sin(2 * math.pi * d / 200 + len(inst.symbol))) for d in (d0, d0 + 1)]
    walk = np.cumsum(rng.normal(0, 0.002, n))
    walk -= np.linspace(0, 1, n) * walk[-1]
    oi_usd = np.interp(t, [0, _SEC], levels) * np.exp(walk)
    oi = np.maximum(np.rint(oi_usd / (1 if inst.inverse else inst.fair(ts)) * inst.lot[1] / inst.lot[0]), 1)
    perp = inst.kind == "perpetual"
    funding = inst.premium + 0.00004 * np.sin(t / 5000 + d0) + rng.normal(0, 2e-6, n)
    predicted = funding + rng.normal(0, 2e-5, n)
    no_funding = np.full(n, not perp)
    no_predicted = no_funding | ((rng.random(n) < 0.5) if inst.exchange == "deribit" else False)

    def build(lo: int, hi: int) -> list:
        s = slice(lo, hi)
        m = hi - lo
        return [_const(inst.exchange, m), _const(inst.symbol, m), pa.array(ts[s]), pa.array(local[s]),
                pa.array((ts[s] // _HOURS8_US + 1) * _HOURS8_US, mask=no_funding[s]),
                _decimals(funding[s], 8, no_funding[s]), _decimals(predicted[s], 8, no_predicted[s]),
                _grid_col(oi[s].astype(np.int64), inst.lot), _grid_col(last[s], inst.tick),
                _decimals(_spot(inst.mkt, inst.day, ts[s]), 2), _decimals(inst.fair(ts[s]), 2)]

    return n, build


def _liquidations(inst: _Inst, n_trades: int) -> tuple[int, _Build]:
    book = _book(inst, n_trades)
    rng = _rng("liquidations", inst.exchange, inst.symbol, inst.day, n_trades)
    minutes = max(int(inst.hi // 60), 1)
    move = np.diff(inst.mkt.logf[: minutes * 60 + 1: 60])
    weight = np.abs(move) ** 3 + 1e-30
    target = int(round(n_trades / 500))
    count = max(target // 3, 1) if target else 0
    at = rng.choice(minutes, size=count, p=weight / weight.sum())
    sizes = rng.poisson(2, count) + 1
    start = np.repeat(at * 60 + rng.random(count) * 50, sizes)
    t = np.sort(start + rng.exponential(0.4, sizes.sum()))
    t = t[t < inst.hi]
    local, ts = _stamp(rng, inst.exchange, inst.day, t)
    n = ts.size
    buy = move[np.minimum(t // 60, minutes - 1).astype(np.int64)] > 0  # shorts squeezed in up moves
    i = _at(book, ts)
    slip = _geometric(rng, 0.3, n)
    price = np.where(buy, book.ask[i] + slip, book.bid[i] - slip)
    median = inst.median_units(_NOTIONAL_USD[inst.kind]) * 4
    amount = _draw(rng, n)

    def build(lo: int, hi: int) -> list:
        s = slice(lo, hi)
        ids = (inst.ids(np.arange(lo, hi), _ID_STRIDE // 2) if inst.exchange == "deribit"
               else pa.nulls(hi - lo, pa.string()))
        return [_const(inst.exchange, hi - lo), _const(inst.symbol, hi - lo), pa.array(ts[s]), pa.array(local[s]),
                ids, _words(["sell", "buy"], buy[s]), _grid_col(price[s], inst.tick),
                _amount_col(amount[s], median, inst.lot)]

    return n, build


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz-Stegun 7.1.26, error < 2e-7): numpy has no erf."""
    z = np.abs(x) / math.sqrt(2)
    u = 1 / (1 + 0.3275911 * z)
    poly = u * (0.254829592 + u * (-0.284496736 + u * (1.421413741 + u * (-1.453152027 + u * 1.061405429))))
    tail = 0.5 * poly * np.exp(-z * z)
    return np.where(x >= 0, 1 - tail, tail)


def _options_chain(day: dt.date, trades_per_day: int) -> tuple[int, _Build]:
    options = catalog.options_on(day)
    if not options:
        return _NO_ROWS
    rng = _rng("options", day, trades_per_day)
    day_us = _day_us(day)
    expiry_us = np.array([_expiry_us(opt) for opt in options])
    hi = np.minimum((expiry_us - day_us) / 1e6, _SEC)
    count = np.maximum(np.rint(trades_per_day / 2 * hi / hi.sum()), 1).astype(np.int64)
    which = np.repeat(np.arange(len(options)), count)
    step = hi / count
    j = np.arange(which.size) - np.repeat(np.cumsum(count) - count, count)
    t = (j + rng.uniform(0.25, 0.75, len(options))[which] + rng.uniform(-0.2, 0.2, which.size)) * step[which]
    order = np.argsort(t, kind="stable")
    t, o = t[order], which[order]
    local, ts = _stamp(rng, "deribit", day, t)
    n = ts.size

    bases = sorted({opt["baseCurrency"] for opt in options})
    base_of = np.array([bases.index(opt["baseCurrency"]) for opt in options])[o]
    strike = np.array([opt["strikePrice"] for opt in options], dtype=np.float64)[o]
    call = np.array([opt["optionType"] == "call" for opt in options])[o]
    tau = np.maximum((expiry_us[o] - ts) / _YEAR_US, 5 / (365 * 24 * 60))
    spot = np.empty(n)
    atm = np.empty(n)
    carry = np.empty(n)
    for b, base in enumerate(bases):
        mkt = _market(base, day)
        sel = base_of == b
        spot[sel] = _spot(mkt, day, ts[sel])
        atm[sel] = mkt.atm_iv * np.exp(-1.5 * (np.log(spot[sel]) - mkt.logf[0]))
        carry[sel] = mkt.carry
    forward = spot * np.exp(carry * tau)
    atm *= 1 + 0.15 * np.exp(-12 * tau)  # short expiries trade richer
    k = np.log(strike / forward) / (atm * np.sqrt(np.maximum(tau, 2 / 365)))
    iv = atm * np.clip(1 - 0.12 * k + 0.06 * k**2, 0.6, 2.5)  # smile, low strikes (puts) richer
    half = np.minimum((0.006 + 0.02 * rng.random(n)) * (1 + np.abs(k)), iv / 2)

    def black76(vol):
        """(forward-measure value in units of the underlying, d1, d2) of each option."""
        sd = vol * np.sqrt(tau)
        d1 = (np.log(forward / strike) + sd**2 / 2) / sd
        d2 = d1 - sd
        value = np.where(call, _norm_cdf(d1) - strike / forward * _norm_cdf(d2),
                         strike / forward * _norm_cdf(-d2) - _norm_cdf(-d1))
        return value, d1, d2

    mark, d1, d2 = black76(iv)
    bid_value, ask_value = black76(iv - half)[0], black76(iv + half)[0]
    bid_ticks = np.floor(bid_value / 0.0001)
    no_bid = bid_ticks < 1
    ask_ticks = np.maximum(np.ceil(ask_value / 0.0001), 1).astype(np.int64)
    pdf = np.exp(-(d1**2) / 2) / math.sqrt(2 * math.pi)
    sqrt_tau = np.sqrt(tau)
    delta = np.where(call, _norm_cdf(d1), _norm_cdf(d1) - 1)
    rho = np.where(call, strike * tau * _norm_cdf(d2), -strike * tau * _norm_cdf(-d2)) / 100
    lots = np.array([_grid(opt["amountIncrement"]) for opt in options])[o]
    oi_day = np.array([[catalog.stable_hash("oi", opt["id"], day + dt.timedelta(days=a)) % 2000 + 10
                        for a in (0, 1)] for opt in options], dtype=np.float64)[o]
    oi = np.rint(oi_day[:, 0] + (oi_day[:, 1] - oi_day[:, 0]) * t / _SEC)
    sizes = np.maximum(np.rint(rng.lognormal(2, 1, (2, n))), 1) * lots[:, 0] / lots[:, 1]
    last = np.maximum(np.rint(mark / 0.0001) + rng.integers(-3, 4, n), 1).astype(np.int64)
    futures = [opt["id"].rsplit("-", 2)[0] for opt in options]  # the future of the same expiry, if listed
    underlying = [f if catalog.instrument("deribit", f) else f"SYN.{f}" for f in futures]
    ids = [opt["id"] for opt in options]
    tick = (1, 10_000)

    def build(lo: int, hi: int) -> list:
        s = slice(lo, hi)
        m = hi - lo
        return [
            _const("deribit", m), _words(ids, o[s]), pa.array(ts[s]), pa.array(local[s]),
            _words(["put", "call"], call[s]), _decimals(strike[s], 2), pa.array(expiry_us[o[s]]),
            pa.array(oi[s] * lots[s, 0] / lots[s, 1]), _grid_col(last[s], tick),
            _grid_col(np.where(no_bid[s], 1, bid_ticks[s]).astype(np.int64), tick, no_bid[s]),
            pa.array(sizes[0, s], mask=no_bid[s]), _decimals((iv[s] - half[s]) * 100, 2, no_bid[s]),
            _grid_col(ask_ticks[s], tick), pa.array(sizes[1, s]),
            _decimals((iv[s] + half[s]) * 100, 2), _decimals(np.maximum(mark[s], 1e-5), 8),
            _decimals(iv[s] * 100, 2), _words(underlying, o[s]), _decimals(forward[s], 2),
            _decimals(delta[s], 5), _decimals(pdf[s] / (forward[s] * iv[s] * sqrt_tau[s]), 5),
            _decimals(forward[s] * pdf[s] * sqrt_tau[s] / 100, 5),
            _decimals(-forward[s] * pdf[s] * iv[s] / (2 * sqrt_tau[s]) / 365, 5), _decimals(rho[s], 5),
        ]

    return n, build


def _frame(exchange: str, data_type: str, day: dt.date, symbol: str, trades_per_day: int) -> tuple[int, _Build]:
    validate(exchange, data_type, day, symbol)
    if trades_per_day <= 0:
        return _NO_ROWS
    if symbol == catalog.OPTIONS_SYMBOL:
        return _options_chain(day, trades_per_day)
    inst = _inst(exchange, symbol, day)
    n_trades = inst.trades_count(trades_per_day) if inst.hi > 0 else 0
    if n_trades <= 0:
        return _NO_ROWS
    maker = {"trades": _trades, "book_snapshot_5": _book_snapshot_5, "quotes": _quotes,
             "derivative_ticker": _derivative_ticker, "liquidations": _liquidations}[data_type]
    return maker(inst, n_trades)


# --- gzip CSV output -----------------------------------------------------------------------------


def _gzip(header: list[str], n: int, build: _Build) -> Iterator[bytes]:
    """One gzip member written pigz-style: chunks are formatted and deflated in parallel and
    joined with sync flushes; CRC and size follow in order. No rows -> empty gzip, no header."""
    if n == 0:
        yield _EMPTY_GZ
        return
    head = (",".join(header) + "\n").encode()

    def work(lo: int) -> tuple[list, bytes]:
        table = pa.Table.from_arrays(build(lo, min(lo + _CHUNK_ROWS, n)), names=header)
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, _CSV)
        parts = ([head] if lo == 0 else []) + [sink.getvalue()]
        deflate = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15)
        return parts, b"".join(deflate.compress(p) for p in parts) + deflate.flush(zlib.Z_SYNC_FLUSH)

    starts = iter(range(0, n, _CHUNK_ROWS))
    pending = collections.deque(_POOL.submit(work, lo) for lo in itertools.islice(starts, _WORKERS + 1))
    crc = size = 0
    yield _GZIP_HEADER
    while pending:
        parts, compressed = pending.popleft().result()
        nxt = next(starts, None)
        if nxt is not None:
            pending.append(_POOL.submit(work, nxt))
        for part in parts:
            crc = zlib.crc32(part, crc)
            size += len(part)
        yield compressed
    yield zlib.compressobj(_LEVEL, zlib.DEFLATED, -15).flush() + struct.pack("<II", crc, size & 0xFFFFFFFF)


def iter_day(exchange: str, data_type: str, date: dt.date | str, symbol: str,
             trades_per_day: int = 20_000) -> Iterator[bytes]:
    """One synthetic day as consecutive pieces of a .csv.gz file (memory stays bounded)."""
    n, build = _frame(exchange, data_type, _as_date(date), symbol, trades_per_day)
    return _gzip(HEADERS[data_type], n, build)


def day_csv_gz(exchange: str, data_type: str, date: dt.date | str, symbol: str,
               trades_per_day: int = 20_000) -> bytes:
    """One synthetic day as .csv.gz bytes, exactly what the sample server sends."""
    return b"".join(iter_day(exchange, data_type, date, symbol, trades_per_day))


def write_day(path: str | os.PathLike, exchange: str, data_type: str, date: dt.date | str, symbol: str,
              trades_per_day: int = 20_000) -> None:
    """Stream one synthetic day to `path` (written under a temporary name, then renamed)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as out:
            for piece in iter_day(exchange, data_type, date, symbol, trades_per_day):
                out.write(piece)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
