"""Per-venue websocket details: URL, subscription, message schema and Tardis-style normalisation.

Plain ``websockets`` rather than cryptofeed: cryptofeed fetches symbol lists over REST at
start-up (so it needs more from the exchange than the websocket) and parses every message
one by one in Python, far below the 200,000 trades/s target. Here each venue only says how
to reach its stream and how a *batch* of parsed messages (one polars frame, see
`mdh_lib.streaming.ticks.parse_frames`) becomes rows, vectorised.

Venues (the Tardis exchange ids):

- ``binance`` (spot): ``/stream?streams=<symbol>@trade``.
- ``binance-futures`` (USDT-M): ``/stream?streams=<s>@trade/<s>@forceOrder/<s>@markPrice@1s``:
  trades, liquidations, and mark price, index price and funding rate.
- ``deribit``: JSON-RPC ``public/subscribe`` to ``trades.<INSTRUMENT>.100ms`` (the ``raw``
  interval needs an authorised connection; ``100ms`` carries the same trades, grouped).

Normalisation is Tardis's for its CSV datasets, so live rows equal the batch ones:

- Binance ``trade``: timestamp = ``T`` (ms -> us), id = ``t``, side = ``sell`` when ``m``
  (the buyer is the maker, so the taker sold) else ``buy``, price = ``p``, amount = ``q``.
- Binance ``forceOrder`` -> liquidations: timestamp = ``o.T``, side = ``o.S`` lower-cased
  (SELL: a long was liquidated), price = ``o.p``, amount = ``o.z`` (filled quantity), no id.
- Binance ``markPriceUpdate`` -> ticker: timestamp = ``E``, mark_price = ``p``,
  index_price = ``i``, funding_rate = ``r``. Open interest and the predicted funding rate are
  not on these streams (null in live candles).
- Deribit trade: timestamp = ``timestamp`` (ms), id = ``trade_id``, side = ``direction``,
  price, amount (USD contracts for inverse perpetuals, as Tardis keeps them).

``local_timestamp`` is the receive time (microseconds). A replay (`mdh_lib.streaming.replay`)
may carry the original arrival time in a top-level ``local_timestamp`` field next to the
exchange message; it is honoured only when replay clock mode is on (MDH_WS_REPLAY_CLOCK=1),
so a replayed day has the batch ``delay_*`` columns too. No exchange sends that field.

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
from mdh_lib.schemas import RAW_SCHEMAS

TRADE_NAMES = RAW_SCHEMAS["trades"].names
TICKER_SCHEMA = {"timestamp": pl.Int64, **{c: pl.Float64 for c in TICKER_COLUMNS}}
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "EUR", "BTC", "ETH", "BNB")
_PAIR = re.compile(r"[A-Z0-9]{2,12}-[A-Z0-9]{2,12}")


class StreamingError(ValueError):
    """A venue or symbol the live path cannot stream (a bad argument)."""


@dataclass(frozen=True)
class Batch:
    """The rows of one batch of messages: trades and liquidations in the raw trades schema,
    ticker updates (``timestamp`` + TICKER_COLUMNS), and how many messages were malformed
    (parsed as JSON but missing what the event needs) or ignored (acks, other events)."""

    trades: pl.DataFrame
    liquidations: pl.DataFrame
    ticker: pl.DataFrame
    malformed: int
    ignored: int


def empty_trades() -> pl.DataFrame:
    return pl.DataFrame(schema=dict(zip(TRADE_NAMES, (pl.String, pl.String, pl.Int64, pl.Int64, pl.String,
                                                       pl.String, pl.Float64, pl.Float64))))


def empty_ticker() -> pl.DataFrame:
    return pl.DataFrame(schema=TICKER_SCHEMA)


def _ms(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.Int64) * 1_000


def _rows(frame: pl.DataFrame, instrument: Instrument, **cols: pl.Expr) -> pl.DataFrame:
    """Rows in the raw trades schema from expressions over ``frame``."""
    return frame.select(exchange=pl.lit(instrument.exchange), symbol=pl.lit(instrument.symbol), **cols).select(
        [pl.col(c).cast(t) for c, t in empty_trades().schema.items()])


@dataclass(frozen=True)
class Venue:
    exchange: str  # Tardis exchange id
    instrument_type: str
    default_base: str
    schema: dict  # polars schema of one message (unknown fields are ignored)
    path: Callable[[str], str]  # exchange symbol -> path and query
    subscribe: Callable[[str], list[str]]  # exchange symbol -> messages sent after connecting
    normalize: Callable[[pl.DataFrame, Instrument], Batch]  # parsed batch (+ local_timestamp) -> rows
    exchange_symbol: Callable[[str, str], str]  # (base, quote) -> exchange symbol
    pair: Callable[[str], tuple[str, str] | None]  # exchange symbol -> (base, quote)

    @property
    def env(self) -> str:
        return "MDH_WS_ENDPOINT_" + self.exchange.upper().replace("-", "_")

    def url(self, symbol: str) -> str:
        """The stream URL: MDH_WS_ENDPOINT_{VENUE} (else the public host) plus the path."""
        base = os.environ.get(self.env) or self.default_base
        if not re.match(r"wss?://[^/\s]+", base):
            raise StreamingError(f"{self.env}={base!r} is not a websocket URL (ws://host:port or wss://host)")
        return base.rstrip("/") + self.path(symbol)

    def table(self, instrument: Instrument) -> str:
        """``ticks_{venue}_{symbol}`` as a plain identifier, e.g. ``ticks_binance_futures_btcusdt``."""
        return re.sub(r"[^a-z0-9]+", "_", f"ticks_{self.exchange}_{instrument.symbol}".lower()).strip("_")


# --- Binance (spot and USDT-M futures): combined streams {"stream": ..., "data": {...}} ----------

_BINANCE_SCHEMA = {
    "local_timestamp": pl.Int64,
    "data": pl.Struct({
        "e": pl.String, "E": pl.Int64, "t": pl.Int64, "p": pl.String, "q": pl.String, "T": pl.Int64,
        "m": pl.Boolean, "i": pl.String, "r": pl.String,
        "o": pl.Struct({"S": pl.String, "p": pl.String, "z": pl.String, "T": pl.Int64}),
    }),
}


def _num(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64, strict=False)


def _binance_normalize(parsed: pl.DataFrame, instrument: Instrument) -> Batch:
    d = parsed.select("local_timestamp", pl.col("data").struct.unnest())
    trade = d.filter(pl.col("e") == "trade").with_columns(price=_num("p"), amount=_num("q"))
    ok = pl.all_horizontal(pl.col("t", "T", "m", "price", "amount").is_not_null())
    trades = _rows(trade.filter(ok), instrument, timestamp=_ms(pl.col("T")), local_timestamp=pl.col("local_timestamp"),
                   id=pl.col("t").cast(pl.String),
                   side=pl.when(pl.col("m")).then(pl.lit("sell")).otherwise(pl.lit("buy")),
                   price="price", amount="amount")
    force = d.filter(pl.col("e") == "forceOrder").select("local_timestamp", pl.col("o").struct.unnest()).with_columns(
        price=_num("p"), amount=_num("z"))
    ok = pl.all_horizontal(pl.col("T", "price", "amount").is_not_null()) & pl.col("S").is_in(["BUY", "SELL"])
    liquidations = _rows(force.filter(ok), instrument, timestamp=_ms(pl.col("T")),
                         local_timestamp=pl.col("local_timestamp"), id=pl.lit(None, pl.String),
                         side=pl.col("S").str.to_lowercase(), price="price", amount="amount")
    mark = d.filter(pl.col("e") == "markPriceUpdate").with_columns(mark_price=_num("p"))
    ticker = mark.filter(pl.col("E").is_not_null() & pl.col("mark_price").is_not_null()).select(
        timestamp=_ms(pl.col("E")), funding_rate=_num("r"), predicted_funding_rate=pl.lit(None, pl.Float64),
        open_interest=pl.lit(None, pl.Float64), mark_price="mark_price", index_price=_num("i"))
    known = trade.height + force.height + mark.height
    malformed = known - trades.height - liquidations.height - ticker.height
    return Batch(trades, liquidations, ticker, malformed, d.height - known)


def _binance_pair(symbol: str) -> tuple[str, str] | None:
    if not symbol.isalnum():
        return None
    quote = next((q for q in _QUOTES if symbol.endswith(q) and symbol != q), None)
    return (symbol[: -len(quote)], quote) if quote else None


def _binance(exchange: str, kind: str, base: str, streams: tuple[str, ...]) -> Venue:
    return Venue(
        exchange=exchange, instrument_type=kind, default_base=base, schema=_BINANCE_SCHEMA,
        path=lambda s: "/stream?streams=" + "/".join(f"{s.lower()}@{name}" for name in streams),
        subscribe=lambda s: [], normalize=_binance_normalize,
        exchange_symbol=lambda b, q: f"{b}{q}", pair=_binance_pair,
    )


# --- Deribit: JSON-RPC; subscription notifications carry a list of trades ----------------------

_DERIBIT_SCHEMA = {
    "local_timestamp": pl.Int64,
    "method": pl.String,
    "params": pl.Struct({
        "channel": pl.String,
        "data": pl.List(pl.Struct({"trade_id": pl.String, "timestamp": pl.Int64, "price": pl.Float64,
                                   "amount": pl.Float64, "direction": pl.String})),
    }),
}


def _deribit_normalize(parsed: pl.DataFrame, instrument: Instrument) -> Batch:
    notes = parsed.filter(pl.col("method") == "subscription")
    data = notes.select("local_timestamp", pl.col("params").struct.field("channel"),
                        pl.col("params").struct.field("data"))
    trades_msgs = data.filter(pl.col("channel").str.starts_with("trades."))
    bad_msgs = trades_msgs.filter(pl.col("data").is_null()).height
    rows = trades_msgs.drop_nulls("data").explode("data").drop_nulls("data").select(
        "local_timestamp", pl.col("data").struct.unnest())
    ok = pl.all_horizontal(pl.col("trade_id", "timestamp", "price", "amount").is_not_null()) & pl.col(
        "direction").is_in(["buy", "sell"])
    trades = _rows(rows.filter(ok), instrument, timestamp=_ms(pl.col("timestamp")),
                   local_timestamp=pl.col("local_timestamp"), id=pl.col("trade_id"), side=pl.col("direction"),
                   price=pl.col("price"), amount=pl.col("amount"))
    malformed = bad_msgs + rows.height - trades.height
    return Batch(trades, empty_trades(), empty_ticker(), malformed, parsed.height - trades_msgs.height)


def _deribit_symbol(base: str, quote: str) -> str:
    return f"{base}-PERPETUAL" if quote == "USD" else f"{base}_{quote}-PERPETUAL"


def _deribit_pair(symbol: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"([A-Z0-9]+)(?:_([A-Z0-9]+))?-PERPETUAL", symbol)
    return (m[1], m[2] or "USD") if m else None


def _deribit_subscribe(symbol: str) -> list[str]:
    return [orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                          "params": {"channels": [f"trades.{symbol}.100ms"]}}).decode()]


VENUES: dict[str, Venue] = {
    "binance": _binance("binance", "SPOT_PAIR", "wss://stream.binance.com:9443", ("trade",)),
    "binance-futures": _binance("binance-futures", "PERPETUAL", "wss://fstream.binance.com",
                                ("trade", "forceOrder", "markPrice@1s")),
    "deribit": Venue(
        exchange="deribit", instrument_type="PERPETUAL", default_base="wss://www.deribit.com",
        schema=_DERIBIT_SCHEMA, path=lambda s: "/ws/api/v2", subscribe=_deribit_subscribe,
        normalize=_deribit_normalize, exchange_symbol=_deribit_symbol, pair=_deribit_pair,
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
