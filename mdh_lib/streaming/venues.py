"""Per-venue websocket details: URL, subscription, message schemas and Tardis's normalisation.

Plain ``websockets`` rather than cryptofeed: cryptofeed fetches symbol lists over REST at
start-up and parses every message one by one in Python, far below the 200,000 trades/s
target. Here each venue only says how to reach its streams and how a *batch* of parsed
messages (polars frames, see `mdh_lib.streaming.ticks.parse_frames`) becomes rows, vectorised.

Venues (the Tardis exchange ids) and streams:

- ``binance`` (spot): ``/stream?streams=<s>@trade/<s>@depth5@100ms``.
- ``binance-futures`` (USDT-M): ``/stream?streams=<s>@trade/<s>@forceOrder/<s>@markPrice@1s/<s>@depth5@100ms``,
  plus open interest polled over REST (`mdh_lib.streaming.rest`), injected into the same
  queue as ``<s>@openInterest`` frames, which is how Tardis records it.
- ``deribit``: JSON-RPC ``public/subscribe`` to ``trades.<I>.100ms``, ``ticker.<I>.100ms`` and
  ``book.<I>.none.10.100ms`` (``raw`` intervals need an authorised connection; ``100ms``
  carries the same trades, grouped).

Normalisation follows tardis-node's mappers (``src/mappers/binance.ts``, ``deribit.ts``), whose
output the Tardis CSV datasets are, so live rows equal the batch ones:

- Binance ``trade``: timestamp = ``T`` (ms -> us), id = ``t``, side = ``sell`` when ``m``
  (the buyer is the maker, so the taker sold) else ``buy``, price = ``p``, amount = ``q``.
  Off-book trades are dropped as Tardis drops them: ``X`` = ``INSURANCE_FUND``, ``ADL`` (and
  ``NA``, a futures trade that did not happen on the book). Spot trades have no ``X``.
- Binance ``forceOrder`` -> liquidations, only ``o.X`` = ``FILLED``: timestamp = ``o.T``,
  side = ``sell`` when ``o.S`` is SELL (a long was liquidated) else ``buy``, price = ``o.ap``
  (the average fill price, which matches the trades), amount = ``o.z`` (filled quantity), no id.
- Binance derivative ticker (as Tardis's pending-ticker state): ``markPriceUpdate`` sets
  mark ``p``, index ``i`` and, when ``r`` is not empty and ``T`` is not 0, funding rate ``r``;
  ``openInterest`` frames set open interest. A row's timestamp is the latest ``E`` seen so far
  (an open-interest row takes the last mark-price time; before any, its receive time mapped
  to exchange time, see `with_ticker_time`). Tardis
  gives no predicted funding rate for Binance (``r`` already is the rate of the coming
  settlement, so it is ``funding_rate``): null, as in batch.
- Binance ``depth5`` -> book_snapshot_5 rows (levels ``b``/``a`` or ``bids``/``asks``):
  timestamp = ``T`` on futures (matching-engine time, as Tardis stamps futures book changes);
  spot partial depth carries no time, so its rows get the receive time mapped to exchange
  time through the measured offset (`mdh_lib.streaming.clock`).
- Deribit trade: timestamp = ``timestamp`` (ms), id = ``trade_id``, side = ``direction``,
  price, amount (USD contracts for inverse perpetuals, as Tardis keeps them). A trade with a
  ``liquidation`` field is also a liquidation: side = ``direction`` when it is ``T`` (the
  taker was liquidated), else the opposite side (``M``, ``MT``: the maker was).
- Deribit ``ticker``: funding rate = ``current_funding``, index, mark, open interest at the
  running maximum of ``timestamp``. ``book``: the first 5 levels of the grouped snapshot.

Symbols: a frame for another instrument than the subscribed one (its stream or channel
name, or the instrument field of its payload) is rejected and counted (``foreign``); fields
the schemas do not name are ignored, so new exchange fields do not break parsing.

``MDH_WS_ENDPOINT_{VENUE}`` (VENUE upper-cased, ``-`` written ``_``) replaces the base URL
(scheme, host, port); the venue's path and query are appended to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

import orjson
import polars as pl

from mdh_lib.candles.derivatives import TICKER_COLUMNS
from mdh_lib.frames import Instrument
from mdh_lib.instruments import InstrumentError, InstrumentKey
from mdh_lib.schemas import BOOK_COLUMNS, RAW_SCHEMAS

TRADE_NAMES = RAW_SCHEMAS["trades"].names
TICKER_SCHEMA = {"timestamp": pl.Int64, "local_timestamp": pl.Int64, **{c: pl.Float64 for c in TICKER_COLUMNS}}
BOOK_SCHEMA = {"timestamp": pl.Int64, "local_timestamp": pl.Int64, **{c: pl.Float64 for c in BOOK_COLUMNS}}
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "EUR", "BTC", "ETH", "BNB")
_PAIR = re.compile(r"[A-Z0-9]{2,12}-[A-Z0-9]{2,12}")
OFF_BOOK = ["INSURANCE_FUND", "ADL", "NA"]


class StreamingError(ValueError):
    """A venue or symbol the live path cannot stream (a bad argument)."""


@dataclass(frozen=True)
class Batch:
    """The rows of one batch of messages: trades and liquidations in the raw trades schema,
    ticker updates (TICKER_SCHEMA; ``timestamp`` null on rows that carry no time of their
    own, see `with_ticker_time`), book snapshots (BOOK_SCHEMA; ``timestamp`` null when the
    venue sends none), and how many messages were malformed (parsed as JSON but missing
    what the event needs), ignored (acks, other events, off-book trades) or foreign (another
    instrument). ``sequence``: the venue's per-instrument trade counter (Binance ``t``,
    Deribit ``trade_seq``) of every trade message, kept ones or not, to find gaps."""

    trades: pl.DataFrame
    liquidations: pl.DataFrame
    ticker: pl.DataFrame
    book: pl.DataFrame
    malformed: int = 0
    ignored: int = 0
    foreign: int = 0
    foreign_symbol: str | None = None
    sequence: pl.DataFrame | None = None  # ``seq``, ``timestamp`` of each trade: the venue's trade counter


def empty_trades() -> pl.DataFrame:
    return pl.DataFrame(schema=dict(zip(TRADE_NAMES, (pl.String, pl.String, pl.Int64, pl.Int64, pl.String,
                                                       pl.String, pl.Float64, pl.Float64))))


def empty_ticker() -> pl.DataFrame:
    return pl.DataFrame(schema=TICKER_SCHEMA)


def empty_book() -> pl.DataFrame:
    return pl.DataFrame(schema=BOOK_SCHEMA)


def _ms(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.Int64) * 1_000


def _rows(frame: pl.DataFrame, instrument: Instrument, **cols: pl.Expr) -> pl.DataFrame:
    """Rows in the raw trades schema from expressions over ``frame``."""
    return frame.select(exchange=pl.lit(instrument.exchange), symbol=pl.lit(instrument.symbol), **cols).select(
        [pl.col(c).cast(t) for c, t in empty_trades().schema.items()])


def _book(frame: pl.DataFrame, timestamp: pl.Expr, bids: str, asks: str) -> pl.DataFrame:
    """book_snapshot_5 rows from level lists ``[[price, amount], ...]`` (best first)."""
    def level(side: str, i: int, field: int) -> pl.Expr:
        return pl.col(side).list.get(i, null_on_oob=True).list.get(field, null_on_oob=True).cast(pl.Float64)

    names = {"asks": asks, "bids": bids}
    return frame.select(timestamp.alias("timestamp"), pl.col("local_timestamp"), *(
        level(names[c.split("[")[0]], int(c[5]), 0 if c.endswith("price") else 1).alias(c) for c in BOOK_COLUMNS))


def _ticker(frame: pl.DataFrame, timestamp: pl.Expr, **values: pl.Expr) -> pl.DataFrame:
    cols = {c: values.get(c, pl.lit(None, pl.Float64)).cast(pl.Float64) for c in TICKER_COLUMNS}
    return frame.select(timestamp=timestamp.cast(pl.Int64), local_timestamp=pl.col("local_timestamp"), **cols)


def with_ticker_time(ticker: pl.DataFrame, last: int | None, offset: int | None) -> pl.DataFrame:
    """Tardis's ticker time: the running maximum of the update times seen so far (``last``
    before this batch). Before any, Tardis takes the receive time; here the receive time is
    mapped to exchange time through the measured ``offset`` (receive - exchange), so a replay
    or an offset clock cannot stamp it outside the exchange's timeline; rows arriving before
    any offset is known are dropped."""
    running = pl.max_horizontal(pl.col("timestamp").cum_max().forward_fill(), pl.lit(last, pl.Int64))
    mapped = pl.col("local_timestamp") - pl.lit(offset, pl.Int64)
    return ticker.with_columns(timestamp=pl.coalesce(running, mapped)).drop_nulls("timestamp")


@dataclass(frozen=True)
class Venue:
    exchange: str  # Tardis exchange id
    instrument_type: str
    default_base: str
    schemas: dict[str, dict]  # route -> polars schema of its messages (unknown fields are ignored)
    route: Callable[[pl.Series], pl.Series]  # raw frames -> the key of each one's schema (a text test)
    path: Callable[[str], str]  # exchange symbol -> path and query
    subscribe: Callable[[str], list[str]]  # exchange symbol -> messages sent after connecting
    normalize: Callable[[dict[str, pl.DataFrame], Instrument], Batch]  # parsed frames per route -> rows
    exchange_symbol: Callable[[str, str], str]  # (base, quote) -> exchange symbol
    pair: Callable[[str], tuple[str, str] | None]  # exchange symbol -> (base, quote)
    rest_base: str | None = None  # REST API base for polled data and gap fills (None: not used)

    @property
    def env(self) -> str:
        return "MDH_WS_ENDPOINT_" + self.exchange.upper().replace("-", "_")

    @property
    def rest_env(self) -> str:
        return "MDH_REST_ENDPOINT_" + self.exchange.upper().replace("-", "_")

    def url(self, symbol: str) -> str:
        """The stream URL: MDH_WS_ENDPOINT_{VENUE} (else the public host) plus the path."""
        base = os.environ.get(self.env) or self.default_base
        if not re.match(r"wss?://[^/\s]+", base):
            raise StreamingError(f"{self.env}={base!r} is not a websocket URL (ws://host:port or wss://host)")
        return base.rstrip("/") + self.path(symbol)

    def rest_url(self) -> str | None:
        """MDH_REST_ENDPOINT_{VENUE}, else the public REST host unless the websocket endpoint is
        redirected (a redirected stream asks nothing else of the exchange); None: no REST."""
        base = os.environ.get(self.rest_env) or (None if os.environ.get(self.env) else self.rest_base)
        if base is not None and not re.match(r"https?://[^/\s]+", base):
            raise StreamingError(f"{self.rest_env}={base!r} is not an HTTP URL (http://host:port or https://host)")
        return base.rstrip("/") if base else None

    def table(self, instrument: Instrument) -> str:
        """``ticks_{venue}_{symbol}`` as a plain identifier, e.g. ``ticks_binance_futures_btcusdt``."""
        return re.sub(r"[^a-z0-9]+", "_", f"ticks_{self.exchange}_{instrument.symbol}".lower()).strip("_")


def _count_foreign(frame: pl.DataFrame, foreign: pl.Expr, names: pl.Expr) -> tuple[int, str | None]:
    hit = frame.filter(foreign)
    return hit.height, (hit.select(names.first()).item() if hit.height else None)


# --- Binance (spot and USDT-M futures): combined streams {"stream": ..., "data": {...}} ----------

_LEVELS = pl.List(pl.List(pl.String))
# One schema per message family, chosen by a text test on the stream name: trades, the bulk
# of the traffic, parse with only their own fields; nested book levels only for book frames.
_BINANCE_SCHEMAS = {
    "trade": {"stream": pl.String, "data": pl.Struct({
        "T": pl.Int64, "s": pl.String, "t": pl.Int64, "p": pl.String, "q": pl.String, "m": pl.Boolean, "X": pl.String,
    })},
    "events": {"stream": pl.String, "data": pl.Struct({
        "E": pl.Int64, "T": pl.Int64, "s": pl.String, "p": pl.String, "i": pl.String, "r": pl.String,
        "o": pl.Struct({"s": pl.String, "S": pl.String, "X": pl.String, "ap": pl.String, "z": pl.String,
                        "T": pl.Int64}),
        "symbol": pl.String, "openInterest": pl.String,
    })},
    "depth": {"stream": pl.String, "data": pl.Struct({
        "E": pl.Int64, "T": pl.Int64, "s": pl.String, "b": _LEVELS, "a": _LEVELS, "bids": _LEVELS, "asks": _LEVELS,
    })},
}


def _binance_route(frames: pl.Series) -> pl.Series:
    return pl.select(pl.when(frames.str.contains('@trade"', literal=True)).then(pl.lit("trade"))
                     .when(frames.str.contains("@depth", literal=True)).then(pl.lit("depth"))
                     .otherwise(pl.lit("events"))).to_series()


def _num(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64, strict=False)


def _binance_own(frame: pl.DataFrame, instrument: Instrument, *names: str) -> tuple[pl.DataFrame, int, str | None]:
    """The frames of the subscribed symbol (by stream name and payload symbol fields), unnested,
    plus how many were for another symbol and one such symbol."""
    d = frame.select(pl.exclude("data"), pl.col("data").struct.unnest())
    stream = pl.col("stream").fill_null("")
    named = pl.coalesce([pl.col(n) for n in names])
    foreign = (stream != "") & (~stream.str.starts_with(instrument.symbol.lower() + "@") | (
        named.is_not_null() & (named != instrument.symbol)))
    n_foreign, foreign_symbol = _count_foreign(d, foreign, pl.coalesce(named, stream))
    return d.filter(~foreign), n_foreign, foreign_symbol


def _binance_normalize(parsed: dict[str, pl.DataFrame], instrument: Instrument) -> Batch:
    trade_msgs, n_foreign, foreign_symbol = _binance_own(parsed["trade"], instrument, "s")
    d, n, symbol = _binance_own(parsed["events"].with_columns(o_s=pl.col("data").struct.field("o").struct.field("s")),
                                instrument, "s", "o_s", "symbol")
    n_foreign, foreign_symbol = n_foreign + n, foreign_symbol or symbol
    depth, n, symbol = _binance_own(parsed["depth"], instrument, "s")
    n_foreign, foreign_symbol = n_foreign + n, foreign_symbol or symbol

    sequence = trade_msgs.select(seq=pl.col("t"), timestamp=_ms(pl.col("T"))).drop_nulls()
    trade = trade_msgs.filter(~pl.col("X").is_in(OFF_BOOK).fill_null(False)).with_columns(
        price=_num("p"), amount=_num("q"))
    ok = pl.all_horizontal(pl.col("t", "T", "m", "price", "amount").is_not_null())
    trades = _rows(trade.filter(ok), instrument, timestamp=_ms(pl.col("T")), local_timestamp=pl.col("local_timestamp"),
                   id=pl.col("t").cast(pl.String),
                   side=pl.when(pl.col("m")).then(pl.lit("sell")).otherwise(pl.lit("buy")),
                   price="price", amount="amount")

    stream = pl.col("stream").fill_null("")
    force = d.filter(stream.str.ends_with("@forceOrder")).select("local_timestamp", pl.col("o").struct.unnest())
    filled = force.filter(pl.col("X") == "FILLED").with_columns(price=_num("ap"), amount=_num("z"))
    ok = pl.all_horizontal(pl.col("T", "price", "amount").is_not_null()) & pl.col("S").is_in(["BUY", "SELL"])
    liquidations = _rows(filled.filter(ok), instrument, timestamp=_ms(pl.col("T")),
                         local_timestamp=pl.col("local_timestamp"), id=pl.lit(None, pl.String),
                         side=pl.when(pl.col("S") == "SELL").then(pl.lit("sell")).otherwise(pl.lit("buy")),
                         price="price", amount="amount")

    is_mark, is_oi = stream.str.contains("@markPrice", literal=True), stream.str.ends_with("@openInterest")
    tick = d.filter(is_mark | is_oi).with_columns(is_mark=is_mark)
    is_mark = pl.col("is_mark")
    ok = (is_mark & pl.col("E").is_not_null() & _num("p").is_not_null()) | (
        ~is_mark & _num("openInterest").is_not_null())
    funding = is_mark & pl.col("r").is_not_null() & (pl.col("r") != "") & (pl.col("T").fill_null(1) != 0)
    ticker = _ticker(tick.filter(ok), pl.when(is_mark).then(_ms(pl.col("E"))),
                     mark_price=pl.when(is_mark).then(_num("p")), index_price=pl.when(is_mark).then(_num("i")),
                     funding_rate=pl.when(funding).then(_num("r")),
                     open_interest=pl.when(~is_mark).then(_num("openInterest")))

    depth = depth.filter(pl.col("stream").str.contains("@depth", literal=True)).with_columns(
        bid_levels=pl.coalesce("b", "bids"), ask_levels=pl.coalesce("a", "asks"))
    ok = pl.col("bid_levels").is_not_null() & pl.col("ask_levels").is_not_null()
    book = _book(depth.filter(ok), _ms(pl.col("T")), "bid_levels", "ask_levels")

    off_book, not_filled = trade_msgs.height - trade.height, force.height - filled.height
    malformed = (trade.height - trades.height) + (filled.height - liquidations.height) + (
        tick.height - ticker.height) + (depth.height - book.height)
    ignored = off_book + not_filled + d.height - force.height - tick.height
    return Batch(trades, liquidations, ticker, book, malformed, ignored, n_foreign, foreign_symbol, sequence)


def _binance_pair(symbol: str) -> tuple[str, str] | None:
    if not symbol.isalnum():
        return None
    quote = next((q for q in _QUOTES if symbol.endswith(q) and symbol != q), None)
    return (symbol[: -len(quote)], quote) if quote else None


def _binance(exchange: str, kind: str, base: str, streams: tuple[str, ...], rest_base: str | None) -> Venue:
    return Venue(
        exchange=exchange, instrument_type=kind, default_base=base, schemas=_BINANCE_SCHEMAS,
        route=_binance_route,
        path=lambda s: "/stream?streams=" + "/".join(f"{s.lower()}@{name}" for name in streams),
        subscribe=lambda s: [], normalize=_binance_normalize,
        exchange_symbol=lambda b, q: f"{b}{q}", pair=_binance_pair, rest_base=rest_base,
    )


# --- Deribit: JSON-RPC notifications; trades come as a list, ticker and book as an object -------

_DERIBIT_TRADE = pl.Struct({"trade_id": pl.String, "trade_seq": pl.Int64, "timestamp": pl.Int64, "price": pl.Float64,
                            "amount": pl.Float64, "direction": pl.String, "instrument_name": pl.String,
                            "liquidation": pl.String})
_DERIBIT_OBJECT = pl.Struct({
    "timestamp": pl.Int64, "instrument_name": pl.String, "open_interest": pl.Float64, "mark_price": pl.Float64,
    "index_price": pl.Float64, "current_funding": pl.Float64,
    "bids": pl.List(pl.List(pl.Float64)), "asks": pl.List(pl.List(pl.Float64)),
})
_DERIBIT_SCHEMAS = {
    kind: {"method": pl.String, "params": pl.Struct({"channel": pl.String, "data": data})}
    for kind, data in (("trades", pl.List(_DERIBIT_TRADE)), ("object", _DERIBIT_OBJECT))
}
_TRADES_CHANNEL = r'"channel"\s*:\s*"trades\.'


def _deribit_route(frames: pl.Series) -> pl.Series:
    return pl.select(pl.when(frames.str.contains(_TRADES_CHANNEL)).then(pl.lit("trades"))
                     .otherwise(pl.lit("object"))).to_series()


def _deribit_normalize(parsed: dict[str, pl.DataFrame], instrument: Instrument) -> Batch:
    def notes(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("method") == "subscription").select(
            "local_timestamp", pl.col("params").struct.field("channel"), pl.col("params").struct.field("data"))

    sym = instrument.symbol
    channel_foreign = pl.col("channel").str.split(".").list.get(1, null_on_oob=True) != sym
    trades_msgs, objects = notes(parsed["trades"]), notes(parsed["object"])
    n_foreign, foreign_symbol = 0, None
    for frame in (trades_msgs, objects):
        n, s = _count_foreign(frame, channel_foreign, pl.col("channel"))
        n_foreign, foreign_symbol = n_foreign + n, foreign_symbol or s
    trades_msgs = trades_msgs.filter(~channel_foreign & pl.col("channel").str.starts_with("trades."))
    bad_msgs = trades_msgs.filter(pl.col("data").is_null()).height
    rows = trades_msgs.drop_nulls("data").explode("data").drop_nulls("data").select(
        "local_timestamp", pl.col("data").struct.unnest())
    rows_foreign = rows.filter(pl.col("instrument_name").is_not_null() & (pl.col("instrument_name") != sym)).height
    rows = rows.filter(pl.col("instrument_name").is_null() | (pl.col("instrument_name") == sym))
    ok = pl.all_horizontal(pl.col("trade_id", "timestamp", "price", "amount").is_not_null()) & pl.col(
        "direction").is_in(["buy", "sell"])
    good = rows.filter(ok)
    trades = _rows(good, instrument, timestamp=_ms(pl.col("timestamp")), local_timestamp=pl.col("local_timestamp"),
                   id=pl.col("trade_id"), side=pl.col("direction"), price=pl.col("price"), amount=pl.col("amount"))
    liq = good.filter(pl.col("liquidation").is_not_null())
    opposite = pl.when(pl.col("direction") == "buy").then(pl.lit("sell")).otherwise(pl.lit("buy"))
    liquidations = _rows(liq, instrument, timestamp=_ms(pl.col("timestamp")), local_timestamp=pl.col("local_timestamp"),
                         id=pl.col("trade_id"),
                         side=pl.when(pl.col("liquidation") == "T").then(pl.col("direction")).otherwise(opposite),
                         price=pl.col("price"), amount=pl.col("amount"))

    objects = objects.filter(~channel_foreign).select("local_timestamp", "channel", pl.col("data").struct.unnest())
    objects_foreign = objects.filter(pl.col("instrument_name").is_not_null() & (pl.col("instrument_name") != sym))
    objects = objects.filter(pl.col("instrument_name").is_null() | (pl.col("instrument_name") == sym))
    tick = objects.filter(pl.col("channel").str.starts_with("ticker."))
    ok = pl.col("timestamp").is_not_null() & pl.col("mark_price").is_not_null()
    ticker = _ticker(tick.filter(ok), _ms(pl.col("timestamp")), funding_rate=pl.col("current_funding"),
                     open_interest=pl.col("open_interest"), mark_price=pl.col("mark_price"),
                     index_price=pl.col("index_price"))
    books = objects.filter(pl.col("channel").str.starts_with("book."))
    ok = pl.col("timestamp").is_not_null() & pl.col("bids").is_not_null() & pl.col("asks").is_not_null()
    book = _book(books.filter(ok), _ms(pl.col("timestamp")), "bids", "asks")

    malformed = bad_msgs + rows.height - trades.height + tick.height - ticker.height + books.height - book.height
    known = trades_msgs.height + tick.height + books.height + objects_foreign.height
    ignored = parsed["trades"].height + parsed["object"].height - known - n_foreign
    sequence = rows.select(seq=pl.col("trade_seq"), timestamp=_ms(pl.col("timestamp"))).drop_nulls()
    return Batch(trades, liquidations, ticker, book, malformed, ignored,
                 n_foreign + rows_foreign + objects_foreign.height, foreign_symbol, sequence)


def _deribit_symbol(base: str, quote: str) -> str:
    return f"{base}-PERPETUAL" if quote == "USD" else f"{base}_{quote}-PERPETUAL"


def _deribit_pair(symbol: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"([A-Z0-9]+)(?:_([A-Z0-9]+))?-PERPETUAL", symbol)
    return (m[1], m[2] or "USD") if m else None


def _deribit_subscribe(symbol: str) -> list[str]:
    channels = [f"trades.{symbol}.100ms", f"ticker.{symbol}.100ms", f"book.{symbol}.none.10.100ms"]
    return [orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                          "params": {"channels": channels}}).decode()]


VENUES: dict[str, Venue] = {
    "binance": _binance("binance", "SPOT_PAIR", "wss://stream.binance.com:9443", ("trade", "depth5@100ms"),
                        "https://api.binance.com"),
    "binance-futures": _binance("binance-futures", "PERPETUAL", "wss://fstream.binance.com",
                                ("trade", "forceOrder", "markPrice@1s", "depth5@100ms"), "https://fapi.binance.com"),
    "deribit": Venue(
        exchange="deribit", instrument_type="PERPETUAL", default_base="wss://www.deribit.com",
        schemas=_DERIBIT_SCHEMAS, route=_deribit_route, path=lambda s: "/ws/api/v2", subscribe=_deribit_subscribe,
        normalize=_deribit_normalize, exchange_symbol=_deribit_symbol, pair=_deribit_pair,
        rest_base="https://www.deribit.com",
    ),
}


def venue(name: str) -> Venue:
    try:
        return VENUES[name.strip().lower()]
    except KeyError:
        raise StreamingError(f"unknown venue {name!r} (one of {', '.join(VENUES)})") from None


def resolve(v: Venue, symbol: str) -> Instrument:
    """The instrument of ``--symbol`` on venue ``v``, as batch names it: ``BTC-USDT`` (base-quote),
    the exchange symbol (``BTCUSDT``, ``BTC-PERPETUAL``) or the instrument key. Checked for form
    only: listing it would need a REST call, and an unlisted symbol simply streams nothing."""
    text = symbol.strip().upper()
    if ":" in text:
        try:
            key = InstrumentKey.parse(text)
        except InstrumentError as exc:
            raise StreamingError(str(exc)) from None
        if key.exchange != v.exchange or key.type != v.instrument_type or not _PAIR.fullmatch(key.symbol):
            raise StreamingError(
                f"{text}: --venue {v.exchange} streams {v.exchange.upper()}:{v.instrument_type}:BASE-QUOTE")
        base, quote = key.symbol.split("-")
    elif v.pair(text):
        base, quote = v.pair(text)
    elif _PAIR.fullmatch(text):
        base, quote = text.split("-")
    else:
        raise StreamingError(f"unknown symbol {symbol!r} for {v.exchange} (e.g. BTC-USDT, the exchange symbol, "
                             "or an instrument key)")
    key = InstrumentKey(v.exchange.upper(), v.instrument_type, f"{base}-{quote}")
    return Instrument(v.exchange, v.exchange_symbol(base, quote), str(key))
