"""Candles, book, options and MFT features through Dagster: checks pass on good data, fail
(and write nothing) on deliberately broken data; the stored candles equal DuckDB over the
stored raw Parquet."""

import datetime as dt

import duckdb
import pyarrow as pa
import pytest
from dagster import AssetCheckKey, AssetKey

from mdh_assets.cli import main
from mdh_lib.layout import candles_path, dataset_path, raw_path
from mdh_lib.storage import Storage
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES

PERP = "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
SPOT = "BINANCE:SPOT_PAIR:BTC-USDT"
DAYS = ["--start-date", "2024-01-01", "--end-date", "2024-01-02"]
DAY1 = ["--start-date", "2024-01-01", "--end-date", "2024-01-01"]


@pytest.fixture()
def downloaded(mdh_env):
    assert main(["download", *DAYS]) == 0
    return Storage(mdh_env["MDH_DATA_ROOT"])


def _runtime():
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings

    return Runtime(load_settings())


def test_processing_writes_every_dataset_and_checks_pass(downloaded, capsys):
    assert main(["candle-processing", *DAYS]) == 0
    assert main(["mft-processing", *DAYS]) == 0
    out = capsys.readouterr().out
    assert "0 failed." in out and "asset checks:" in out
    for key in (PERP, SPOT):
        for tf in TIMEFRAMES:
            assert downloaded.exists(candles_path(tf, "2024-01-02", key))
            assert downloaded.exists(dataset_path(("book", tf), "2024-01-02", key))
        for tf in MFT_TIMEFRAMES:
            assert downloaded.exists(dataset_path(("features", "mft", tf), "2024-01-02", key))
    assert downloaded.exists(dataset_path(("features", "options"), "2024-01-01", "DERIBIT:OPTION:BTC"))
    rt = _runtime()
    for tf in TIMEFRAMES:
        for name in ("candles", "book"):
            check = AssetCheckKey(AssetKey([name, tf]), "candle_checks" if name == "candles" else "full_grid")
            history = rt.instance.event_log_storage.get_asset_check_execution_history(check, limit=50)
            assert history and all(h.evaluation.passed for h in history if h.evaluation), (name, tf)


def test_stored_candles_equal_duckdb_over_stored_raw(downloaded):
    assert main(["candle-processing", *DAY1, "--symbols", PERP, "--timeframes", "1m,1h"]) == 0
    assert downloaded.exists(candles_path("1m", "2024-01-01", PERP))
    assert not downloaded.exists(candles_path("15s", "2024-01-01", PERP))  # only what was asked
    start = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1e6)
    raw_today = downloaded.path(raw_path("trades", "2024-01-01", PERP))
    raw_next = downloaded.path(raw_path("trades", "2024-01-02", PERP))
    got = duckdb.sql(f"SELECT epoch_us(timestamp) AS b, open, high, low, close, volume, trade_count, delay_median "
                     f"FROM '{downloaded.path(candles_path('1m', '2024-01-01', PERP))}' ORDER BY b").fetchall()
    want = duckdb.sql(f"""
        WITH t AS (SELECT * FROM read_parquet(['{raw_today}', '{raw_next}'], filename=true)
                   WHERE timestamp >= {start} AND timestamp < {start + 86_400_000_000}),
        a AS (SELECT timestamp // 60000000 * 60000000 AS b,
                     arg_min(price, (timestamp, filename, local_timestamp)) AS open, max(price) AS high,
                     min(price) AS low, arg_max(price, (timestamp, filename, local_timestamp)) AS close,
                     sum(amount) AS volume, count(*) AS trade_count,
                     median((local_timestamp - timestamp) / 1000.0) AS delay_median FROM t GROUP BY 1)
        SELECT range AS b, a.* EXCLUDE (b) FROM range({start}, {start + 86_400_000_000}, 60000000) g
        LEFT JOIN a ON a.b = g.range ORDER BY 1""").fetchall()
    assert len(got) == len(want) == 1440
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[6] == (w[6] or 0)
        if w[6]:
            assert g[1:5] == w[1:5] and g[5] == pytest.approx(w[5], rel=1e-12) and g[7] == pytest.approx(w[7])


def test_broken_raw_data_fails_candle_checks_and_writes_nothing(downloaded, capsys):
    rel = raw_path("trades", "2024-01-01", PERP)
    good = downloaded.read_parquet(rel)
    amounts = good["amount"].to_pylist()
    amounts[0] = -1000.0  # deliberately broken on storage, behind the raw checks' back
    downloaded.write_parquet(rel, good.set_column(good.schema.get_field_index("amount"), "amount",
                                                    pa.array(amounts)))
    capsys.readouterr()
    assert main(["candle-processing", *DAY1, "--symbols", PERP]) == 1
    err = capsys.readouterr().err
    assert f"candles/15s 2024-01-01 {PERP}: checks failed for" in err
    assert len([line for line in err.splitlines() if line.startswith("failed")]) == 1  # one line, not one per timeframe
    assert not downloaded.exists(candles_path("1m", "2024-01-01", PERP))
    history = _runtime().instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(["candles", "15s"]), "candle_checks"), limit=5)
    assert history[0].evaluation is not None and not history[0].evaluation.passed


def test_processing_before_download_says_what_to_do(mdh_env, capsys):
    assert main(["instruments", *DAY1]) == 0
    capsys.readouterr()
    assert main(["candle-processing", *DAY1, "--symbols", SPOT]) == 1
    assert f"candles 2024-01-01 {SPOT}: raw/trades is not downloaded; run mdh download first" in capsys.readouterr().err


def test_candle_processing_builds_what_each_instrument_has(tmp_path, monkeypatch, capsys):
    """A spot pair listed with trades only gets candles and no book failure; one listed with
    book snapshots only gets book features (the files a data folder holds decide)."""
    from mdh_assets.cli import main
    from mdh_lib.sample_server import SampleServer
    from mdh_lib.sample_server.synthetic import write_day

    data = tmp_path / "tardis" / "binance"
    write_day(data / "trades" / "2024" / "01" / "02" / "BTCUSDT.csv.gz", "binance", "trades", "2024-01-02", "BTCUSDT", 2_000)
    write_day(data / "book_snapshot_5" / "2024" / "01" / "02" / "ETHUSDT.csv.gz", "binance", "book_snapshot_5",
              "2024-01-02", "ETHUSDT", 2_000)
    (tmp_path / "mdh.toml").write_text('[universe]\nstart_date = "2024-01-01"\n'
                                       '[[universe.venues]]\nexchange = "binance"\nsymbols = []\n')
    monkeypatch.chdir(tmp_path)
    with SampleServer(data_dir=tmp_path / "tardis") as server:
        for name, value in (("MDH_DATA_ROOT", tmp_path / "data"), ("DAGSTER_HOME", tmp_path / "dagster"),
                            ("MDH_CONFIG", tmp_path / "mdh.toml"), ("TARDIS_DATASETS_ENDPOINT", server.endpoint),
                            ("TARDIS_API_ENDPOINT", server.endpoint)):
            monkeypatch.setenv(name, str(value))
        day = ["--start-date", "2024-01-02", "--end-date", "2024-01-02"]
        assert main(["download", *day]) == 0
        capsys.readouterr()
        assert main(["candle-processing", *day, "--timeframes", "1m"]) == 0, capsys.readouterr().err
    root = tmp_path / "data"
    assert [p.name for p in (root / "candles" / "1m" / "date=2024-01-02").iterdir()] == ["BINANCE_SPOT_PAIR_BTC-USDT.parquet"]
    assert [p.name for p in (root / "book" / "1m" / "date=2024-01-02").iterdir()] == ["BINANCE_SPOT_PAIR_ETH-USDT.parquet"]
