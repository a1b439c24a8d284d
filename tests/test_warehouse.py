"""The warehouse on both backends: DuckDB on a temporary file, and BigQuery through the real
google-cloud-bigquery client against bqemulator on 127.0.0.1 (started here)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from google.api_core.exceptions import BadRequest
from polars.testing import assert_frame_equal

from mdh_lib.bigquery_client import BigQueryClient
from mdh_lib.warehouse import open_warehouse

UTC = dt.timezone.utc
DAY = dt.date(2024, 1, 2)
BTC, ETH = "BINANCE:SPOT_PAIR:BTC-USDT", "BINANCE:SPOT_PAIR:ETH-USDT"
PROJECT = "mdh-test"


def candles(day: dt.date = DAY, key: str = BTC, n: int = 1440, shift: float = 0.0) -> pl.DataFrame:
    """``n`` 1m candles of ``day`` from midnight UTC, with nulls in a float and the Int64 column."""
    start = dt.datetime.combine(day, dt.time(), UTC)
    grid = pl.datetime_range(start, start + dt.timedelta(minutes=n - 1), "1m", time_zone="UTC", eager=True)
    i = pl.col("i")
    return pl.DataFrame({"timestamp": grid, "i": pl.int_range(n, eager=True)}).select(
        "timestamp", exchange=pl.lit("binance"), symbol=pl.lit(key.rsplit(":", 1)[1].replace("-", "")),
        instrument_key=pl.lit(key), timeframe=pl.lit("1m"),
        open=100.0 + i * 0.01 + shift, close=100.5 + i * 0.01 + shift,
        vwap=pl.when(i % 7 == 0).then(None).otherwise(100.2 + i * 0.01 + shift),
        trade_count=pl.when(i % 11 == 0).then(None).otherwise(i).cast(pl.Int64),
    )


@pytest.fixture()
def isolated(tmp_path, monkeypatch):
    """No warehouse or config file from the developer's environment."""
    monkeypatch.chdir(tmp_path)
    for name in ("MDH_WAREHOUSE", "MDH_CONFIG", "BIGQUERY_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def fresh_dataset(emulator, monkeypatch) -> str:
    """The URL of a new, empty dataset on the emulator, which the warehouse client will use."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator.host)
    dataset = f"t_{uuid.uuid4().hex[:12]}"
    emulator.client().create_dataset(f"{PROJECT}.{dataset}")
    return f"bigquery://{PROJECT}/{dataset}"


@pytest.fixture(params=["duckdb", "bigquery"])
def backend(request, isolated, monkeypatch):
    """The warehouse URL of a fresh, empty warehouse of each backend."""
    if request.param == "duckdb":
        return f"duckdb:///{isolated / 'wh' / 'warehouse.duckdb'}"
    return fresh_dataset(request.getfixturevalue("emulator"), monkeypatch)


@pytest.fixture()
def wh(backend):
    with open_warehouse(backend) as warehouse:
        yield warehouse


def rows(wh, table: str, key: str | None = None, day: dt.date | None = None) -> pl.DataFrame:
    """The rows of ``table`` (optionally of one slice), sorted."""
    where, params = [], {}
    if key:
        where.append(f"instrument_key = {wh.param('key')}")
        params["key"] = key
    if day:
        where.append(f"timestamp >= {wh.param('start')} AND timestamp < {wh.param('end')}")
        params["start"] = dt.datetime.combine(day, dt.time(), UTC)
        params["end"] = params["start"] + dt.timedelta(days=1)
    sql = f"SELECT * FROM {wh.table_ref(table)} {'WHERE ' + ' AND '.join(where) if where else ''}"
    return wh.query(sql + " ORDER BY instrument_key, timestamp", params)


def test_replace_slice_replaces_exactly_its_slice(wh):
    other_instrument, other_day = candles(key=ETH), candles(day=DAY + dt.timedelta(days=1))
    assert wh.replace_slice("candles_1m", other_instrument, date=DAY, instrument_key=ETH) == 1440
    wh.replace_slice("candles_1m", other_day, date=other_day["timestamp"][0].date(), instrument_key=BTC)
    wh.replace_slice("candles_1m", candles(), date=DAY, instrument_key=BTC)
    new = candles(shift=1.0)
    assert wh.replace_slice("candles_1m", new, date=DAY, instrument_key=BTC) == 1440

    assert_frame_equal(rows(wh, "candles_1m", BTC, DAY), new)
    assert_frame_equal(rows(wh, "candles_1m", ETH), other_instrument)
    assert_frame_equal(rows(wh, "candles_1m", BTC, other_day["timestamp"][0].date()), other_day)
    info = wh.describe("candles_1m")
    assert info["rows"] == 3 * 1440
    assert wh.tables() == ["candles_1m"]  # no staging table left behind
    if wh.url.startswith("bigquery"):
        assert info["partitioning"] == "DAY(timestamp)" and info["clustering"] == ["exchange", "symbol"]
    else:  # DuckDB has neither; slices stay in their own row groups (zone maps)
        assert info["partitioning"] is None and info["clustering"] is None


def test_bigquery_table_is_partitioned_and_clustered(isolated, emulator, monkeypatch):
    url = fresh_dataset(emulator, monkeypatch)
    with open_warehouse(url) as wh:
        wh.replace_slice("candles_15s", candles(n=10), date=DAY, instrument_key=BTC)
    meta = emulator.client().get_table(f"{PROJECT}.{url.rsplit('/', 1)[1]}.candles_15s")
    assert (meta.time_partitioning.type_, meta.time_partitioning.field) == ("DAY", "timestamp")
    assert meta.clustering_fields == ["exchange", "symbol"]
    assert {f.name: f.field_type for f in meta.schema}["trade_count"] in ("INTEGER", "INT64")


@pytest.mark.parametrize("bad", [
    pytest.param(lambda f: pl.concat([f, candles(day=DAY + dt.timedelta(days=1), n=1)]), id="next-day-row"),
    pytest.param(lambda f: f.with_columns(instrument_key=pl.lit(ETH)), id="other-instrument"),
    pytest.param(lambda f: f.with_columns(timestamp=pl.lit(None, pl.Datetime("us", "UTC"))), id="null-timestamp"),
    pytest.param(lambda f: f.drop("instrument_key"), id="no-instrument-key"),
])
def test_rows_outside_the_slice_raise_and_change_nothing(wh, bad):
    wh.replace_slice("candles_1m", candles(n=60), date=DAY, instrument_key=BTC)
    with pytest.raises(ValueError, match="slice|columns"):
        wh.replace_slice("candles_1m", bad(candles(shift=5.0)), date=DAY, instrument_key=BTC)
    with pytest.raises(ValueError):
        wh.replace_slice("candles_5m", bad(candles()), date=DAY, instrument_key=BTC)
    assert_frame_equal(rows(wh, "candles_1m"), candles(n=60))
    assert wh.tables() == ["candles_1m"]


def test_rows_lacking_a_column_raise_and_new_columns_are_added(wh):
    """A load may add columns (a newer version's features: older rows read null) but never
    drop one."""
    wh.replace_slice("candles_1m", candles(n=5), date=DAY, instrument_key=BTC)
    with pytest.raises(ValueError, match="lack \\['vwap'\\]"):
        wh.replace_slice("candles_1m", candles(n=5).drop("vwap"), date=DAY, instrument_key=BTC)
    assert rows(wh, "candles_1m").height == 5
    newer = candles(n=5).with_columns(instrument_key=pl.lit(ETH), spread_std=pl.lit(0.5))
    wh.replace_slice("candles_1m", newer, date=DAY, instrument_key=ETH)
    assert rows(wh, "candles_1m", BTC)["spread_std"].to_list() == [None] * 5
    assert rows(wh, "candles_1m", ETH)["spread_std"].to_list() == [0.5] * 5


def test_nulls_int64_large_strings_and_aware_timestamps_round_trip(wh):
    frame = candles(n=120)
    data = frame.with_columns(pl.col("timestamp").dt.convert_time_zone("Asia/Tokyo")).to_arrow()
    assert pa.types.is_large_string(data.schema.field("symbol").type)
    wh.replace_slice("candles_1m", data, date=DAY, instrument_key=BTC)
    back = rows(wh, "candles_1m")
    assert_frame_equal(back, frame)  # same instants, now in UTC; nulls and Int64 kept
    assert back["vwap"].null_count() == frame["vwap"].null_count() > 0
    assert back["trade_count"].null_count() == frame["trade_count"].null_count() > 0


def test_append_adds_rows_and_creates_the_table(wh):
    batch = candles(n=30)
    assert wh.append("candles_live_1m", batch) == 30
    wh.append("candles_live_1m", batch.select(reversed(batch.columns)))  # any column order
    assert rows(wh, "candles_live_1m").height == 60
    if wh.url.startswith("bigquery"):
        assert wh.describe("candles_live_1m")["partitioning"] == "DAY(timestamp)"


def test_get_candles_reads_a_half_open_range(backend):
    with open_warehouse(backend) as wh:
        for day in (DAY, DAY + dt.timedelta(days=1)):
            wh.replace_slice("candles_1m", candles(day=day).reverse(), date=day, instrument_key=BTC)
        wh.replace_slice("candles_1m", candles(key=ETH), date=DAY, instrument_key=ETH)
    bq = BigQueryClient(warehouse_url=backend)

    day = bq.get_candles(instrument_id=BTC, timeframe="1m", start_date=dt.datetime(2024, 1, 2, tzinfo=UTC),
                         end_date=dt.datetime(2024, 1, 3, tzinfo=UTC))
    assert len(day) == 1440
    assert str(day["timestamp"].dtype).endswith("UTC]") and day["timestamp"].is_monotonic_increasing
    assert day["timestamp"].iloc[0] == pd.Timestamp("2024-01-02T00:00Z")
    assert day["timestamp"].iloc[-1] == pd.Timestamp("2024-01-02T23:59Z")
    assert {"timestamp", "symbol", "exchange", "instrument_key", "open", "trade_count"} <= set(day.columns)
    assert set(day["instrument_key"]) == {BTC} and set(day["symbol"]) == {"BTCUSDT"}
    assert str(day["trade_count"].dtype) == "Int64" and day["trade_count"].isna().any()

    naive = bq.get_candles(BTC, "1m", dt.datetime(2024, 1, 2, 0, 0), dt.datetime(2024, 1, 2, 0, 10))
    assert len(naive) == 10 and naive["timestamp"].iloc[-1] == pd.Timestamp("2024-01-02T00:09Z")
    paris = dt.timezone(dt.timedelta(hours=1))
    across = bq.get_candles(BTC, "1m", dt.datetime(2024, 1, 2, 13, tzinfo=paris), dt.datetime(2024, 1, 3, 13, tzinfo=paris))
    assert len(across) == 1440 and across["timestamp"].iloc[0] == pd.Timestamp("2024-01-02T12:00Z")
    assert across["timestamp"].is_unique
    with pytest.raises(ValueError, match="unknown timeframe '2m'"):
        bq.get_candles(BTC, "2m", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))
    with pytest.raises(LookupError, match="candles_5m"):
        bq.get_candles(BTC, "5m", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))
    bq.close()


def test_bigquery_client_picks_its_warehouse(isolated, monkeypatch):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9")  # never Google, should a client be made
    assert BigQueryClient().warehouse.url == "duckdb:///./.mdh/warehouse.duckdb"
    assert BigQueryClient("proj").warehouse.url == "bigquery://proj/market_data"
    assert BigQueryClient("proj", "md").warehouse.url == "bigquery://proj/md"
    monkeypatch.setenv("MDH_WAREHOUSE", "duckdb:///other.duckdb")
    assert BigQueryClient("proj").warehouse.url == "duckdb:///other.duckdb"
    assert BigQueryClient("proj", warehouse_url="bigquery://p/d").warehouse.url == "bigquery://p/d"


def test_concurrent_replace_slice_from_threads(wh):
    errors = []

    def load(key: str) -> None:
        try:
            for shift in range(3):
                wh.replace_slice("candles_1m", candles(key=key, shift=shift), date=DAY, instrument_key=key)
                wh.replace_slice("candles_1m", candles(key=BTC, n=720, shift=shift), date=DAY, instrument_key=BTC)
        except Exception as exc:  # surfaced below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(key,)) for key in (ETH, "BINANCE:SPOT_PAIR:SOL-USDT")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counts = rows(wh, "candles_1m").group_by("instrument_key").agg(pl.len(), pl.col("timestamp").n_unique().alias("u"))
    assert sorted(counts.rows()) == [(BTC, 720, 720), (ETH, 1440, 1440), ("BINANCE:SPOT_PAIR:SOL-USDT", 1440, 1440)]


def test_bigquery_retries_a_merge_that_lost_to_a_concurrent_update(isolated, emulator, monkeypatch):
    """BigQuery fails one of two DML statements touching the same partition ("could not
    serialize access ... concurrent update"). The emulator runs jobs one at a time and never
    does, so this one failure is injected (a mock); the retry then runs on the emulator."""
    with open_warehouse(fresh_dataset(emulator, monkeypatch)) as wh:
        real_query, merges = wh.client.query, []

        def query(sql, **kwargs):
            if sql.startswith("MERGE"):
                merges.append(sql)
                if len(merges) == 1:
                    raise BadRequest("Could not serialize access to table mdh-test:t.candles_1m due to concurrent update")
            return real_query(sql, **kwargs)

        monkeypatch.setattr(wh.client, "query", query)
        wh.replace_slice("candles_1m", candles(), date=DAY, instrument_key=BTC)
        assert len(merges) == 2 and wh.describe("candles_1m")["rows"] == 1440
        assert wh.tables() == ["candles_1m"]


WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_warehouse import BTC, DAY, candles
from mdh_lib.warehouse import open_warehouse
wh, key, gate = open_warehouse(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
(gate / key.replace(":", "_")).touch()
while not (gate / "go").exists():  # start together with the other process
    time.sleep(0.01)
for shift in range(4):
    wh.replace_slice("candles_1m", candles(key=key, shift=shift), date=DAY, instrument_key=key)
    wh.replace_slice("candles_1m", candles(key=BTC, n=720, shift=shift), date=DAY, instrument_key=BTC)
"""


def test_concurrent_replace_slice_from_processes(isolated):
    url, gate = f"duckdb:///{isolated / 'warehouse.duckdb'}", isolated / "gate"
    gate.mkdir()
    keys = (ETH, "BINANCE:SPOT_PAIR:SOL-USDT")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(Path(__file__).parent), url, key, str(gate)],
                              stderr=subprocess.PIPE, text=True) for key in keys]
    deadline = time.monotonic() + 60
    while len(list(gate.iterdir())) < len(keys) and time.monotonic() < deadline and None in [p.poll() for p in procs]:
        time.sleep(0.01)
    (gate / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    counts = open_warehouse(url).query("SELECT instrument_key, count(*), count(DISTINCT timestamp) FROM candles_1m "
                                       "GROUP BY 1 ORDER BY 1")
    assert counts.rows() == [(BTC, 720, 720), (ETH, 1440, 1440), ("BINANCE:SPOT_PAIR:SOL-USDT", 1440, 1440)]
