"""The sample server through the official tardis-dev client: every data type, realism of the
synthetic days, metadata, directory mode, faults and API-key rules."""

import datetime as dt
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pandas as pd
import pyarrow.csv as pacsv
import pytest
from tardis_dev import download_datasets, get_exchange_details, get_instrument_info

from conftest import REPO, lay_out_gz, real_file
from mdh_lib.sample_server import SampleServer, catalog, synthetic
from mdh_lib.sample_server.synthetic import day_csv_gz, write_day
from mdh_lib.tardis.client import refuses_without_key

DAY = "2024-03-01"
NEXT = "2024-03-02"
HEADERS = {  # SPEC Appendix A, spelled out here so a drift in the generator shows
    "trades": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
    "book_snapshot_5": "exchange,symbol,timestamp,local_timestamp," + ",".join(
        f"asks[{i}].price,asks[{i}].amount,bids[{i}].price,bids[{i}].amount" for i in range(5)),
    "quotes": "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
    "derivative_ticker": "exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,"
                         "predicted_funding_rate,open_interest,last_price,index_price,mark_price",
    "liquidations": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
    "options_chain": "exchange,symbol,timestamp,local_timestamp,type,strike_price,expiration,open_interest,"
                     "last_price,bid_price,bid_amount,bid_iv,ask_price,ask_amount,ask_iv,mark_price,mark_iv,"
                     "underlying_index,underlying_price,delta,gamma,vega,theta,rho",
}
DAY_START = int(dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1e6)
DAY_US = 86_400_000_000


def fetch(srv, tmp_path, exchange, data_types, symbols, start=DAY, end=NEXT, **kw) -> Path:
    download_datasets(exchange, data_types, symbols, start, end, endpoint=srv.endpoint,
                      download_dir=str(tmp_path), **kw)
    return tmp_path


def path_of(tmp_path, exchange, data_type, symbol, day=DAY) -> Path:
    return tmp_path / f"{exchange}_{data_type}_{day}_{symbol}.csv.gz"


def frame(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), compression="gzip", dtype={"id": str})


# --- synthetic data through the client -----------------------------------------------------------


@pytest.mark.parametrize("exchange, symbol, data_types", [
    ("binance", "BTCUSDT", ["trades", "book_snapshot_5", "quotes"]),
    ("binance-futures", "ETHUSDT", ["trades", "book_snapshot_5", "quotes", "derivative_ticker", "liquidations"]),
    ("deribit", "BTC-PERPETUAL", ["trades", "book_snapshot_5", "quotes", "derivative_ticker", "liquidations"]),
    ("deribit", "BTC-29MAR24", ["trades", "derivative_ticker"]),
    ("deribit", "OPTIONS", ["options_chain"]),
])
def test_every_data_type_downloads_and_parses(server, tmp_path, exchange, symbol, data_types):
    fetch(server, tmp_path, exchange, data_types, [symbol])
    for data_type in data_types:
        raw = gzip.decompress(path_of(tmp_path, exchange, data_type, symbol).read_bytes())
        assert raw.split(b"\n", 1)[0].decode() == HEADERS[data_type]
        assert b'"' not in raw
        df = frame(gzip.compress(raw))
        assert len(df) > 0 and (df.exchange == exchange).all()
        assert df.timestamp.dtype == "int64" and df.local_timestamp.dtype == "int64"
        assert df.local_timestamp.is_monotonic_increasing
        assert df.local_timestamp.between(DAY_START, DAY_START + DAY_US - 1).all()
        lag = df.local_timestamp - df.timestamp
        assert (lag > 0).all() and lag.median() < 20_000
        if symbol != "OPTIONS":
            assert (df.symbol == symbol).all()
        if data_type == "book_snapshot_5":
            assert not df.timestamp.is_monotonic_increasing  # latency jitter, as in real files
            for i in range(4):
                assert (df[f"asks[{i}].price"] < df[f"asks[{i + 1}].price"]).all()
                assert (df[f"bids[{i}].price"] > df[f"bids[{i + 1}].price"]).all()
            assert (df["asks[0].price"] > df["bids[0].price"]).all()


def test_sizes_follow_trades_per_day():
    sizes = {t: len(frame(day_csv_gz("binance-futures", t, DAY, "BTCUSDT", 10_000)))
             for t in ("trades", "book_snapshot_5", "quotes", "derivative_ticker", "liquidations")}
    assert 9_900 <= sizes["trades"] <= 10_000
    assert 3.0 < sizes["book_snapshot_5"] / sizes["trades"] < 3.4
    assert 1.8 < sizes["quotes"] / sizes["trades"] < 2.2
    assert sizes["derivative_ticker"] >= 1_440
    assert 5 <= sizes["liquidations"] <= 60
    assert len(frame(day_csv_gz("binance-futures", "trades", DAY, "ETHUSDT", 10_000))) < 0.7 * sizes["trades"]
    assert 4_000 < len(frame(day_csv_gz("deribit", "options_chain", DAY, "OPTIONS", 10_000))) < 6_000


def test_deterministic_and_served_bytes_equal_generator(server, tmp_path):
    fetch(server, tmp_path, "binance", ["trades"], ["ETHUSDT"])
    served = path_of(tmp_path, "binance", "trades", "ETHUSDT").read_bytes()
    assert served == day_csv_gz("binance", "trades", DAY, "ETHUSDT", server.trades_per_day)
    assert day_csv_gz("deribit", "options_chain", DAY, "OPTIONS", 2_000) == \
        day_csv_gz("deribit", "options_chain", dt.date(2024, 3, 1), "OPTIONS", 2_000)
    assert day_csv_gz("binance", "trades", NEXT, "ETHUSDT", 2_000) != \
        day_csv_gz("binance", "trades", DAY, "ETHUSDT", 2_000)


def test_multi_chunk_output_is_one_valid_gzip(tmp_path, monkeypatch):
    whole = day_csv_gz("binance-futures", "book_snapshot_5", DAY, "BTCUSDT", 3_000)
    monkeypatch.setattr(synthetic, "_CHUNK_ROWS", 1_000)
    write_day(tmp_path / "a" / "book.csv.gz", "binance-futures", "book_snapshot_5", DAY, "BTCUSDT", 3_000)
    chunked = (tmp_path / "a" / "book.csv.gz").read_bytes()
    assert chunked != whole and gzip.decompress(chunked) == gzip.decompress(whole)
    assert pacsv.read_csv(tmp_path / "a" / "book.csv.gz").num_rows == len(frame(whole)) > 3_000
    assert os.listdir(tmp_path / "a") == ["book.csv.gz"]


def test_trades_and_quotes_agree_with_the_book():
    args = ("deribit", DAY, "ETH-PERPETUAL", 3_000)
    trades = frame(day_csv_gz(args[0], "trades", *args[1:])).sort_values("timestamp", kind="stable")
    book = frame(day_csv_gz(args[0], "book_snapshot_5", *args[1:])).sort_values("timestamp", kind="stable")
    quotes = frame(day_csv_gz(args[0], "quotes", *args[1:]))
    at = pd.merge_asof(trades, book[["timestamp", "asks[0].price", "bids[0].price"]], on="timestamp").dropna(
        subset=["asks[0].price"])
    assert len(at) > 0.99 * len(trades)
    buys, sells = at[at.side == "buy"], at[at.side == "sell"]
    assert len(buys) > 0.3 * len(at) and len(sells) > 0.3 * len(at)
    assert (buys.price == buys["asks[0].price"]).all() and (sells.price == sells["bids[0].price"]).all()
    assert trades.id.str.match(r"^ETH-\d+$").all()
    level1 = book.rename(columns={"asks[0].price": "ask_price", "asks[0].amount": "ask_amount",
                                  "bids[0].price": "bid_price", "bids[0].amount": "bid_amount"})
    cols = ["timestamp", "local_timestamp", "ask_amount", "ask_price", "bid_price", "bid_amount"]
    assert len(quotes.merge(level1[cols], on=cols)) == len(quotes)


def test_derivative_ticker_and_liquidations_look_real():
    ticker = frame(day_csv_gz("binance-futures", "derivative_ticker", DAY, "BTCUSDT", 4_000))
    assert ticker.notna().all().all()
    assert (ticker.funding_timestamp % (8 * 3_600_000_000) == 0).all()
    assert (ticker.funding_timestamp > ticker.timestamp).all()
    assert ticker.funding_rate.abs().max() < 0.003
    assert ((ticker.mark_price / ticker.index_price - 1).abs() < 0.01).all()
    deribit = frame(day_csv_gz("deribit", "derivative_ticker", DAY, "BTC-PERPETUAL", 4_000))
    assert deribit.predicted_funding_rate.isna().any() and deribit.funding_rate.notna().all()
    future = frame(day_csv_gz("deribit", "derivative_ticker", DAY, "BTC-29MAR24", 4_000))
    assert future.funding_rate.isna().all() and (future.mark_price > future.index_price).all()
    liq = frame(day_csv_gz("binance-futures", "liquidations", DAY, "BTCUSDT", 20_000))
    assert liq.id.isna().all() and set(liq.side) <= {"buy", "sell"}
    assert liq.local_timestamp.diff().median() < 60e6  # clustered, not spread over the day


def test_expiring_future_stops_at_expiry():
    trades = frame(day_csv_gz("deribit", "trades", "2024-03-29", "BTC-29MAR24", 4_000))
    expiry = int(dt.datetime(2024, 3, 29, 8, tzinfo=dt.timezone.utc).timestamp() * 1e6)
    assert len(trades) > 0 and (trades.local_timestamp < expiry).all()


def test_options_chain_smile_and_greeks():
    chain = frame(day_csv_gz("deribit", "options_chain", DAY, "OPTIONS", 4_000))
    listed = {o["id"]: o for o in catalog.options_on(dt.date(2024, 3, 1))}
    assert set(chain.symbol) <= set(listed) and len(set(chain.symbol)) > 0.9 * len(listed)
    calls, puts = chain[chain.type == "call"], chain[chain.type == "put"]
    assert ((calls.delta > 0) & (calls.delta < 1)).all() and ((puts.delta < 0) & (puts.delta > -1)).all()
    assert (chain.gamma >= 0).all() and (chain.vega > 0).all() and (chain.theta < 0).all()
    bid = chain.dropna(subset=["bid_iv"])
    assert len(bid) > 0.5 * len(chain) and (bid.bid_iv <= bid.mark_iv).all() and (bid.bid_price <= bid.ask_price).all()
    assert (chain.mark_iv <= chain.ask_iv).all() and chain.mark_iv.between(10, 300).all()
    assert chain.underlying_index.str.match(r"^(SYN\.)?(BTC|ETH)-\d{1,2}[A-Z]{3}\d{2}$").all()
    for symbol, rows in chain.groupby("symbol"):
        assert (rows.expiration == int(dt.datetime.fromisoformat(listed[symbol]["expiry"][:19]).replace(
            tzinfo=dt.timezone.utc).timestamp() * 1e6)).all()
    chain["expiry"] = chain.symbol.str.rsplit("-", n=2).str[0]
    for _, rows in chain.groupby("expiry"):  # skew: the low-strike wing is richer than the high one
        by_strike = rows.groupby("strike_price").mark_iv.mean()
        assert by_strike.iloc[0] > by_strike.iloc[-1]


def test_day_without_data_is_an_empty_gzip_without_header():
    assert gzip.decompress(day_csv_gz("deribit", "options_chain", "2028-06-01", "OPTIONS")) == b""


# --- metadata --------------------------------------------------------------------------------------


def test_exchange_details_and_instruments(server):
    details = get_exchange_details("deribit", endpoint=server.endpoint)
    assert list(details) == ["id", "name", "enabled", "availableSince", "availableChannels", "availableSymbols",
                             "datasets", "incidentReports"]
    assert details["datasets"]["formats"] == ["csv"] and details["incidentReports"] == []
    symbols = {s["id"]: s for s in details["datasets"]["symbols"]}
    assert symbols["OPTIONS"]["type"] == "option" and symbols["OPTIONS"]["dataTypes"] == ["options_chain"]
    assert "availableTo" not in symbols["BTC-PERPETUAL"]
    assert symbols["BTC-27DEC24"]["availableTo"] == "2024-12-28T00:00:00.000Z"
    assert any(s["id"].startswith("BTC-27DEC24-") and s["type"] == "option" for s in details["availableSymbols"])
    futures = get_exchange_details("binance-futures", endpoint=server.endpoint)
    assert futures["availableSince"] == "2019-09-01T00:00:00.000Z"

    rows = get_instrument_info("deribit", endpoint=server.endpoint)
    assert 2_000 < len(rows) < 10_000
    option = next(r for r in rows if r["type"] == "option")
    assert {"id", "datasetId", "exchange", "baseCurrency", "quoteCurrency", "type", "active", "availableSince",
            "availableTo", "expiry", "strikePrice", "optionType", "priceIncrement", "amountIncrement",
            "minTradeAmount", "makerFee", "takerFee", "inverse", "contractMultiplier"} <= set(option)
    assert option["expiry"].endswith("T08:00:00.000Z") and dt.date.fromisoformat(option["expiry"][:10]).weekday() == 4
    one = get_instrument_info("binance-futures", symbol="BTCUSDT", endpoint=server.endpoint)
    assert one["type"] == "perpetual" and one["quoteCurrency"] == "USDT" and one["priceIncrement"] == 0.1
    perps = get_instrument_info("deribit", filter={"type": "perpetual"}, endpoint=server.endpoint)
    assert sorted(r["id"] for r in perps) == ["BTC-PERPETUAL", "ETH-PERPETUAL"]
    with pytest.raises(urllib.error.HTTPError) as err:
        get_exchange_details("nowhere", endpoint=server.endpoint)
    assert err.value.code == 404


def test_unknown_symbol_404_and_out_of_window_400_fail_at_once(server, tmp_path):
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(server, tmp_path, "binance", ["trades"], ["DOGEUSDT"])
    assert err.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(server, tmp_path, "binance", ["derivative_ticker"], ["BTCUSDT"])
    assert err.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(server, tmp_path, "binance-futures", ["trades"], ["BTCUSDT"], "2019-08-01", "2019-08-02")
    assert err.value.code == 400
    assert time.monotonic() - started < 2  # no retries


def test_concurrent_month_download(server, tmp_path):
    fetch(server, tmp_path, "deribit", ["trades", "quotes"], ["ETH-PERPETUAL"], "2024-01-01", "2024-02-01")
    assert len(list(tmp_path.glob("*.csv.gz"))) == 62
    assert {s for _, _, s in server.requests} == {200}


# --- directory mode --------------------------------------------------------------------------------


def test_data_dir_serves_real_file_byte_for_byte(tmp_path):
    src = real_file("binance-futures_trades_2020-02-22_BTCUSDT.csv")
    data_dir = tmp_path / "tardis"
    served = lay_out_gz(src, data_dir, "binance-futures", "trades", "2020-02-22", "BTCUSDT")
    (data_dir / "instruments").mkdir()
    (data_dir / "instruments" / "bitmex.json").write_text(json.dumps({"id": "XBTUSD", "type": "perpetual"}))
    with SampleServer(data_dir=data_dir) as srv:
        fetch(srv, tmp_path / "out", "binance-futures", ["trades"], ["BTCUSDT"], "2020-02-22", "2020-02-23")
        got = path_of(tmp_path / "out", "binance-futures", "trades", "BTCUSDT", "2020-02-22").read_bytes()
        assert got == served.read_bytes() and gzip.decompress(got) == src.read_bytes()
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(srv, tmp_path / "out", "binance-futures", ["trades"], ["BTCUSDT"], "2020-02-23", "2020-02-24")
        assert err.value.code == 404
        details = get_exchange_details("binance-futures", endpoint=srv.endpoint)
        assert details["datasets"]["symbols"] == [{
            "id": "BTCUSDT", "type": "perpetual", "availableSince": "2020-02-22T00:00:00.000Z",
            "availableTo": "2020-02-23T00:00:00.000Z", "dataTypes": ["trades"]}]
        row = get_instrument_info("binance-futures", symbol="BTCUSDT", endpoint=srv.endpoint)
        assert (row["baseCurrency"], row["quoteCurrency"], row["type"]) == ("BTC", "USDT", "perpetual")
        assert get_instrument_info("bitmex", endpoint=srv.endpoint) == [{"id": "XBTUSD", "type": "perpetual"}]
        with pytest.raises(urllib.error.HTTPError):
            get_exchange_details("deribit", endpoint=srv.endpoint)


# --- faults ----------------------------------------------------------------------------------------


def test_status_faults_and_retry_after(server, tmp_path):
    path = "/v1/binance/trades/2024/03/01/BTCUSDT.csv.gz"
    for code in (401, 404):
        server.inject("status", match="binance/trades", status=code, times=1)
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(server, tmp_path, "binance", ["trades"], ["BTCUSDT"])
        assert err.value.code == code
    server.inject("status", match=path, status=429, retry_after=1, times=1)
    started = time.monotonic()
    fetch(server, tmp_path, "binance", ["trades"], ["BTCUSDT"])
    assert 1 <= time.monotonic() - started < 4
    assert [s for _, p, s in server.requests if p == path] == [401, 404, 429, 200]


def test_500_then_success(server, tmp_path):
    server.inject("status", match="binance/quotes", status=500, times=1)
    fetch(server, tmp_path, "binance", ["quotes"], ["BTCUSDT"])
    assert [s for _, p, s in server.requests if "quotes" in p] == [500, 200]


def test_latency_fault_and_global_latency(server, tmp_path):
    server.inject("latency", match="ETHUSDT", ms=400, times=1)
    started = time.monotonic()
    fetch(server, tmp_path, "binance", ["trades"], ["ETHUSDT"])
    assert time.monotonic() - started >= 0.4
    with SampleServer(latency_ms=300, trades_per_day=500) as slow:
        started = time.monotonic()
        get_exchange_details("binance", endpoint=slow.endpoint)
        assert time.monotonic() - started >= 0.3


def test_body_faults(server, tmp_path):
    args = ("binance-futures", ["trades"], ["BTCUSDT"])
    good = day_csv_gz("binance-futures", "trades", DAY, "BTCUSDT", server.trades_per_day)
    target = path_of(tmp_path, "binance-futures", "trades", "BTCUSDT")

    def served(kind, **params) -> bytes:
        server.inject(kind, match="binance-futures/trades", times=1, **params)
        target.unlink(missing_ok=True)
        fetch(server, tmp_path, *args)
        return target.read_bytes()

    truncated = served("truncated", percent=40)
    assert len(truncated) == len(good) * 40 // 100
    with pytest.raises(EOFError):
        gzip.decompress(truncated)
    corrupt = served("corrupt")
    assert len(corrupt) == len(good) and corrupt != good
    with pytest.raises((zlib.error, gzip.BadGzipFile, EOFError)):
        gzip.decompress(corrupt)
    assert gzip.decompress(served("empty")) == b""
    dropped = frame(served("wrong_header"))
    assert "price" not in dropped.columns and len(dropped.columns) == 7
    renamed = frame(served("wrong_header", column="amount", rename_to="qty"))
    assert list(renamed.columns)[-1] == "qty"
    bad = frame(served("bad_value"))
    assert bad.price.dtype == object and (bad.price == "abc").sum() == 1
    target.unlink()
    fetch(server, tmp_path, *args)  # every rule was for one request only
    assert target.read_bytes() == good


def test_admin_endpoint(server, tmp_path):
    def call(method, body=None):
        req = urllib.request.Request(f"{server.url}/_admin/faults", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=5).status

    assert call("POST", {"kind": "status", "status": 404, "match": "deribit/quotes"}) == 201
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError):
            fetch(server, tmp_path, "deribit", ["quotes"], ["BTC-PERPETUAL"])
    assert call("DELETE") == 200
    fetch(server, tmp_path, "deribit", ["quotes"], ["BTC-PERPETUAL"])
    with pytest.raises(urllib.error.HTTPError) as err:
        call("POST", {"kind": "gremlins"})
    assert err.value.code == 400
    assert not [p for _, p, _ in server.requests if p.startswith("/_admin")]


# --- API key -----------------------------------------------------------------------------------------


def test_api_key_rules(tmp_path):
    key = "sekret-key-123"
    with SampleServer(api_key=key, trades_per_day=500) as srv:
        fetch(srv, tmp_path / "free", "binance", ["trades"], ["BTCUSDT"])  # first of the month: free
        for api_key in ("", "wrong"):
            with pytest.raises(urllib.error.HTTPError) as err:
                fetch(srv, tmp_path / api_key, "binance", ["trades"], ["BTCUSDT"], NEXT, "2024-03-03", api_key=api_key)
            assert err.value.code == 401 and key not in err.value.msg
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(srv, tmp_path / "w", "binance", ["trades"], ["BTCUSDT"], api_key="wrong")
        assert err.value.code == 401
        fetch(srv, tmp_path / "paid", "binance", ["trades"], ["BTCUSDT"], DAY, "2024-03-04", api_key=key)
        assert len(list((tmp_path / "paid").glob("*.csv.gz"))) == 3
        with pytest.raises(urllib.error.HTTPError) as err:
            get_instrument_info("binance", endpoint=srv.endpoint)
        assert err.value.code == 401
        assert get_instrument_info("binance", endpoint=srv.endpoint, api_key=key)
        assert get_exchange_details("binance", endpoint=srv.endpoint)["id"] == "binance"
        assert key not in repr(srv.requests)


def test_free_access_mode_acts_as_tardis_without_a_subscription(tmp_path):
    """`free_access`: no key is Tardis's free access (no instrument metadata, first days of
    months only); any key counts as paid."""
    with SampleServer(free_access=True, trades_per_day=500) as srv:
        fetch(srv, tmp_path / "free", "binance", ["trades"], ["BTCUSDT"])  # 2024-03-01: free
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(srv, tmp_path / "free", "binance", ["trades"], ["BTCUSDT"], NEXT, "2024-03-03")
        assert err.value.code == 401 and "first day of each month" in err.value.msg
        with pytest.raises(urllib.error.HTTPError) as err:
            get_instrument_info("binance", endpoint=srv.endpoint)
        assert err.value.code == 401
        assert get_exchange_details("binance", endpoint=srv.endpoint)["availableSymbols"]
        assert refuses_without_key("binance", endpoint=srv.endpoint)
        fetch(srv, tmp_path / "paid", "binance", ["trades"], ["BTCUSDT"], NEXT, "2024-03-03", api_key="any-key")
        assert get_instrument_info("binance", endpoint=srv.endpoint, api_key="any-key")
        assert "any-key" not in repr(srv.requests)


def test_default_mode_serves_metadata_without_a_key(server):
    assert not refuses_without_key("binance", endpoint=server.endpoint)
    assert get_instrument_info("binance", filter={"id": "-"}, endpoint=server.endpoint) == []


def test_instrument_changes_and_contract_kinds():
    """Synthetic metadata carries Tardis's ``changes`` and inverse, linear and quanto
    contracts; a synthetic day is generated on the grid in force that day."""
    xbt, eth = catalog.instruments("bitmex")
    assert (xbt["id"], xbt["inverse"], xbt["settlementCurrency"]) == ("XBTUSD", True, "BTC")
    assert [c["until"] for c in xbt["changes"]] == sorted(c["until"] for c in xbt["changes"])
    assert (eth["id"], eth["quanto"], eth["inverse"], eth["settlementCurrency"]) == ("ETHUSD", True, False, "BTC")
    linear = catalog.instrument("binance-futures", "BTCUSDT")
    assert linear["inverse"] is False and linear["changes"][0]["priceIncrement"] == 0.01
    for day, tick in ((dt.date(2020, 3, 1), 0.5), (dt.date(2024, 9, 1), 0.1)):
        trades = frame(day_csv_gz("bitmex", "trades", day, "XBTUSD", 300))
        assert len(trades) > 50
        assert ((trades["price"] / tick).round(6) % 1 == 0).all()
    old = frame(day_csv_gz("bitmex", "trades", dt.date(2020, 3, 1), "XBTUSD", 300))
    assert (old["amount"] % 1 == 0).all() and (old["amount"] % 100 != 0).any()  # lot 1 before 2021-06-08


# --- the blocking runner -----------------------------------------------------------------------------


def test_serve_forever_prints_url_and_stops_on_ctrl_c():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", "from mdh_lib.sample_server import serve_forever; "
                             "serve_forever(port=0, trades_per_day=500)"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        endpoint = next(word for word in line.split() if word.startswith("http://"))
        assert get_exchange_details("binance", endpoint=endpoint)["id"] == "binance"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
