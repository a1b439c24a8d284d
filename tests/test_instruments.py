"""Instrument keys, slugs, availability and definition rows (real Tardis metadata records)."""

import datetime as dt
import json

import pytest

from conftest import real_file
from mdh_lib.config import Universe, VenueUniverse
from mdh_lib.definitions import build_definitions, expected_partitions, fallback_exchanges
from mdh_lib.instruments import (
    InstrumentError, InstrumentKey, as_of, available_on, definition_row, instrument_key, key_from_slug,
    settlement_currency, symbol_record,
)
from mdh_lib.layout import dataset_path, raw_path


def _record(kind: str) -> dict:
    return json.loads(real_file(f"instruments/instrument_{kind}.json").read_text())


@pytest.mark.parametrize(
    "kind, key",
    [
        ("spot", "DERIBIT:SPOT_PAIR:BTC-USDC"),
        ("perpetual", "BITMEX:PERPETUAL:BTC-USD"),
        ("future", "DERIBIT:FUTURE:BTC-USD-250214"),
        ("option", "DERIBIT:OPTION:BTC-USD-250425-200000-PUT"),
    ],
)
def test_keys_from_real_metadata(kind, key):
    assert str(instrument_key(_record(kind))) == key


def test_slug_round_trip_and_layout():
    key = InstrumentKey.parse("binance-futures:perpetual:btc-usdt")
    assert str(key) == "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
    assert key.slug == "BINANCE-FUTURES_PERPETUAL_BTC-USDT"
    assert key_from_slug(key.slug) == key
    assert raw_path("trades", dt.date(2024, 1, 2), key) == "raw/trades/date=2024-01-02/BINANCE-FUTURES_PERPETUAL_BTC-USDT.parquet"
    assert dataset_path(("instruments",), "2024-01-02") == "instruments/date=2024-01-02/instruments.parquet"
    with pytest.raises(InstrumentError):
        InstrumentKey.parse("BTCUSDT")
    with pytest.raises(ValueError):
        dataset_path(("raw", "trades"), "2024-01-02")


def test_definition_row_fields_and_window():
    row = definition_row(_record("future"), dt.date(2025, 2, 1))
    assert row["exchange_symbol"] == "BTC-14FEB25" and row["tick_size"] == 2.5 and row["inverse"] is True
    assert row["data_types"] == ["trades", "book_snapshot_5", "derivative_ticker", "liquidations"]
    assert not available_on(row["available_since"], row["available_to"], dt.date(2025, 1, 30))
    assert available_on(row["available_since"], row["available_to"], dt.date(2025, 1, 31))
    to = dt.datetime(2025, 2, 15, tzinfo=dt.timezone.utc)
    assert available_on(row["available_since"], to, dt.date(2025, 2, 14))
    assert not available_on(row["available_since"], to, dt.date(2025, 2, 15))


def test_spot_pair_never_expects_derivative_data():
    spot = _record("spot")
    universe = Universe(venues=(VenueUniverse("deribit", ("BTC_USDC",)),))
    table = build_definitions(dt.date(2024, 5, 1), universe, {}, {"deribit": [spot]})
    types = {e.data_type for e in expected_partitions(table)}
    assert types == {"trades", "book_snapshot_5"}
    assert build_definitions(dt.date(2023, 4, 23), universe, {}, {"deribit": [spot]}).num_rows == 0


# --- definitions as of the day: Tardis's ``changes`` and settlement --------------------------------

# Record shapes as Tardis's /v1/instruments gives them (the real fixtures cover XBTUSD, a
# Deribit future, option and spot pair; these two complete the contract kinds).
LINEAR_PERPETUAL = {
    "id": "BTCUSDT", "datasetId": "BTCUSDT", "exchange": "binance-futures", "baseCurrency": "BTC",
    "quoteCurrency": "USDT", "type": "perpetual", "active": True, "availableSince": "2019-11-17T00:00:00.000Z",
    "priceIncrement": 0.1, "amountIncrement": 0.001, "minTradeAmount": 0.001, "makerFee": 0.0002,
    "takerFee": 0.0004, "inverse": False, "contractType": "linear_perpetual", "contractMultiplier": 1,
}
QUANTO = {
    "id": "ETHUSD", "datasetId": "ETHUSD", "exchange": "bitmex", "baseCurrency": "ETH", "quoteCurrency": "USD",
    "settlementCurrency": "BTC", "type": "perpetual", "active": True, "availableSince": "2019-03-30T00:00:00.000Z",
    "priceIncrement": 0.05, "amountIncrement": 1, "minTradeAmount": 1, "makerFee": -0.00025, "takerFee": 0.00075,
    "inverse": False, "quanto": True, "contractType": "quanto_perpetual", "contractMultiplier": 0.000001,
}


@pytest.mark.parametrize("day, tick, amount, maker", [
    ("2019-04-01", 0.5, 1.0, 0.0002),    # every change still ahead: the 2019 values
    ("2021-06-08", 0.5, 1.0, 0.0002),    # amount change until 04:30 that day: the day's start rules
    ("2021-06-09", 0.5, 100.0, 0.0002),
    ("2024-07-31", 0.5, 100.0, 0.0002),  # tick change until 04:00 that day
    ("2024-08-01", 0.1, 100.0, 0.0002),
    ("2024-10-21", 0.1, 100.0, 0.0002),
    ("2024-10-22", 0.1, 100.0, 0.0005),  # until 00:00 exactly: ended as the day began
])
def test_bitmex_xbtusd_values_in_force_on_the_day(day, tick, amount, maker):
    row = definition_row(_record("perpetual"), dt.date.fromisoformat(day))
    assert (row["tick_size"], row["amount_increment"], row["min_trade_amount"], row["maker_fee"]) == (
        tick, amount, amount, maker)
    assert row["contract_multiplier"] == 1.0 and row["source"] == "instruments_api"


def test_as_of_leaves_the_record_alone_and_sorts_changes():
    rec = _record("perpetual")
    shuffled = dict(rec, changes=list(reversed(rec["changes"])))
    day = dt.date(2019, 4, 1)
    assert dict(as_of(shuffled, day), changes=None) == dict(as_of(rec, day), changes=None)
    assert rec["priceIncrement"] == 0.1 and rec["amountIncrement"] == 100  # not modified
    assert as_of(rec, dt.date(2025, 1, 1))["amountIncrement"] == 100
    spot = _record("spot")  # Deribit BTC_USDC: 0.01 until 2024-04-02 12:10
    assert definition_row(spot, dt.date(2024, 4, 2))["tick_size"] == 0.01
    assert definition_row(spot, dt.date(2024, 4, 3))["tick_size"] == 1.0


@pytest.mark.parametrize("record, settlement", [
    (lambda: _record("perpetual"), "BTC"),   # BitMEX XBTUSD, inverse, Tardis states BTC
    (lambda: _record("future"), "BTC"),      # Deribit inverse future: no settlementCurrency, the base coin
    (lambda: _record("option"), "BTC"),      # Deribit options settle in the coin too
    (lambda: _record("spot"), "USDC"),
    (lambda: LINEAR_PERPETUAL, "USDT"),      # linear: the quote
    (lambda: QUANTO, "BTC"),                 # quanto: what Tardis states, neither base nor quote
])
def test_settlement_from_the_contract_kind(record, settlement):
    rec = record()
    assert settlement_currency(rec) == settlement
    assert definition_row(rec, dt.date(2025, 2, 1))["settlement"] == settlement
    assert settlement_currency(dict(QUANTO, settlementCurrency=None)) is None  # unstated quanto: unknown


def test_deribit_btc_perpetual_settles_in_btc():
    perpetual = dict(_record("future"), id="BTC-PERPETUAL", datasetId="BTC-PERPETUAL", type="perpetual",
                     contractType="inverse_perpetual", expiry=None)
    row = definition_row(perpetual, dt.date(2025, 2, 1))
    assert row["instrument_key"] == "DERIBIT:PERPETUAL:BTC-USD" and row["quote"] == "USD"
    assert row["settlement"] == "BTC" and row["inverse"] is True


# --- without a paid key: definitions from /v1/exchanges ---------------------------------------------


@pytest.mark.parametrize("exchange, symbol, kind, key, base, quote", [
    ("deribit", "BTC-PERPETUAL", "perpetual", "DERIBIT:PERPETUAL:BTC-USD", "BTC", "USD"),
    ("deribit", "BTC_USDC-PERPETUAL", "perpetual", "DERIBIT:PERPETUAL:BTC-USDC", "BTC", "USDC"),
    ("deribit", "BTC-14FEB25", "future", "DERIBIT:FUTURE:BTC-USD-250214", "BTC", "USD"),
    ("deribit", "BTC-25APR25-200000-P", "option", "DERIBIT:OPTION:BTC-USD-250425-200000-PUT", "BTC", "BTC"),
    ("deribit", "XRP_USDC-30JUN23-0d625-C", "option", "DERIBIT:OPTION:XRP-USDC-230630-0.625-CALL", "XRP", "USDC"),
    ("deribit", "BTC_USDC", "spot", "DERIBIT:SPOT_PAIR:BTC-USDC", "BTC", "USDC"),
    ("binance", "BTCUSDT", "spot", "BINANCE:SPOT_PAIR:BTC-USDT", "BTC", "USDT"),
    ("binance", "BTCFDUSD", "spot", "BINANCE:SPOT_PAIR:BTC-FDUSD", "BTC", "FDUSD"),
    ("binance-futures", "BTCUSDT_240628", "future", "BINANCE-FUTURES:FUTURE:BTC-USDT-240628", "BTC", "USDT"),
    ("bitmex", "XBTUSD", "perpetual", "BITMEX:PERPETUAL:BTC-USD", "BTC", "USD"),
    ("bitmex", "XBTZ24", "future", "BITMEX:FUTURE:XBTZ24", None, None),  # the symbol does not tell: kept as is
])
def test_symbol_records_from_exchange_details(exchange, symbol, kind, key, base, quote):
    rec = symbol_record(exchange, {"id": symbol, "type": kind, "availableSince": "2020-01-01T00:00:00.000Z"})
    row = definition_row(rec, dt.date(2020, 1, 1), source="exchanges_api")
    assert (row["instrument_key"], row["base"], row["quote"]) == (key, base, quote)
    assert row["source"] == "exchanges_api" and row["exchange_symbol"] == symbol
    for missing in ("tick_size", "amount_increment", "min_trade_amount", "contract_multiplier", "inverse",
                    "settlement", "maker_fee", "taker_fee"):
        assert row[missing] is None, missing
    assert symbol_record("deribit", {"id": "OPTIONS", "type": "option"}) is None
    assert symbol_record("deribit", {"id": "BTC-FS-27DEC24_PERP", "type": "combo"}) is None


def test_same_keys_with_or_without_a_paid_key():
    """Switching to a paid key later keeps every instrument key (and so every file name)."""
    for kind in ("spot", "perpetual", "future", "option"):
        rec = _record(kind)
        entry = {k: rec[k] for k in ("id", "type", "availableSince") if k in rec}
        assert instrument_key(symbol_record(rec["exchange"], entry)) == instrument_key(rec)


def test_build_definitions_from_exchange_details_when_instruments_are_refused():
    details = {"deribit": {
        "id": "deribit",
        "availableSymbols": [
            {"id": "btc-perpetual", "type": "perpetual", "availableSince": "2019-03-30T00:00:00.000Z"},
            {"id": "BTC-14FEB25", "type": "future", "availableSince": "2025-01-31T00:00:00.000Z",
             "availableTo": "2025-02-15T00:00:00.000Z"},
            {"id": "BTC-25APR25-200000-P", "type": "option", "availableSince": "2025-01-31T00:00:00.000Z"},
            {"id": "ETH-25APR25-5000-C", "type": "option", "availableSince": "2025-01-31T00:00:00.000Z"},
            {"id": "BTC-FS-28FEB25_PERP", "type": "combo", "availableSince": "2025-01-31T00:00:00.000Z"},
        ],
        "datasets": {"symbols": [
            {"id": "BTC-PERPETUAL", "type": "perpetual", "dataTypes": ["trades", "book_snapshot_5", "quotes"]},
            {"id": "OPTIONS", "type": "option", "dataTypes": ["options_chain"]},
        ]},
    }}
    universe = Universe(venues=(VenueUniverse("deribit", (), option_underlyings=("BTC",)),))
    table = build_definitions(dt.date(2025, 2, 1), universe, details, {"deribit": None})
    rows = {r["instrument_key"]: r for r in table.to_pylist()}
    assert set(rows) == {"DERIBIT:PERPETUAL:BTC-USD", "DERIBIT:FUTURE:BTC-USD-250214",
                         "DERIBIT:OPTION:BTC-USD-250425-200000-PUT"}
    assert {r["source"] for r in rows.values()} == {"exchanges_api"}
    assert rows["DERIBIT:PERPETUAL:BTC-USD"]["data_types"] == ["trades", "book_snapshot_5"]
    assert rows["DERIBIT:PERPETUAL:BTC-USD"]["dataset_symbol"] == "BTC-PERPETUAL"  # the files' spelling
    assert rows["DERIBIT:OPTION:BTC-USD-250425-200000-PUT"]["underlying"] == "DERIBIT:OPTION:BTC"
    assert fallback_exchanges(table) == {"deribit"}
    assert {(e.data_type, e.key) for e in expected_partitions(table)} >= {
        ("trades", "DERIBIT:PERPETUAL:BTC-USD"), ("options_chain", "DERIBIT:OPTION:BTC")}
    with pytest.raises(InstrumentError, match="no symbol NOPE"):
        build_definitions(dt.date(2025, 2, 1), Universe(venues=(VenueUniverse("deribit", ("NOPE",)),)),
                          details, {"deribit": None})
    paid = build_definitions(dt.date(2025, 2, 1), universe, details, {"deribit": [_record("future")]})
    assert paid["source"].to_pylist() == ["instruments_api"] and fallback_exchanges(paid) == set()
