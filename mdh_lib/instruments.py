"""Instrument keys, slugs and definition rows built from Tardis metadata.

Key: ``VENUE:TYPE:SYMBOL`` (SPEC section 4). VENUE is the Tardis exchange id upper-cased,
TYPE one of SPOT_PAIR, PERPETUAL, FUTURE, OPTION, SYMBOL ``BASE-QUOTE[-YYMMDD[-STRIKE-CALL|PUT]]``.
Options on Deribit are inverse (premium in the base coin) but struck in USD, so their key's
quote is the strike currency, USD: ``DERIBIT:OPTION:BTC-USD-241227-50000-CALL``.

An options *underlying* (one chain per venue and base coin) is keyed ``DERIBIT:OPTION:BTC``.

Slug (file names): the key with ``:`` written ``_``, e.g. ``BINANCE_SPOT_PAIR_BTC-USDT``;
`key_from_slug` reverses it (the TYPE is found among the known types).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

TARDIS_TYPES = {"spot": "SPOT_PAIR", "perpetual": "PERPETUAL", "future": "FUTURE", "option": "OPTION"}
INSTRUMENT_TYPES = tuple(TARDIS_TYPES.values())

TICK_DATA_TYPES = ("trades", "book_snapshot_5", "derivative_ticker", "liquidations")
OPTIONS_DATA_TYPE = "options_chain"
RAW_DATA_TYPES = TICK_DATA_TYPES + (OPTIONS_DATA_TYPE,)
DATA_TYPES_BY_TYPE = {
    "SPOT_PAIR": ("trades", "book_snapshot_5"),
    "PERPETUAL": TICK_DATA_TYPES,
    "FUTURE": TICK_DATA_TYPES,
    "OPTION": (),  # options come as one grouped chain per underlying, not per contract
}
OPTIONS_GROUP_SYMBOL = "OPTIONS"


class InstrumentError(ValueError):
    """An instrument key, slug or metadata record that cannot be understood."""


@dataclass(frozen=True)
class InstrumentKey:
    venue: str
    type: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.venue}:{self.type}:{self.symbol}"

    @property
    def exchange(self) -> str:
        """The Tardis exchange id."""
        return self.venue.lower()

    @property
    def slug(self) -> str:
        return str(self).replace(":", "_")

    @property
    def base(self) -> str:
        return self.symbol.split("-")[0]

    @classmethod
    def parse(cls, text: str) -> "InstrumentKey":
        parts = text.strip().split(":")
        if len(parts) != 3 or parts[1].upper() not in INSTRUMENT_TYPES or not parts[0] or not parts[2]:
            raise InstrumentError(
                f"not an instrument key: {text!r} (expected VENUE:TYPE:SYMBOL, TYPE one of {', '.join(INSTRUMENT_TYPES)})"
            )
        return cls(parts[0].upper(), parts[1].upper(), parts[2].upper())


def key_from_slug(slug: str) -> InstrumentKey:
    for t in INSTRUMENT_TYPES:
        marker = f"_{t}_"
        if marker in slug:
            venue, symbol = slug.split(marker, 1)
            return InstrumentKey(venue, t, symbol)
    raise InstrumentError(f"not an instrument slug: {slug!r}")


def underlying_key(exchange: str, base: str) -> InstrumentKey:
    return InstrumentKey(exchange.upper(), "OPTION", base.upper())


def _iso_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def _number(value) -> str:
    return format(Decimal(str(value)).normalize(), "f")


def instrument_key(record: dict) -> InstrumentKey:
    """The key of one record of Tardis's ``/v1/instruments/{exchange}`` (or of `symbol_record`:
    without a base and quote the key's SYMBOL is the exchange symbol itself)."""
    try:
        kind = TARDIS_TYPES[record["type"]]
    except KeyError as exc:
        raise InstrumentError(f"unsupported instrument type {record.get('type')!r} for {record.get('id')!r}") from exc
    base, quote = (record.get("baseCurrency") or "").upper(), (record.get("quoteCurrency") or "").upper()
    if not base or not quote:
        return InstrumentKey(record["exchange"].upper(), kind, _key_safe(record["id"]))
    if kind == "OPTION" and quote == base:
        quote = "USD"
    parts = [base, quote]
    if kind in ("FUTURE", "OPTION"):
        expiry = _iso_time(record.get("expiry"))
        if expiry is None:
            raise InstrumentError(f"{record['id']}: a {record['type']} without expiry")
        parts.append(expiry.strftime("%y%m%d"))
    if kind == "OPTION":
        parts += [_number(record["strikePrice"]), record["optionType"].upper()]
    return InstrumentKey(record["exchange"].upper(), kind, "-".join(parts))


def _key_safe(symbol: str) -> str:
    """An exchange symbol as a key's SYMBOL (upper-cased; ``:``, ``/`` and ``_`` written ``-``)."""
    return re.sub(r"[:/_]", "-", symbol.upper())


# Fields that Tardis's ``changes`` records may carry (each the value that held until ``until``).
CHANGE_FIELDS = ("priceIncrement", "amountIncrement", "minTradeAmount", "contractMultiplier", "makerFee", "takerFee")


def as_of(record: dict, date: dt.date) -> dict:
    """The record with the values in force at the start (00:00 UTC) of ``date``.

    Tardis gives an instrument's current values plus ``changes``: each change lists values
    that held *until* its ``until`` time (exclusive). So the value of a field at time t is the
    one of the earliest change with ``until`` > t that names the field, else the current one.
    A change whose ``until`` falls inside the day (BitMEX XBTUSD's amount increment on
    2021-06-08 04:30) still rules that whole day: a day's definition is its state at 00:00
    UTC, one value per day, the same however often the day is rebuilt.
    """
    changes = record.get("changes") or []
    if not changes:
        return record
    start = dt.datetime.combine(date, dt.time(), dt.timezone.utc)
    out = dict(record)
    for change in sorted(changes, key=lambda c: _iso_time(c["until"]), reverse=True):
        if _iso_time(change["until"]) <= start:
            break  # this and every older change ended before the day began
        out.update({k: v for k, v in change.items() if k != "until"})
    return out


def settlement_currency(record: dict) -> str | None:
    """What a contract settles in: Tardis's ``settlementCurrency`` when it states one (quanto
    contracts such as BitMEX ETHUSD settle in BTC), else the base coin for an inverse contract
    (Deribit BTC-PERPETUAL settles in BTC, not USD), else the quote (linear contracts, spot);
    None for a quanto contract whose settlement Tardis does not state."""
    stated = record.get("settlementCurrency")
    if stated:
        return stated.upper()
    if record.get("quanto"):
        return None
    currency = record.get("baseCurrency") if record.get("inverse") else record.get("quoteCurrency")
    return currency.upper() if currency else None


# What a symbol alone can tell (`symbol_record`): quote currencies to split a run-together
# pair (longest first), expiry codes, and the grouped files that are no instrument.
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "USD", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_PERPETUAL_WORDS = {"PERPETUAL", "PERP", "SWAP"}
GROUP_SYMBOLS = {"PERPETUALS", "FUTURES", "OPTIONS", "SPOT", "COMBOS", "OPTIONS-PERPETUALS"}


def _expiry_day(token: str) -> dt.date | None:
    """27DEC24 (Deribit) or 240628 (Binance, OKX) as a date; None for anything else."""
    try:
        if m := re.fullmatch(r"(\d{1,2})([A-Z]{3})(\d{2})", token):
            if m[2] in _MONTHS:
                return dt.date(2000 + int(m[3]), _MONTHS.index(m[2]) + 1, int(m[1]))
        elif m := re.fullmatch(r"(\d{2})(\d{2})(\d{2})", token):
            return dt.date(2000 + int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        pass
    return None


def _split_pair(text: str) -> tuple[str | None, str | None]:
    quote = next((q for q in _QUOTES if text.endswith(q) and len(text) > len(q)), None)
    return (text[: -len(quote)], quote) if quote else (None, None)


def symbol_record(exchange: str, entry: dict) -> dict | None:
    """A Tardis-shaped record for one ``availableSymbols`` entry of ``/v1/exchanges/{exchange}``
    (``id, type, availableSince, availableTo?``): what the free API gives when
    ``/v1/instruments`` needs a paid key. Base, quote, expiry day, strike and option type are
    read from the symbol (``BTC-PERPETUAL``, ``BTC_USDC-PERPETUAL``, ``BTC-27DEC24-50000-C``,
    ``BTCUSDT``, ``BTCUSDT_240628``, ``XBTUSD``; XBT is written BTC as Tardis does; a Deribit
    coin contract without a quote is quoted in USD, its options in the coin as Tardis lists
    them); when the symbol does not tell all the key needs, base and quote stay None and the
    key's SYMBOL is the exchange symbol. The expiry is the symbol's day at 00:00 UTC (the hour
    is not in it). Tick size, amount increment, contract multiplier, inverse, settlement and
    fees are absent. None for grouped files (``OPTIONS``) and types outside SPEC section 4."""
    symbol, kind = entry["id"], entry.get("type")
    if kind not in TARDIS_TYPES or symbol.upper() in GROUP_SYMBOLS:
        return None
    tokens = [t for t in re.split(r"[-_/:]", symbol.upper()) if t]
    head, expiry, strike, option_type = [], None, None, None
    for i, token in enumerate(tokens):
        day = _expiry_day(token) if i else None
        if day is not None:
            expiry = day
            rest = tokens[i + 1:]
            if len(rest) == 2 and rest[1] in ("C", "P", "CALL", "PUT"):
                strike, option_type = rest[0].replace("D", "."), "call" if rest[1].startswith("C") else "put"
            break
        if token in _PERPETUAL_WORDS:
            break
        head.append(token)
    if len(head) >= 2:
        base, quote = head[0], head[1]
    elif len(head) == 1 and exchange.startswith("deribit") and kind != "spot":
        base, quote = head[0], head[0] if kind == "option" else "USD"
    else:
        base, quote = _split_pair(head[0]) if len(head) == 1 else (None, None)
    try:
        strike = float(strike) if strike is not None else None
    except ValueError:
        strike = None
    complete = {"spot": True, "perpetual": True, "future": expiry is not None,
                "option": expiry is not None and strike is not None}[kind]
    if not complete:
        base = quote = None
    record = {"id": symbol, "exchange": exchange, "type": kind, "availableSince": entry.get("availableSince"),
              "baseCurrency": "BTC" if base == "XBT" else base, "quoteCurrency": "BTC" if quote == "XBT" else quote}
    if entry.get("availableTo"):
        record["availableTo"] = entry["availableTo"]
    if expiry is not None:
        record["expiry"] = f"{expiry.isoformat()}T00:00:00.000Z"
    if kind == "option" and complete:
        record.update(strikePrice=int(strike) if strike == int(strike) else strike, optionType=option_type)
    return record


INSTRUMENTS_API = "instruments_api"  # definitions from /v1/instruments (a paid key)
EXCHANGES_API = "exchanges_api"  # definitions from /v1/exchanges availableSymbols (no key needed)

DEFINITION_COLUMNS = (
    "date", "instrument_key", "venue", "instrument_type", "symbol", "exchange", "exchange_symbol",
    "dataset_symbol", "base", "quote", "settlement", "tick_size", "amount_increment", "min_trade_amount",
    "contract_multiplier", "inverse", "expiry", "strike", "option_type", "underlying", "underlying_index",
    "maker_fee", "taker_fee", "available_since", "available_to", "data_types", "source",
)


def _float(value) -> float | None:
    return None if value is None else float(value)


def definition_row(record: dict, date: dt.date, dataset_types: tuple[str, ...] | None = None,
                   source: str = INSTRUMENTS_API) -> dict:
    """One row of the instruments table for ``date``, with the values in force that day
    (`as_of`); ``dataset_types`` narrows the data types to what Tardis lists for the symbol
    (None = the defaults of the instrument type). ``source`` says where the record came from:
    rows of `symbol_record` (EXCHANGES_API) leave what the symbol cannot tell null."""
    record = as_of(record, date)
    key = instrument_key(record)
    types = DATA_TYPES_BY_TYPE[key.type]
    if dataset_types is not None:
        types = tuple(t for t in types if t in dataset_types)
    full = source == INSTRUMENTS_API
    base, quote = record.get("baseCurrency"), record.get("quoteCurrency")
    return {
        "date": date,
        "instrument_key": str(key),
        "venue": key.venue,
        "instrument_type": key.type,
        "symbol": key.symbol,
        "exchange": record["exchange"],
        "exchange_symbol": record["id"],
        "dataset_symbol": record.get("datasetId") or record["id"],
        "base": base.upper() if base else None,
        "quote": quote.upper() if quote else None,
        "settlement": settlement_currency(record) if full else None,
        "tick_size": _float(record.get("priceIncrement")),
        "amount_increment": _float(record.get("amountIncrement")),
        "min_trade_amount": _float(record.get("minTradeAmount") or record.get("amountIncrement")),
        "contract_multiplier": float(record.get("contractMultiplier") or 1.0) if full else None,
        "inverse": bool(record.get("inverse", False)) if full else None,
        "expiry": _iso_time(record.get("expiry")),
        "strike": _float(record.get("strikePrice")),
        "option_type": record.get("optionType"),
        "underlying": str(underlying_key(record["exchange"], base)) if key.type == "OPTION" and base else None,
        "underlying_index": record.get("underlyingIndex"),
        "maker_fee": _float(record.get("makerFee")),
        "taker_fee": _float(record.get("takerFee")),
        "available_since": _iso_time(record.get("availableSince")),
        "available_to": _iso_time(record.get("availableTo")),
        "data_types": list(types),
        "source": source,
    }


def available_on(available_since: dt.datetime | None, available_to: dt.datetime | None, date: dt.date) -> bool:
    """Whether Tardis has data for the whole UTC day ``date`` of an instrument's window."""
    start = dt.datetime.combine(date, dt.time(), dt.timezone.utc)
    if available_since is not None and start < available_since.replace(hour=0, minute=0, second=0, microsecond=0):
        return False
    return available_to is None or start < available_to
