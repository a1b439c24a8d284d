"""Without a paid key, as on real Tardis without a subscription: the installed `mdh` against a
sample server in free-access mode (no /v1/instruments without a key, first days of months
only). Definitions come from /v1/exchanges, marked with their source, and each command says
once what they lack; days that need a key are named before anything runs."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mdh_lib.layout import dataset_path, raw_path
from mdh_lib.sample_server import SampleServer
from mdh_lib.storage import Storage
from mdh_lib.tardis.client import refuses_without_key

FIRST = ["--start-date", "2024-03-01", "--end-date", "2024-03-01"]
NOTE = "built from /v1/exchanges"
UNIVERSE = (
    '[universe]\nstart_date = "2024-01-01"\n'
    '[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n'
    '[[universe.venues]]\nexchange = "bitmex"\nsymbols = ["XBTUSD", "ETHUSD"]\n'
    '[[universe.venues]]\nexchange = "deribit"\nsymbols = ["BTC-PERPETUAL"]\noption_underlyings = ["BTC"]\n'
)


@pytest.fixture(scope="module")
def free_server():
    with SampleServer(trades_per_day=1_000, free_access=True) as srv:
        yield srv


@pytest.fixture()
def env(tmp_path, monkeypatch, free_server):
    """One user without TARDIS_API_KEY, on the free-access server."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mdh.toml").write_text(UNIVERSE)
    values = {
        "MDH_DATA_ROOT": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster"),
        "TARDIS_DATASETS_ENDPOINT": free_server.endpoint, "TARDIS_API_ENDPOINT": free_server.endpoint,
        "TARDIS_API_KEY": "", "MDH_CONFIG": str(tmp_path / "mdh.toml"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    free_server.clear_requests()
    return values


def mdh(*args: str) -> subprocess.CompletedProcess:
    """The installed console script in a fresh process, as a user runs it."""
    script = Path(sys.executable).with_name("mdh")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy(), cwd=os.getcwd())


def test_instruments_and_download_of_a_first_day_without_a_key(env, free_server):
    run = mdh("instruments", *FIRST)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(NOTE) == 1, run.stderr
    note = next(line for line in run.stderr.splitlines() if NOTE in line)
    assert "binance, bitmex, deribit" in note and "tick size" in note and "contract multiplier" in note
    assert "Traceback" not in run.stderr
    refused = {p for _, p, status in free_server.requests if p.startswith("/v1/instruments/") and status == 401}
    assert refused == {"/v1/instruments/binance", "/v1/instruments/bitmex", "/v1/instruments/deribit"}

    storage = Storage(env["MDH_DATA_ROOT"])
    table = storage.read_parquet(dataset_path(("instruments",), "2024-03-01"))
    rows = {r["instrument_key"]: r for r in table.to_pylist()}
    assert {"BINANCE:SPOT_PAIR:BTC-USDT", "BITMEX:PERPETUAL:BTC-USD", "BITMEX:PERPETUAL:ETH-USD",
            "DERIBIT:PERPETUAL:BTC-USD"} <= set(rows)
    options = [r for r in rows.values() if r["instrument_type"] == "OPTION"]
    assert options and {r["underlying"] for r in options} == {"DERIBIT:OPTION:BTC"}
    assert all(r["strike"] and r["option_type"] in ("call", "put") for r in options)
    assert set(table["source"].to_pylist()) == {"exchanges_api"}
    assert set(table["tick_size"].to_pylist()) == {None} and set(table["settlement"].to_pylist()) == {None}
    assert rows["BITMEX:PERPETUAL:BTC-USD"]["exchange_symbol"] == "XBTUSD"

    free_server.clear_requests()
    run = mdh("download", *FIRST)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count(NOTE) == 1, run.stderr
    files = [(p, status) for _, p, status in free_server.requests if p.endswith(".csv.gz")]
    assert files and {status for _, status in files} == {200}
    for data_type, key in (("trades", "BINANCE:SPOT_PAIR:BTC-USDT"), ("trades", "BITMEX:PERPETUAL:BTC-USD"),
                           ("derivative_ticker", "BITMEX:PERPETUAL:ETH-USD"),
                           ("options_chain", "DERIBIT:OPTION:BTC")):
        assert storage.read_parquet(raw_path(data_type, "2024-03-01", key)).num_rows > 0, (data_type, key)


def test_days_that_need_a_key_are_named_before_anything_runs(env, free_server):
    run = mdh("download", "--start-date", "2024-02-28", "--end-date", "2024-03-03")
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in run.stderr
    assert "4 of these days need a key (2024-02-28..2024-02-29, 2024-03-02..2024-03-03)" in lines[0]
    assert lines[0].startswith("mdh: error: no TARDIS_API_KEY is set") and "set TARDIS_API_KEY" in lines[0]
    assert not [p for _, p, _ in free_server.requests if p.endswith(".csv.gz") or p.startswith("/v1/exchanges")]
    assert not Path(env["MDH_DATA_ROOT"]).exists() and not Path(env["DAGSTER_HOME"]).exists()


def test_instruments_of_a_later_day_are_built_and_the_day_named(env):
    """/v1/exchanges is free, so definitions of any day can be built; the command says which
    days' data will need a key."""
    run = mdh("instruments", "--start-date", "2024-03-02", "--end-date", "2024-03-02")
    assert run.returncode == 0, run.stderr
    assert "1 of these days needs a key (2024-03-02)" in run.stderr
    assert run.stderr.count(NOTE) == 1
    assert Storage(env["MDH_DATA_ROOT"]).read_parquet(dataset_path(("instruments",), "2024-03-02")).num_rows > 0


def test_with_any_key_the_full_metadata_is_used(env, monkeypatch):
    """A paid key: /v1/instruments, its ``changes`` applied for the day, settlement by kind.
    (A fresh process, as everywhere here: the venues' partitions are read from the universe
    when mdh_assets is imported, and this universe is not the other tests'.)"""
    monkeypatch.setenv("TARDIS_API_KEY", "paid-key")
    run = mdh("instruments", "--start-date", "2024-07-31", "--end-date", "2024-08-01")
    assert run.returncode == 0, run.stderr
    assert NOTE not in run.stderr and "paid-key" not in run.stderr + run.stdout
    storage = Storage(env["MDH_DATA_ROOT"])
    before, after = ({r["instrument_key"]: r for r in storage.read_parquet(
        dataset_path(("instruments",), day)).to_pylist()} for day in ("2024-07-31", "2024-08-01"))
    assert {r["source"] for r in before.values()} == {"instruments_api"}
    xbt = "BITMEX:PERPETUAL:BTC-USD"
    assert (before[xbt]["tick_size"], after[xbt]["tick_size"]) == (0.5, 0.1)  # the change of 2024-07-31 04:00
    assert before[xbt]["settlement"] == "BTC" and before["BITMEX:PERPETUAL:ETH-USD"]["settlement"] == "BTC"
    assert before["DERIBIT:PERPETUAL:BTC-USD"]["settlement"] == "BTC"
    assert before["BINANCE:SPOT_PAIR:BTC-USDT"]["settlement"] == "USDT"


def test_sample_server_command_require_key(tmp_path):
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mdh")), "sample-server", "--port", "0",
                             "--trades-per-day", "300", "--require-key"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "only the first day of each month" in line
        endpoint = next(word for word in line.split() if word.startswith("http://"))
        assert refuses_without_key("binance", endpoint=endpoint)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
