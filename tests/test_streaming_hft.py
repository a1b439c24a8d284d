"""The full HFT feature set live: derivative columns (mark, index, funding, open interest and
oi_change, liquidations split by the open-interest direction) and book features, from
replays of exchange-format messages on 127.0.0.1 and, for Binance's open interest, a local
HTTP REST stand-in polled by the live path. Batch references come from the batch code
(`mdh_lib.candles.candles`, `mdh_lib.features.book.book_features`) over the same rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdh_lib.candles import CANDLE_COLUMNS, Instrument, candles
from mdh_lib.candles.trades import TRADE_COLUMNS
from mdh_lib.features.book import book_features
from mdh_lib.frames import with_ids
from mdh_lib.sample_server.synthetic import write_day
from mdh_lib.streaming import resolve, venue
from mdh_lib.streaming.connection import ConnectionSettings
from mdh_lib.streaming.replay import (
    ReplayServer, RestServer, binance_depth5, binance_force_orders, binance_mark_prices, binance_trades,
    deribit_books, deribit_tickers, deribit_trades, merged,
)
from mdh_lib.streaming.run import LiveStream, StreamSettings
from test_streaming import DELAYS, read, staged, tardis_rows, tardis_ticker

pytestmark = pytest.mark.timeout(120)
DATE = dt.date(2024, 3, 1)
DAY0 = 1_709_251_200_000_000
MINUTE = 60_000_000


def day_rows(tmp_path, exchange: str, symbol: str, minutes: int) -> dict[str, pl.DataFrame]:
    """The sample generator's day, first ``minutes`` of arrival time, per data type (file
    order), plus the staged (batch) trades and book snapshots. The book is generated at a
    smaller scale (about 2 snapshots a second: dozens per 15s bucket) to keep the test fast."""
    out = {}
    for data_type, scale in (("trades", 300_000), ("liquidations", 300_000), ("derivative_ticker", 300_000),
                             ("book_snapshot_5", 60_000)):
        path = tmp_path / f"{exchange}_{data_type}.csv.gz"
        write_day(path, exchange, data_type, DATE, symbol, scale)
        out[data_type] = tardis_rows(path)
        if data_type in ("trades", "book_snapshot_5"):
            out[f"batch_{data_type}"] = staged(path, data_type, DATE, tmp_path)
    cut = pl.col("local_timestamp") < DAY0 + minutes * MINUTE
    return {k: v.filter(cut) if k != "liquidations" else v for k, v in out.items()}


def last_ts(rows: dict[str, pl.DataFrame]) -> int:
    return max(rows[t]["timestamp"].max() for t in ("trades", "derivative_ticker", "book_snapshot_5"))


def spread_liquidations(liquidations: pl.DataFrame, minutes: int) -> pl.DataFrame:
    """The day's first 40 liquidations moved into the replayed minutes (synthetic days have
    only a few an hour), one every ``minutes * 60 / 40`` seconds."""
    step = minutes * MINUTE // 40
    ts = [DAY0 + 7_000_000 + i * step // 1_000 * 1_000 for i in range(40)]
    return liquidations.head(40).with_columns(timestamp=pl.Series(ts), local_timestamp=pl.Series(ts) + 4_321)


def run_live(server: ReplayServer, venue_name: str, symbol: str, wh: str, monkeypatch, settings: StreamSettings,
             last_ts: int):
    """Stream until the replay is sent and its last exchange time ``last_ts`` processed, then
    stop (REST polls also count as messages, so the message count cannot tell)."""
    v = venue(venue_name)
    monkeypatch.setenv(v.env, server.endpoint)
    live = LiveStream(v, resolve(v, symbol), ticks=False, timeframes=("15s", "1m"), warehouse=wh, settings=settings)

    async def drive():
        task = asyncio.create_task(live.run(0))
        deadline = time.monotonic() + 60
        while not (server.done and (live.pipeline.clock.watermark or 0) >= last_ts) and not task.done() \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        live.stop()
        return await task

    return asyncio.run(drive())


def assert_rows_equal(live: pl.DataFrame, batch: pl.DataFrame, width_s: int, drop=()) -> None:
    """Live covers consecutive buckets, each equal to its batch row (bit for bit, except the
    liquidation sums, which polars may add in another order for a day than for a bucket)."""
    assert live.height >= 2
    span = (live["timestamp"].max() - live["timestamp"].min()).total_seconds() // width_s + 1
    assert live.height == span
    expected = batch.join(live.select("timestamp"), on="timestamp", how="semi").sort("timestamp").drop(
        [c for c in drop if c in batch.columns])
    live = live.sort("timestamp").drop(drop)
    sums = [c for c in live.columns if c.startswith("liquidation_") and c != "liquidation_count"]
    assert_frame_equal(live.drop(sums), expected.drop(sums), check_exact=True, check_dtypes=False)
    assert_frame_equal(live.select(sums), expected.select(sums), check_exact=False, rel_tol=1e-12, abs_tol=0)


def test_binance_futures_hft_columns_and_book_features_equal_batch(tmp_path, wh_url, monkeypatch):
    """Acceptance: trades, forceOrder, markPrice and depth5 messages replayed (paced, 1 minute
    of exchange time in about 1.5 s) with open interest polled from a REST stand-in: every
    closed live 1m candle equals batch in every column batch has (delays aside), open
    interest, oi_change and the liquidation split by open-interest direction included; the
    15s and 1m book features equal batch's."""
    minutes = 5
    rows = day_rows(tmp_path, "binance-futures", "BTCUSDT", minutes)
    liquidations = spread_liquidations(rows["liquidations"], minutes)
    ticker = tardis_ticker(rows["derivative_ticker"])
    messages_ts = [
        binance_trades(rows["trades"], "btcusdt@trade", futures=True),
        binance_force_orders(liquidations, "btcusdt@forceOrder"),
        binance_depth5(rows["book_snapshot_5"], "btcusdt@depth5@100ms"),
    ]
    marks = binance_mark_prices(ticker, "btcusdt@markPrice@1s")
    messages = merged(*messages_ts, marks)
    # open interest steps at the first mark price after 00:01:15 and 00:03:15 (mid-minute, so
    # a poll's few hundred ms of lag cannot move it into another minute)
    steps = [ticker.filter(pl.col("timestamp") >= DAY0 + m * MINUTE + 15_000_000)["timestamp"][0] for m in (1, 3)]
    step_msgs = [messages.index(next(msg for (_, msg), ts in zip(marks, ticker["timestamp"]) if ts == s))
                 for s in steps]
    values = [33_000.5, 33_125.25, 32_990.0]

    server = ReplayServer(messages, rate=len(messages) / (minutes * 1.5))

    def open_interest() -> float:
        return values[sum(server.position > k for k in step_msgs)]

    with server, RestServer(open_interest) as rest:
        monkeypatch.setenv("MDH_REST_ENDPOINT_BINANCE_FUTURES", rest.endpoint)
        settings = StreamSettings(connection=ConnectionSettings(backoff_initial=0.05), flush_interval=0.2,
                                  rest_poll=0.05)
        summary = run_live(server, "binance-futures", "BTC-USDT", wh_url, monkeypatch, settings, last_ts(rows))
        assert rest.requests > 20
    assert summary.late_trades == {"15s": 0, "1m": 0} and summary.late_other == 0
    assert summary.counts.foreign == summary.counts.malformed == 0
    assert summary.written.get("candles_live_1m", 0) >= minutes - 2, summary

    batch_ticker = ticker.with_columns(
        predicted_funding_rate=pl.lit(None, pl.Float64),  # Tardis has none for Binance
        open_interest=pl.when(pl.col("timestamp") >= steps[1]).then(values[2])
        .when(pl.col("timestamp") >= steps[0]).then(values[1]).otherwise(values[0]))
    batch_liq = liquidations.sort("timestamp", maintain_order=True)
    batch = candles(rows["batch_trades"].select(TRADE_COLUMNS), DATE, Instrument(
        "binance-futures", "BTCUSDT", "BINANCE-FUTURES:PERPETUAL:BTC-USDT"), timeframes=("1m",),
        ticker=batch_ticker, liquidations=batch_liq)["1m"]
    live = read(wh_url, "candles_live_1m")
    assert live.columns == [*CANDLE_COLUMNS, "gap"] and live.height >= minutes - 2 and not live["gap"].any()
    assert_rows_equal(live, batch, 60, [*DELAYS, "gap"])
    assert live["open_interest"].n_unique() >= 2 and (live["oi_change"].fill_null(0) != 0).sum() == 2
    assert live["liquidation_count"].sum() > 10
    assert live["liquidation_with_rising_oi"].sum() + live["liquidation_with_falling_oi"].sum() > 0

    books = book_features([rows["batch_book_snapshot_5"]], DATE, ("15s", "1m"))
    key = "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
    for tf, width in (("15s", 15), ("1m", 60)):
        live_book = read(wh_url, f"book_features_live_{tf}")
        expected = with_ids(books[tf], Instrument("binance-futures", "BTCUSDT", key), tf)
        assert live_book.columns == expected.columns
        assert_rows_equal(live_book, expected, width)
        assert live_book["snapshot_count"].min() > 0 and live_book["mid"].null_count() == 0


def test_deribit_ticker_liquidations_and_book_equal_batch(tmp_path, wh_url, monkeypatch):
    """Deribit trades (some carrying ``liquidation``), ticker and grouped book notifications
    at full speed: 15s and 1m candles equal batch with mark, index, funding, open interest
    and the liquidation columns, and the book features too."""
    minutes = 4
    rows = day_rows(tmp_path, "deribit", "BTC-PERPETUAL", minutes)
    trades = rows["trades"]
    kinds = {str(i): k for i, k in zip(trades["id"].gather_every(23), ["T", "M", "MT"] * 1_000)}
    liq = rows["batch_trades"].filter(pl.col("id").is_in(list(kinds))).with_columns(
        side=pl.when(pl.col("id").replace_strict(kinds) == "T").then(pl.col("side"))
        .otherwise(pl.when(pl.col("side") == "buy").then(pl.lit("sell")).otherwise(pl.lit("buy"))))
    ticker = tardis_ticker(rows["derivative_ticker"])
    messages = merged(deribit_trades(trades, kinds), deribit_tickers(ticker), deribit_books(rows["book_snapshot_5"]))
    with ReplayServer(messages, rpc=True) as server:
        settings = StreamSettings(connection=ConnectionSettings(backoff_initial=0.05), flush_interval=0.2)
        summary = run_live(server, "deribit", "BTC-PERPETUAL", wh_url, monkeypatch, settings, last_ts(rows))
    assert summary.late_trades == {"15s": 0, "1m": 0} and summary.late_other == 0
    assert summary.counts.liquidations == liq.height > 10
    assert summary.written.get("candles_live_1m", 0) >= 2, summary

    instrument = Instrument("deribit", "BTC-PERPETUAL", "DERIBIT:PERPETUAL:BTC-USD")
    batch = candles(rows["batch_trades"].select(TRADE_COLUMNS), DATE, instrument, timeframes=("15s", "1m"),
                    ticker=ticker.with_columns(predicted_funding_rate=pl.lit(None, pl.Float64)),
                    liquidations=liq.sort("timestamp", maintain_order=True))
    books = book_features([rows["batch_book_snapshot_5"]], DATE, ("15s", "1m"))
    for tf, width in (("15s", 15), ("1m", 60)):
        live = read(wh_url, f"candles_live_{tf}")
        assert not live["gap"].any()
        assert_rows_equal(live, batch[tf], width, [*DELAYS, "gap"])
        assert live["open_interest"].null_count() == 0 and live["liquidation_count"].sum() > 0
        assert_rows_equal(read(wh_url, f"book_features_live_{tf}"), with_ids(books[tf], instrument, tf), width)


def test_open_interest_is_not_polled_when_only_the_websocket_is_redirected(monkeypatch):
    """SPEC: with MDH_WS_ENDPOINT_{VENUE} set, the live path asks nothing of the exchange; a
    REST stand-in is used only when MDH_REST_ENDPOINT_{VENUE} names it."""
    v = venue("binance-futures")
    monkeypatch.delenv(v.rest_env, raising=False)
    monkeypatch.delenv(v.env, raising=False)
    assert v.rest_url() == "https://fapi.binance.com"
    monkeypatch.setenv(v.env, "ws://127.0.0.1:1")
    assert v.rest_url() is None
    monkeypatch.setenv(v.rest_env, "http://127.0.0.1:2/")
    assert v.rest_url() == "http://127.0.0.1:2"
