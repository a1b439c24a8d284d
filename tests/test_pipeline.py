"""End to end through Dagster and the official tardis-dev client against the sample server:
instruments, raw downloads, the missing-data report, bad input and idempotency."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.csv as pacsv
import pytest

from conftest import lay_out_gz, real_file
from mdh_assets.cli import main
from mdh_lib.layout import raw_path
from mdh_lib.storage import Storage

SPOT = "BINANCE:SPOT_PAIR:BTC-USDT"
PERP = "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
DAY = ["--start-date", "2024-01-01", "--end-date", "2024-01-01"]


def report(capsys, start: str, end: str) -> list[dict]:
    capsys.readouterr()
    assert main(["missing-tick-reports", "--start-date", start, "--end-date", end, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def mdh(*args: str) -> subprocess.CompletedProcess:
    """The installed console script in a fresh process, as a user runs it."""
    script = Path(sys.executable).with_name("mdh")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=240,
                          env=os.environ.copy(), cwd=os.getcwd())


def test_report_then_download_then_report(mdh_env, capsys):
    rows = report(capsys, "2024-01-01", "2024-01-02")
    assert {r["status"] for r in rows} == {"missing"}
    assert {"date", "instrument_key", "data_type", "status"} == set(rows[0])
    spot_types = {r["data_type"] for r in rows if r["instrument_key"] == SPOT}
    assert spot_types == {"trades", "book_snapshot_5"}  # never derivative data for a spot pair
    assert {r["data_type"] for r in rows if r["instrument_key"] == PERP} == {
        "trades", "book_snapshot_5", "derivative_ticker", "liquidations"}
    assert any(r["data_type"] == "options_chain" and r["instrument_key"] == "DERIBIT:OPTION:BTC" for r in rows)

    assert main(["download", *DAY]) == 0
    rows = report(capsys, "2024-01-01", "2024-01-02")
    assert rows and {r["date"] for r in rows} == {"2024-01-02"}
    assert not any(r["instrument_key"] == SPOT and r["data_type"] in ("derivative_ticker", "liquidations") for r in rows)

    storage = Storage(mdh_env["MDH_DATA_ROOT"])
    trades = storage.read_parquet(raw_path("trades", "2024-01-01", SPOT))
    assert trades.num_rows > 1000
    ts = trades["timestamp"].to_pylist()
    assert ts == sorted(ts)
    chain = storage.read_parquet(raw_path("options_chain", "2024-01-01", "DERIBIT:OPTION:BTC"))
    assert chain.num_rows > 0 and all(s.startswith("BTC-") for s in chain["symbol"].to_pylist())


def test_download_fetches_only_what_is_missing(mdh_env, server):
    assert main(["download", *DAY, "--venues", "binance"]) == 0
    server.clear_requests()
    assert main(["download", *DAY, "--venues", "binance"]) == 0
    assert not [p for _, p, _ in server.requests if p.endswith(".csv.gz")]
    assert main(["download", *DAY, "--venues", "binance", "--data-types", "trades", "--force"]) == 0
    assert [p for _, p, _ in server.requests if p.endswith(".csv.gz")] == ["/v1/binance/trades/2024/01/01/BTCUSDT.csv.gz"]


def test_real_file_served_from_data_dir_ingests_value_for_value(tmp_path, monkeypatch):
    from mdh_lib.sample_server import SampleServer

    src = real_file("binance-futures_trades_2020-02-22_BTCUSDT.csv")
    data_dir = tmp_path / "tardis"
    lay_out_gz(src, data_dir, "binance-futures", "trades", "2020-02-22", "BTCUSDT")
    (tmp_path / "mdh.toml").write_text(
        '[universe]\nstart_date = "2020-02-01"\n[[universe.venues]]\nexchange = "binance-futures"\nsymbols = ["BTCUSDT"]\n')
    with SampleServer(data_dir=str(data_dir)) as srv:
        for k, v in {"MDH_DATA_ROOT": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster"),
                     "TARDIS_DATASETS_ENDPOINT": srv.endpoint, "TARDIS_API_ENDPOINT": srv.endpoint,
                     "MDH_CONFIG": str(tmp_path / "mdh.toml")}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        # a fresh process: the universe (and so the first daily partition) is read at start-up
        run = mdh("download", "--start-date", "2020-02-22", "--end-date", "2020-02-22")
        assert run.returncode == 0, run.stderr
    got = Storage(str(tmp_path / "data")).read_parquet(raw_path("trades", "2020-02-22", PERP))
    want = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={"id": "string"}, strings_can_be_null=True))
    assert got.num_rows == want.num_rows == 9_999
    cols = ("timestamp", "local_timestamp", "id", "side", "price", "amount")
    assert sorted(zip(*(got[c].to_pylist() for c in cols))) == sorted(zip(*(want[c].to_pylist() for c in cols)))


def test_truncated_gzip_fails_with_one_line_then_rerun_succeeds(mdh_env, server):
    server.inject("truncated", match="binance/trades/2024/01/01/BTCUSDT")
    run = mdh("download", *DAY, "--venues", "binance", "--data-types", "trades")
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    failed = [line for line in run.stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 1
    assert "binance/trades/2024/01/01/BTCUSDT.csv.gz" in failed[0] and "truncated" in failed[0]
    assert not Storage(mdh_env["MDH_DATA_ROOT"]).exists(raw_path("trades", "2024-01-01", SPOT))

    server.clear_faults()
    run = mdh("download", *DAY, "--venues", "binance", "--data-types", "trades")
    assert run.returncode == 0, run.stderr
    assert Storage(mdh_env["MDH_DATA_ROOT"]).exists(raw_path("trades", "2024-01-01", SPOT))


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("corrupt", {}, "corrupt or truncated"),
        ("wrong_header", {}, "wrong header"),
        ("bad_value", {}, "bad value"),
        ("status", {"status": 401}, "TARDIS_API_KEY"),
        ("status", {"status": 404}, "HTTP 404"),
    ],
)
def test_bad_input_fails_partition_and_keeps_previous_good_file(mdh_env, server, capsys, kind, params, message):
    args = ["download", *DAY, "--venues", "binance", "--data-types", "trades", "--force"]
    assert main(args) == 0
    storage = Storage(mdh_env["MDH_DATA_ROOT"])
    rel = raw_path("trades", "2024-01-01", SPOT)
    before = open(storage.path(rel), "rb").read()

    server.inject(kind, match="binance/trades/2024/01/01/BTCUSDT", **params)
    capsys.readouterr()
    assert main(args) == 1
    stderr = capsys.readouterr().err
    failed = [line for line in stderr.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and message in failed[0] and "BTCUSDT" in failed[0], stderr
    assert open(storage.path(rel), "rb").read() == before
    assert [r["status"] for r in report(capsys, "2024-01-01", "2024-01-01")
            if r["instrument_key"] == SPOT and r["data_type"] == "trades"] == ["failed"]


def test_retryable_errors_then_success_and_idempotent(mdh_env, server):
    server.inject("status", match="binance/trades/2024/01/01", times=1, status=429, retry_after=1)
    server.inject("status", match="binance/book_snapshot_5/2024/01/01", times=1, status=500)
    server.inject("empty", match="binance/trades/2024/01/01")
    args = ["download", *DAY, "--venues", "binance", "--force"]
    assert main(args) == 0
    storage = Storage(mdh_env["MDH_DATA_ROOT"])
    assert storage.read_parquet(raw_path("trades", "2024-01-01", SPOT)).num_rows == 0  # a day without trades
    server.clear_faults()
    assert main(args) == 0
    first = storage.read_parquet(raw_path("book_snapshot_5", "2024-01-01", SPOT))
    assert main(args) == 0
    again = storage.read_parquet(raw_path("book_snapshot_5", "2024-01-01", SPOT))
    assert first.equals(again) and first.num_rows > 0
    assert len(storage.list("raw/book_snapshot_5")) == 1


def test_gcs_storage_root(mdh_env, gcs_emulator, monkeypatch):
    monkeypatch.setenv("MDH_DATA_ROOT", "gs://mdh-test/pipeline")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    assert main(["download", *DAY, "--venues", "binance", "--data-types", "trades"]) == 0
    storage = Storage("gs://mdh-test/pipeline")
    assert storage.read_parquet(raw_path("trades", "2024-01-01", SPOT)).num_rows > 1000
    assert storage.exists("instruments/date=2024-01-01/instruments.parquet")


def test_bad_arguments_get_one_line(mdh_env):
    for args in (["download", "--start-date", "2024-13-01", "--end-date", "2024-01-01"],
                 ["download", "--start-date", "2024-01-02", "--end-date", "2024-01-01"],
                 ["download", *DAY, "--data-types", "candles"],
                 ["missing-tick-reports", *DAY, "--format", "xml"]):
        run = mdh(*args)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_venue_day_keeps_going_past_a_failed_instrument_and_a_rerun_fetches_only_it(mdh_env, server, capsys):
    """One materialization per (day, venue) covers every instrument: a 404 on one file fails
    that instrument alone (manifest, report, `complete` check); the next download fetches only
    what is not ok; instruments the day does not list are never fetched."""
    import json

    from mdh_assets.pipeline import Runtime
    from mdh_lib import manifest
    from mdh_lib.config import load_settings

    assert main(["instruments", *DAY]) == 0
    server.inject("status", match="deribit/trades/2024/01/01/ETH-PERPETUAL", status=404)
    server.clear_requests()
    capsys.readouterr()
    assert main(["download", *DAY, "--venues", "deribit"]) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "raw/trades 2024-01-01 DERIBIT:PERPETUAL:ETH-USD" in failed[0] and "HTTP 404" in failed[0]
    assert not [p for _, p, _ in server.requests if "BTC-231229" in p]  # expired before the day: never listed
    rt = Runtime(load_settings())
    outcomes = manifest.read(rt.storage, ("raw", "trades"), dt.date(2024, 1, 1), "deribit")
    assert outcomes["DERIBIT:PERPETUAL:ETH-USD"].status == "failed" and outcomes["DERIBIT:PERPETUAL:ETH-USD"].attempts == 1
    assert outcomes["DERIBIT:PERPETUAL:BTC-USD"].status == "ok"
    checks = rt.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["raw", "trades"]), "complete")])
    assert list(checks.values())[0].status.value == "FAILED"
    assert main(["missing-tick-reports", *DAY, "--venues", "deribit", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"date": "2024-01-01", "instrument_key": "DERIBIT:PERPETUAL:ETH-USD", "data_type": "trades", "status": "failed"}]

    server.clear_faults()
    server.clear_requests()
    assert main(["download", *DAY, "--venues", "deribit"]) == 0
    assert sorted(p for _, p, _ in server.requests if p.endswith(".csv.gz")) == [
        "/v1/deribit/trades/2024/01/01/ETH-PERPETUAL.csv.gz"]
    assert manifest.read(rt.storage, ("raw", "trades"), dt.date(2024, 1, 1), "deribit")[
        "DERIBIT:PERPETUAL:ETH-USD"].status == "ok"


def test_unknown_symbol_or_venue_is_one_clear_line(mdh_env):
    run = mdh("download", *DAY, "--symbols", "DOGEPEPE")
    assert run.returncode == 2 and run.stderr.strip() == "mdh: error: no instrument of the universe matches symbol 'DOGEPEPE' on these days"
    run = mdh("missing-tick-reports", *DAY, "--venues", "kraken")
    assert run.returncode == 2 and "venue 'kraken' is not in the configured universe" in run.stderr


def test_api_key_never_leaks(tmp_path, monkeypatch, capsys):
    from mdh_assets.pipeline import Runtime
    from mdh_lib.config import load_settings
    from mdh_lib.sample_server import SampleServer

    secret = "sk-test-0123456789abcdef"
    with SampleServer(api_key=secret, trades_per_day=2_000) as srv:
        for k, v in {"MDH_DATA_ROOT": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster"),
                     "TARDIS_DATASETS_ENDPOINT": srv.endpoint, "TARDIS_API_ENDPOINT": srv.endpoint,
                     "TARDIS_API_KEY": secret, "MDH_CONFIG": str(tmp_path / "none.toml")}.items():
            monkeypatch.setenv(k, v)
        (tmp_path / "none.toml").write_text('[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n')
        monkeypatch.chdir(tmp_path)
        assert main(["download", *DAY, "--data-types", "trades"]) == 0
        srv.inject("status", match="binance/book_snapshot_5", status=401)
        assert main(["download", *DAY]) == 1
        monkeypatch.setenv("TARDIS_API_KEY", "")
        assert main(["download", "--start-date", "2024-01-02", "--end-date", "2024-01-02", "--data-types", "trades"]) == 1
    captured = capsys.readouterr()
    assert "API key was refused" in captured.err and "no TARDIS_API_KEY is set" in captured.err
    assert secret not in captured.out + captured.err
    rt = Runtime(load_settings())
    events = [e for run in rt.instance.get_runs() for e in rt.instance.all_logs(run.run_id)]
    assert len(events) > 30 and all(secret not in str(e) for e in events)  # metadata, errors, config
