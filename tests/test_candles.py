"""Candle maths against independent computations: DuckDB SQL written here, a hand-worked
example, the real Tardis trades file, and sums over 1m for the additive columns."""

import datetime as dt
import gzip
import io
import math

import duckdb
import polars as pl
import pyarrow.csv as pacsv
import pytest

from conftest import real_file
from mdh_lib.candles import Instrument, candles, day_rows
from mdh_lib.candles.checks import check_candles
from mdh_lib.timeframes import TIMEFRAMES, day_start_us

INSTRUMENT = Instrument("binance-futures", "BTCUSDT", "BINANCE-FUTURES:PERPETUAL:BTC-USDT")
REAL_DAY = dt.date(2020, 2, 22)
COMPARED = ["open", "high", "low", "close", "volume", "vwap", "trade_count", "buy_volume_sum", "sell_volume_sum",
            "size_avg", "delay_median", "delay_min", "delay_max", "delay_mean"]


def duckdb_candles(csv_path: str, date: dt.date, width_s: int) -> list[dict]:
    """Independent SQL: the full grid left-joined with per-bucket aggregates of the raw CSV
    (file order = arrival order breaks timestamp ties)."""
    start = day_start_us(date)
    sql = f"""
    WITH t AS (
        SELECT *, row_number() OVER () AS rn FROM read_csv('{csv_path}', header=true,
            types={{'id': 'VARCHAR', 'timestamp': 'BIGINT', 'local_timestamp': 'BIGINT'}})
    ), d AS (
        SELECT *, (timestamp // {width_s * 1_000_000}) * {width_s * 1_000_000} AS bucket,
               (local_timestamp - timestamp) / 1000.0 AS delay
        FROM t WHERE timestamp >= {start} AND timestamp < {start + 86_400_000_000}
    ), agg AS (
        SELECT bucket,
            arg_min(price, (timestamp, rn)) AS open, max(price) AS high, min(price) AS low,
            arg_max(price, (timestamp, rn)) AS close, sum(amount) AS volume,
            sum(price * amount) / sum(amount) AS vwap, count(*) AS trade_count,
            coalesce(sum(amount) FILTER (side = 'buy'), 0) AS buy_volume_sum,
            coalesce(sum(amount) FILTER (side = 'sell'), 0) AS sell_volume_sum,
            avg(amount) AS size_avg, median(delay) AS delay_median, min(delay) AS delay_min,
            max(delay) AS delay_max, avg(delay) AS delay_mean
        FROM d GROUP BY bucket
    ), grid AS (
        SELECT range AS bucket FROM range({start}, {start + 86_400_000_000}, {width_s * 1_000_000})
    )
    SELECT grid.bucket, agg.* EXCLUDE (bucket) FROM grid LEFT JOIN agg USING (bucket) ORDER BY grid.bucket
    """
    return duckdb.sql(sql).pl().to_dicts()


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def read_trades(path) -> pl.DataFrame:
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"id": "string"}))
    return pl.from_arrow(table).sort("timestamp", maintain_order=True)


@pytest.mark.parametrize("tf, width", [("15s", 15), ("1m", 60), ("1h", 3600)])
def test_real_binance_futures_trades_equal_duckdb(tf, width):
    path = real_file("binance-futures_trades_2020-02-22_BTCUSDT.csv")
    got = candles(day_rows(read_trades(path), None, REAL_DAY), REAL_DAY, INSTRUMENT, timeframes=[tf])[tf]
    want = duckdb_candles(str(path), REAL_DAY, width)
    assert got.height == len(want) == 86_400 // width
    assert check_candles(got, REAL_DAY, tf) == []
    rows = got.to_dicts()
    for g, w in zip(rows, want):
        assert g["timestamp"].timestamp() * 1_000_000 == w["bucket"]
        if not w["trade_count"]:
            assert g["trade_count"] == 0 and g["volume"] == 0 and g["open"] is None and g["vwap"] is None
            continue
        for col in COMPARED:
            assert close(g[col], w[col]), (tf, g["timestamp"], col, g[col], w[col])
    assert sum(r["trade_count"] for r in rows) == 9_999


def test_hand_worked_example():
    t0 = day_start_us(dt.date(2024, 1, 1))
    s = 1_000_000
    trades = pl.DataFrame({
        "timestamp": [t0 + 1 * s, t0 + 2 * s, t0 + 2 * s, t0 + 20 * s, t0 + 59 * s],
        "local_timestamp": [t0 + 1 * s + 4_000, t0 + 2 * s + 2_000, t0 + 2 * s + 3_000, t0 + 20 * s + 10_000,
                            t0 + 59 * s + 1_000],
        "side": ["buy", "sell", "buy", "unknown", "sell"],
        "price": [100.0, 101.0, 99.0, 102.0, 98.0],
        "amount": [1.0, 2.0, 1.0, 0.5, 1.5],
    })
    ticker = pl.DataFrame({
        "timestamp": [t0 - 5 * s, t0 + 3 * s, t0 + 40 * s],
        "funding_rate": [0.0001, None, 0.0002], "predicted_funding_rate": [None, None, None],
        "open_interest": [1000.0, 1010.0, 1005.0], "mark_price": [100.0, 100.5, 98.5], "index_price": [None, 100.4, None],
    })
    liquidations = pl.DataFrame({"timestamp": [t0 + 4 * s, t0 + 45 * s, t0 + 46 * s],
                                 "side": ["buy", "sell", "sell"], "amount": [0.3, 0.2, 0.1]})
    c = candles(trades, dt.date(2024, 1, 1), INSTRUMENT, timeframes=["15s", "1m"], ticker=ticker,
                liquidations=liquidations)
    b0, b1, b2, b3 = c["15s"].head(4).to_dicts()
    # bucket 0 [0s, 15s): trades 1-3, the tie at 2s keeps file order (101 then 99)
    assert (b0["open"], b0["high"], b0["low"], b0["close"]) == (100.0, 101.0, 99.0, 99.0)
    assert b0["volume"] == 4.0 and b0["trade_count"] == 3
    assert b0["vwap"] == pytest.approx((100 + 202 + 99) / 4)
    assert (b0["buy_volume_sum"], b0["sell_volume_sum"], b0["size_avg"]) == (2.0, 2.0, 4 / 3)
    assert (b0["delay_median"], b0["delay_min"], b0["delay_max"]) == (3.0, 2.0, 4.0)
    # ticker as of the bucket end: 1010 at 3s; oi_change against the pre-day 1000
    assert (b0["open_interest"], b0["oi_change"], b0["funding_rate"], b0["index_price"]) == (1010.0, 10.0, 0.0001, 100.4)
    assert (b0["liquidation_buy_volume"], b0["liquidation_count"], b0["liquidation_with_rising_oi"]) == (0.3, 1, 0.3)
    # bucket 1 [15s, 30s): one 'unknown' trade: in volume, in neither taker side
    assert (b1["volume"], b1["buy_volume_sum"], b1["sell_volume_sum"], b1["oi_change"]) == (0.5, 0.0, 0.0, 0.0)
    # bucket 2 [30s, 45s): empty trades; OI falls to 1005 at 40s
    assert b2["trade_count"] == 0 and b2["volume"] == 0 and b2["open"] is None and b2["close"] is None
    assert (b2["open_interest"], b2["oi_change"], b2["funding_rate"], b2["mark_price"]) == (1005.0, -5.0, 0.0002, 98.5)
    assert b2["liquidation_count"] == 0 and b2["liquidation_with_falling_oi"] == 0.0
    # bucket 3 [45s, 60s): liquidations 0.2 + 0.1 sell while OI is flat (oi_change 0)
    assert (b3["liquidation_sell_volume"], b3["liquidation_count"]) == (pytest.approx(0.3), 2)
    assert b3["liquidation_with_rising_oi"] == b3["liquidation_with_falling_oi"] == 0.0
    m = c["1m"].row(0, named=True)
    assert (m["open"], m["high"], m["low"], m["close"], m["volume"], m["trade_count"]) == (100.0, 102.0, 98.0, 98.0, 6.0, 5)
    assert (m["open_interest"], m["oi_change"], m["liquidation_count"]) == (1005.0, 5.0, 3)
    assert c["1m"].row(1, named=True)["open_interest"] == 1005.0  # carried over


def test_late_trades_policy():
    """A trade stamped before midnight in day D's file belongs to D-1; one stamped in D that
    arrived after midnight (in D+1's file) belongs to D."""
    d = dt.date(2024, 1, 2)
    t0 = day_start_us(d)
    row = lambda ts, p: {"timestamp": ts, "local_timestamp": ts + 5_000, "side": "buy", "price": p, "amount": 1.0}
    today = pl.DataFrame([row(t0 - 2_000, 1.0), row(t0 + 10, 2.0), row(t0 + 86_399_999_000, 3.0)])
    tomorrow = pl.DataFrame([row(t0 + 86_399_999_500, 4.0), row(t0 + 86_400_000_100, 5.0)])
    rows = day_rows(today, tomorrow, d)
    assert rows["price"].to_list() == [2.0, 3.0, 4.0]
    assert day_rows(today, None, d)["price"].to_list() == [2.0, 3.0]
    daily = candles(rows, d, INSTRUMENT, timeframes=["24h"])["24h"].row(0, named=True)
    assert (daily["open"], daily["close"], daily["trade_count"]) == (2.0, 4.0, 3)


def test_additive_columns_equal_sums_over_1m(sample_server):
    from mdh_lib.sample_server.synthetic import day_csv_gz

    d = dt.date(2024, 1, 3)
    body = gzip.decompress(day_csv_gz("binance-futures", "trades", d, "BTCUSDT", 20_000))
    trades = read_trades(io.BytesIO(body))
    c = candles(day_rows(trades, None, d), d, INSTRUMENT)
    one = c["1m"]
    for tf in ("5m", "15m", "1h", "4h", "24h"):
        width = int(tf[:-1]) * (60 if tf.endswith("m") else 3600)
        rolled = one.group_by_dynamic("timestamp", every=f"{width}s").agg(
            volume=pl.col("volume").sum(), trade_count=pl.col("trade_count").sum(),
            buy_volume_sum=pl.col("buy_volume_sum").sum(), sell_volume_sum=pl.col("sell_volume_sum").sum(),
            high=pl.col("high").max(), low=pl.col("low").min(),
            open=pl.col("open").drop_nulls().first(), close=pl.col("close").drop_nulls().last(),
        )
        got = c[tf]
        assert got.height == rolled.height
        for col in ("trade_count", "high", "low", "open", "close"):
            assert got[col].to_list() == rolled[col].to_list(), (tf, col)
        for col in ("volume", "buy_volume_sum", "sell_volume_sum"):
            assert all(close(a, b) for a, b in zip(got[col].to_list(), rolled[col].to_list())), (tf, col)
    for tf, frame in c.items():
        assert check_candles(frame, d, tf) == [], tf
    assert {tf: f.height for tf, f in c.items()} == {tf: 86_400_000_000 // w for tf, w in TIMEFRAMES.items()}


@pytest.mark.parametrize(
    "breakage, failure",
    [
        (lambda f: f.with_columns(high=pl.col("low") - 1), "low <= open, close <= high"),
        (lambda f: f.with_columns(vwap=pl.col("high") * 2), "vwap within [low, high]"),
        (lambda f: f.with_columns(buy_volume_sum=pl.col("volume") + 1), "buy + sell volume <= volume"),
        (lambda f: f.head(100), "full_grid"),
        (lambda f: f.reverse(), "full_grid"),
        (lambda f: f.with_columns(trade_count=pl.col("trade_count").cast(pl.Float64)), "trade_count"),
        (lambda f: f.with_columns(open=pl.when(pl.col("trade_count") == 0).then(1.0).otherwise(pl.col("open"))),
         "an empty bucket has volume 0 and null prices"),
    ],
)
def test_checks_fail_on_broken_candles(breakage, failure):
    path = real_file("binance-futures_trades_2020-02-22_BTCUSDT.csv")
    good = candles(day_rows(read_trades(path), None, REAL_DAY), REAL_DAY, INSTRUMENT, timeframes=["1m"])["1m"]
    assert check_candles(good, REAL_DAY, "1m") == []
    problems = check_candles(breakage(good), REAL_DAY, "1m")
    assert problems and any(failure in p for p in problems), problems


def test_grid_check_of_feature_frames_fails_on_broken_data():
    """The `full_grid` check of book, MFT and options features."""
    from mdh_lib.timeframes import grid, grid_failures, to_datetime

    d = dt.date(2024, 1, 1)
    good = grid(d, "1m").with_columns(to_datetime()).drop("bucket")
    assert grid_failures(good, d, "1m") == []
    assert grid_failures(good.head(10), d, "1m") == ["full_grid: 10 rows, expected 1440"]
    assert "is not the start of" in grid_failures(good, dt.date(2024, 1, 2), "1m")[0]
    shuffled = pl.concat([good.slice(0, 1), good.slice(2, 1), good.slice(1, 1), good.slice(3)])
    assert grid_failures(shuffled, d, "1m") == ["full_grid: timestamps are not the day's consecutive buckets"]


def test_median_paths_agree_to_the_bit(monkeypatch):
    """`trade_bars` takes each timeframe's exact medians by a polars group-by or, for large
    buckets, by NumPy selection, on threads for a large day, and reduces the trades a slice
    at a time: every combination gives the same frames to the bit (so live buckets, computed one at a time, equal batch ones), and
    the medians equal DuckDB's."""
    import numpy as np

    from mdh_lib.candles import trades as bars
    from mdh_lib.sample_server.synthetic import day_csv_gz

    d = dt.date(2024, 1, 4)
    body = gzip.decompress(day_csv_gz("binance-futures", "trades", d, "BTCUSDT", 120_000))
    frame = day_rows(read_trades(io.BytesIO(body)), None, d).select(bars.TRADE_COLUMNS)
    assert frame.height >= bars.THREAD_FROM
    got = []
    for select_from, thread_from, slice_rows in ((10**9, 10**9, 10**9), (1, 10**9, 10**9), (1, 1, 10**9), (1, 1, 100),
                                                 (bars.SELECT_FROM, bars.THREAD_FROM, bars.SLICE_ROWS)):
        monkeypatch.setattr(bars, "SELECT_FROM", select_from)
        monkeypatch.setattr(bars, "THREAD_FROM", thread_from)
        monkeypatch.setattr(bars, "SLICE_ROWS", slice_rows)  # 100: slices of one bucket
        got.append(bars.trade_bars(frame))
    for other in got[1:]:
        for tf in TIMEFRAMES:
            assert other[tf].equals(got[0][tf]), tf
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 11, 1_000, 1_001):
        values = np.round(rng.normal(5.0, 3.0, n), 1)  # ties included
        assert bars._selected_medians(values, np.array([0]))[0] == pl.Series(values).median(), n
    sql = (f"SELECT timestamp // 3600000000 * 3600000000 AS bucket, median((local_timestamp - timestamp) / 1000.0) "
           f"AS m FROM frame GROUP BY 1 ORDER BY 1")
    want = duckdb.sql(sql).pl()
    assert all(close(a, b) for a, b in zip(got[0]["1h"]["delay_median"].to_list(), want["m"].to_list()))
