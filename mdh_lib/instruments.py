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
    """The key of one record of Tardis's ``/v1/instruments/{exchange}``."""
    try:
        kind = TARDIS_TYPES[record["type"]]
    except KeyError as exc:
        raise InstrumentError(f"unsupported instrument type {record.get('type')!r} for {record.get('id')!r}") from exc
    base, quote = record["baseCurrency"].upper(), record["quoteCurrency"].upper()
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


DEFINITION_COLUMNS = (
    "date", "instrument_key", "venue", "instrument_type", "symbol", "exchange", "exchange_symbol",
    "dataset_symbol", "base", "quote", "settlement", "tick_size", "amount_increment", "min_trade_amount",
    "contract_multiplier", "inverse", "expiry", "strike", "option_type", "underlying", "underlying_index",
    "maker_fee", "taker_fee", "available_since", "available_to", "data_types",
)


def definition_row(record: dict, date: dt.date, dataset_types: tuple[str, ...] | None = None) -> dict:
    """One row of the instruments table for ``date``; ``dataset_types`` narrows the data types to
    what Tardis lists for the symbol (None = the defaults of the instrument type)."""
    key = instrument_key(record)
    types = DATA_TYPES_BY_TYPE[key.type]
    if dataset_types is not None:
        types = tuple(t for t in types if t in dataset_types)
    return {
        "date": date,
        "instrument_key": str(key),
        "venue": key.venue,
        "instrument_type": key.type,
        "symbol": key.symbol,
        "exchange": record["exchange"],
        "exchange_symbol": record["id"],
        "dataset_symbol": record.get("datasetId") or record["id"],
        "base": record["baseCurrency"].upper(),
        "quote": record["quoteCurrency"].upper(),
        "settlement": (record.get("settlementCurrency") or record["quoteCurrency"]).upper(),
        "tick_size": float(record["priceIncrement"]),
        "amount_increment": float(record["amountIncrement"]),
        "min_trade_amount": float(record.get("minTradeAmount") or record["amountIncrement"]),
        "contract_multiplier": float(record.get("contractMultiplier") or 1.0),
        "inverse": bool(record.get("inverse", False)),
        "expiry": _iso_time(record.get("expiry")),
        "strike": float(record["strikePrice"]) if record.get("strikePrice") is not None else None,
        "option_type": record.get("optionType"),
        "underlying": str(underlying_key(record["exchange"], record["baseCurrency"])) if key.type == "OPTION" else None,
        "underlying_index": record.get("underlyingIndex"),
        "maker_fee": float(record.get("makerFee") or 0.0),
        "taker_fee": float(record.get("takerFee") or 0.0),
        "available_since": _iso_time(record.get("availableSince")),
        "available_to": _iso_time(record.get("availableTo")),
        "data_types": list(types),
    }


def available_on(available_since: dt.datetime | None, available_to: dt.datetime | None, date: dt.date) -> bool:
    """Whether Tardis has data for the whole UTC day ``date`` of an instrument's window."""
    start = dt.datetime.combine(date, dt.time(), dt.timezone.utc)
    if available_since is not None and start < available_since.replace(hour=0, minute=0, second=0, microsecond=0):
        return False
    return available_to is None or start < available_to
