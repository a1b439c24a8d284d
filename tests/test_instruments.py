"""Instrument keys, slugs, availability and definition rows (real Tardis metadata records)."""

import datetime as dt
import json

import pytest

from conftest import real_file
from mdh_lib.config import Universe, VenueUniverse
from mdh_lib.definitions import build_definitions, expected_partitions
from mdh_lib.instruments import InstrumentError, InstrumentKey, available_on, definition_row, instrument_key, key_from_slug
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
