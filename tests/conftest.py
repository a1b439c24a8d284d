"""Shared fixtures: real local servers on 127.0.0.1 started by the tests themselves, and an
isolated data root and Dagster instance per test."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
# Raw retention is off by default; a developer's MDH_RAW_RETENTION_DAYS must not expire the
# tests' 2020 and 2024 days (the retention tests set it themselves).
os.environ["MDH_RAW_RETENTION_DAYS"] = "0"
# `mdh` commands that tests start run in their own process: no fork server outlives the suite
# (tests/test_forkserver.py starts and stops its own).
os.environ["MDH_FORKSERVER"] = "0"
REPO = Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "fixtures" / "tardis-real"


def real_file(name: str) -> Path:
    """A real Tardis file from ../shared/fixtures (never copied into the repo)."""
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real Tardis fixture {name} not found at {REAL} (it lives only in ../shared)")
    return path


def lay_out_gz(src: Path, data_dir: Path, exchange: str, data_type: str, date: str, symbol: str) -> Path:
    """Gzip a real CSV into the Tardis URL layout under ``data_dir`` (at test time, in tmp)."""
    y, m, d = date.split("-")
    dest = data_dir / exchange / data_type / y / m / d / f"{symbol}.csv.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, gzip.open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dest


@pytest.fixture(scope="session")
def sample_server():
    from mdh_lib.sample_server import SampleServer

    with SampleServer(trades_per_day=4_000) as srv:
        yield srv


@pytest.fixture()
def server(sample_server):
    """The session's sample server with faults and the request log cleared."""
    sample_server.clear_faults()
    sample_server.clear_requests()
    yield sample_server
    sample_server.clear_faults()


@pytest.fixture()
def mdh_env(tmp_path, monkeypatch, server):
    """Environment of one user: own data root, Dagster home, endpoints on the sample server."""
    monkeypatch.chdir(tmp_path)
    env = {
        "MDH_DATA_ROOT": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "TARDIS_DATASETS_ENDPOINT": server.endpoint,
        "TARDIS_API_ENDPOINT": server.endpoint,
        "TARDIS_API_KEY": "",
        "MDH_CONFIG": str(tmp_path / "mdh.toml"),
    }
    (tmp_path / "mdh.toml").write_text(
        '[universe]\nstart_date = "2024-01-01"\n'
        '[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n'
        '[[universe.venues]]\nexchange = "binance-futures"\nsymbols = ["BTCUSDT"]\n'
        '[[universe.venues]]\nexchange = "deribit"\nsymbols = []\ninstrument_types = ["PERPETUAL"]\noption_underlyings = ["BTC"]\n'
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(scope="session")
def gcs_emulator():
    """gcp-storage-emulator on 127.0.0.1 (in memory) with a bucket ``mdh-test``."""
    from gcp_storage_emulator.server import create_server

    srv = create_server("127.0.0.1", 0, in_memory=True, default_bucket="mdh-test")
    srv.start()
    host = f"http://127.0.0.1:{srv._api._httpd.server_address[1]}"
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    yield host
    srv.stop()


@pytest.fixture(scope="session")
def emulator():
    """bqemulator on 127.0.0.1 (see bq_emulator.py), project ``mdh-test``, dataset ``market_data``."""
    from bq_emulator import BigQueryEmulator

    with BigQueryEmulator(project="mdh-test", dataset="market_data") as emu:
        yield emu


@pytest.fixture()
def wh_url(tmp_path, monkeypatch) -> str:
    """A DuckDB warehouse of its own for a live-streaming test (no config file, no emulator)."""
    monkeypatch.chdir(tmp_path)
    for name in ("MDH_WAREHOUSE", "MDH_CONFIG", "BIGQUERY_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


