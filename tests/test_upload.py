"""`mdh bigquery-upload` end to end: Parquet datasets from the pipeline into the warehouse,
twice, leaving exactly one row per candle, on BigQuery (the real client against bqemulator)
and on DuckDB."""

import uuid

import pytest

from mdh_assets.cli import main
from mdh_lib.warehouse import open_warehouse

DAY = ["--start-date", "2024-01-01", "--end-date", "2024-01-01"]
KEYS = {"BINANCE:SPOT_PAIR:BTC-USDT", "BINANCE-FUTURES:PERPETUAL:BTC-USDT", "DERIBIT:PERPETUAL:BTC-USD",
        "DERIBIT:PERPETUAL:ETH-USD"}


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse_url(request, mdh_env, monkeypatch, tmp_path):
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    else:
        emulator = request.getfixturevalue("emulator")
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.host)
        dataset = f"up_{uuid.uuid4().hex[:10]}"
        emulator.client().create_dataset(f"mdh-test.{dataset}")
        url = f"bigquery://mdh-test/{dataset}"
    monkeypatch.setenv("MDH_WAREHOUSE", url)
    return url


def test_upload_twice_leaves_one_row_per_candle(warehouse_url, capsys):
    assert main(["download", *DAY]) == 0
    assert main(["candle-processing", *DAY, "--timeframes", "1m,1h"]) == 0
    for _ in range(2):
        assert main(["bigquery-upload", *DAY, "--timeframes", "1m,1h"]) == 0
    with open_warehouse(warehouse_url) as wh:
        counts = wh.query(f"SELECT instrument_key, COUNT(*) AS n, COUNT(DISTINCT timestamp) AS d "
                          f"FROM {wh.table_ref('candles_1m')} GROUP BY instrument_key").to_dicts()
        assert {r["instrument_key"] for r in counts} == KEYS
        assert all(r["n"] == r["d"] == 1440 for r in counts), counts
        hourly = wh.query(f"SELECT COUNT(*) AS n FROM {wh.table_ref('candles_1h')}").item()
        assert hourly == 24 * len(KEYS)
        assert "candles_15s" not in wh.tables()  # only the timeframes asked for
        if warehouse_url.startswith("bigquery"):
            info = wh.describe("candles_1m")
            assert info["partitioning"] == "DAY(timestamp)" and info["clustering"] == ["exchange", "symbol"]
            assert info["rows"] == 1440 * len(KEYS)
