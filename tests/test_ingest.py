"""`fetch_raw_days` over many small files: chunks shared with a helper process
(`mdh_lib.ingest_helper`) give the same staged files and the same failures as one process,
and a caller that stops early leaves no helper behind."""

from __future__ import annotations

import datetime as dt
import gzip

import polars as pl
import pytest

from mdh_lib import ingest, ingest_helper
from mdh_lib.ingest import RawRequest, fetch_raw_days
from mdh_lib.instruments import InstrumentKey
from mdh_lib.sample_server import SampleServer
from mdh_lib.sample_server.synthetic import write_day

DAY = dt.date(2024, 3, 1)
NAMES = [f"S{i:03d}USDT" for i in range(45)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """45 tiny binance spot trade days from a data directory (one synthetic day, its symbol
    rewritten); S007USDT answers 404 and S011USDT a value that is not a number."""
    folder = tmp_path_factory.mktemp("served")
    template = folder / "template.csv.gz"
    write_day(str(template), "binance", "trades", DAY, "BTCUSDT", 40)
    text = gzip.decompress(template.read_bytes())
    out = folder / "binance" / "trades" / f"{DAY:%Y/%m/%d}"
    out.mkdir(parents=True)
    for name in NAMES:
        (out / f"{name}.csv.gz").write_bytes(gzip.compress(text.replace(b",BTCUSDT,", f",{name},".encode())))
    with SampleServer(data_dir=str(folder)) as server:
        server.inject("status", match="S007USDT", status=404)
        server.inject("bad_value", match="S011USDT")
        yield server


def _requests() -> list[RawRequest]:
    return [RawRequest("trades", DAY, InstrumentKey.parse(f"BINANCE:SPOT_PAIR:{n}"), "binance", n) for n in NAMES]


def _outcomes(server, helpers: int) -> dict[str, object]:
    got = {}
    for request, day in fetch_raw_days(_requests(), endpoint=server.endpoint, api_key="", concurrency=4,
                                       helpers=helpers):
        if isinstance(day, Exception):
            got[request.source_symbol] = (type(day).__name__, str(day), getattr(day, "status", None))
        else:
            got[request.source_symbol] = pl.read_parquet(day.file.uri)
            day.discard()
    return got


def test_a_helper_process_stages_what_this_one_would(served, monkeypatch):
    monkeypatch.setattr(ingest, "HELPER_MIN_FILES", 1)
    alone, shared = _outcomes(served, helpers=0), _outcomes(served, helpers=1)
    assert sorted(alone) == sorted(shared) == sorted(NAMES)
    for name in NAMES:
        if isinstance(alone[name], tuple):
            assert shared[name] == alone[name], name
        else:
            assert shared[name].equals(alone[name]), name
    assert alone["S007USDT"][0] == "TardisError" and alone["S007USDT"][2] == 404 and "404" in alone["S007USDT"][1]
    assert alone["S011USDT"][0] == "RawFileError" and "bad value" in alone["S011USDT"][1]


def test_stopping_early_ends_the_helpers(served, monkeypatch):
    monkeypatch.setattr(ingest, "HELPER_MIN_FILES", 1)
    started, real = [], ingest_helper.Helper
    monkeypatch.setattr(ingest_helper, "Helper", lambda: started.append(real()) or started[-1])
    days = fetch_raw_days(_requests(), endpoint=served.endpoint, api_key="", concurrency=4, helpers=1)
    _, first = next(days)
    first.discard()
    days.close()  # the helper was given a chunk it will not be asked for: it is killed
    assert started and all(h.proc.poll() is not None for h in started)

