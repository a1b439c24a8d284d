"""A BigQuery dataset that does not exist is created on the first write (location from
MDH_BQ_LOCATION, default US) instead of failing; an existing one is used as it is. The real
google-cloud-bigquery client against bqemulator (tests/bq_emulator.py)."""

import datetime as dt
import uuid

import polars as pl
import pytest
from google.api_core.exceptions import NotFound

from mdh_lib.warehouse import open_warehouse

KEY = "BINANCE:SPOT_PAIR:BTC-USDT"


def _slice(day: dt.date) -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    return pl.DataFrame({
        "timestamp": [start + dt.timedelta(minutes=i) for i in range(3)],
        "exchange": ["binance"] * 3, "symbol": ["BTCUSDT"] * 3, "instrument_key": [KEY] * 3,
        "close": [1.0, 2.0, 3.0],
    })


@pytest.fixture()
def bq(emulator, monkeypatch):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.host)
    monkeypatch.delenv("MDH_CONFIG", raising=False)
    monkeypatch.delenv("MDH_BQ_LOCATION", raising=False)
    return emulator.client()


@pytest.mark.parametrize("location", ["EU", None])
def test_missing_dataset_is_created_in_the_configured_location(bq, monkeypatch, location):
    if location:
        monkeypatch.setenv("MDH_BQ_LOCATION", location)
    dataset = f"new_{uuid.uuid4().hex[:10]}"
    with pytest.raises(NotFound):
        bq.get_dataset(f"mdh-test.{dataset}")
    with open_warehouse(f"bigquery://mdh-test/{dataset}") as wh:
        assert wh.tables() == []  # reading a dataset that does not exist yet is not an error
        day = dt.date(2024, 1, 2)
        assert wh.replace_slice("candles_1m", _slice(day), date=day, instrument_key=KEY) == 3
        assert wh.replace_slice("candles_1m", _slice(day), date=day, instrument_key=KEY) == 3
        assert wh.tables() == ["candles_1m"]
        assert wh.query(f"SELECT COUNT(*) AS n FROM {wh.table_ref('candles_1m')}").item() == 3
    assert bq.get_dataset(f"mdh-test.{dataset}").location == (location or "US")


def test_existing_dataset_is_used_as_it_is(bq, monkeypatch):
    dataset = f"old_{uuid.uuid4().hex[:10]}"
    existing = bq.create_dataset(f"mdh-test.{dataset}")
    monkeypatch.setenv("MDH_BQ_LOCATION", "asia-northeast1")
    with open_warehouse(f"bigquery://mdh-test/{dataset}") as wh:
        day = dt.date(2024, 1, 3)
        wh.replace_slice("candles_1h", _slice(day), date=day, instrument_key=KEY)
        assert wh.tables() == ["candles_1h"]
    assert bq.get_dataset(f"mdh-test.{dataset}").location == existing.location
