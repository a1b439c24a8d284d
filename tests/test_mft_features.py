"""MFT features: a hand-worked example, an independent DuckDB SQL computation, continuity across
days and edge cases (every timeframe, all-empty day, no history)."""

from __future__ import annotations

import datetime as dt
import math
import statistics

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdh_lib.features.mft import WINDOWS, history_bars, mft_features
from mdh_lib.timeframes import DAY_US, MFT_TIMEFRAMES, width_us

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
FEATURES = [
    "log_return", "realized_vol_short", "realized_vol_long", "realized_vol_long_annualized",
    "parkinson_vol_short", "parkinson_vol_long", "garman_klass_vol_short", "garman_klass_vol_long",
    "volume_zscore", "flow_imbalance", "flow_imbalance_short", "flow_imbalance_long", "vpin",
    "amihud_illiquidity", "kyle_lambda", "roll_spread",
]
EMPTY = (None, None, None, None, 0.0, None, 0.0, 0.0, 0)


def candles(rows: list[tuple], start: dt.datetime = T0, timeframe: str = "1m") -> pl.DataFrame:
    """Candles from (open, high, low, close, volume, vwap, buy, sell, trade_count) rows."""
    cols = ["open", "high", "low", "close", "volume", "vwap", "buy_volume_sum", "sell_volume_sum", "trade_count"]
    df = pl.DataFrame(rows, schema=cols, orient="row")
    ts = pl.datetime_range(start, start + (df.height - 1) * dt.timedelta(microseconds=width_us(timeframe)),
                           dt.timedelta(microseconds=width_us(timeframe)), time_unit="us", eager=True)
    return df.select(ts.alias("timestamp"), pl.exclude("trade_count").cast(pl.Float64), pl.col("trade_count").cast(pl.Int64))


def synthetic(n: int, timeframe: str = "1m", seed: int = 7, empty: float = 0.1, start: dt.datetime = T0) -> pl.DataFrame:
    """Random full-grid candles: a random-walk mid with bid-ask bounce (negative return
    autocorrelation, so Roll's spread exists), flow that moves price (so Kyle lambda > 0), and
    ~``empty`` of bars without trades (the first three always empty: no price yet)."""
    rng = np.random.default_rng(seed)
    flow = rng.normal(0, 1, n)
    mid = 30_000 * np.exp(np.cumsum(1e-3 * rng.normal(0, 1, n) + 5e-4 * flow))
    close = mid * (1 + 1e-3 * rng.choice([-1, 1], n))
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + 1e-4 * rng.normal(0, 1, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 5e-4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 5e-4, n)))
    volume = rng.lognormal(0, 1, n)
    buy = volume / (1 + np.exp(-flow))
    rows = [(o, h, lo, c, v, (h + lo) / 2, b, 0.97 * (v - b), int(rng.integers(1, 50)))
            for o, h, lo, c, v, b in zip(open_, high, low, close, volume, buy)]
    for i in [0, 1, 2, *np.flatnonzero(rng.random(n) < empty)]:
        rows[i] = EMPTY
    return candles(rows, start, timeframe)


# --- hand-worked example -------------------------------------------------------------------------

HAND = [  # open, high, low, close, volume, vwap, buy, sell, trade_count
    (100.0, 101.0, 99.0, 100.0, 2.0, 100.0, 1.5, 0.5, 3),
    (100.0, 102.0, 100.0, 102.0, 1.0, 101.0, 0.25, 0.75, 2),
    EMPTY,
    (102.0, 103.0, 100.0, 101.0, 3.0, 101.5, 1.0, 2.0, 4),
    (101.0, 101.0, 101.0, 101.0, 1.0, 101.0, 1.0, 0.0, 1),  # one trade: H = L, C = O
    (101.0, 104.0, 101.0, 104.0, 4.0, 103.0, 3.0, 1.0, 5),
    (104.0, 104.0, 102.0, 103.0, 2.0, 103.0, 0.0, 2.0, 2),
    (103.0, 105.0, 103.0, 105.0, 2.0, 104.0, 2.0, 0.0, 3),
]


def pk(h: float, lo: float) -> float:
    return math.log(h / lo) ** 2 / (4 * math.log(2))


def gk(o: float, h: float, lo: float, c: float) -> float:
    return 0.5 * math.log(h / lo) ** 2 - (2 * math.log(2) - 1) * math.log(c / o) ** 2


def test_hand_worked_example(monkeypatch):
    monkeypatch.setitem(WINDOWS, "1m", (3, 4))  # short 3, long 4 bars: minimum 2 observations
    out = mft_features(candles(HAND), None, "1m")
    f = {c: out[c].to_list() for c in FEATURES}
    ln, approx = math.log, pytest.approx
    r = [None, ln(102 / 100), 0.0, ln(101 / 102), 0.0, ln(104 / 101), ln(103 / 104), ln(105 / 103)]
    assert f["log_return"][0] is None and f["log_return"][1:] == approx(r[1:], rel=1e-12, abs=0)
    assert f["log_return"][2] == 0.0  # empty bar: the last price did not move

    # realized vol needs all 3 / 4 returns of the window (bar 0 has none)
    assert f["realized_vol_short"][:3] == [None] * 3
    assert f["realized_vol_short"][3] == approx(math.sqrt(ln(1.02) ** 2 + ln(101 / 102) ** 2))
    rv7 = math.sqrt(ln(104 / 101) ** 2 + ln(103 / 104) ** 2 + ln(105 / 103) ** 2)
    assert f["realized_vol_long"][:4] == [None] * 4
    assert f["realized_vol_long"][7] == approx(rv7)
    assert f["realized_vol_long_annualized"][7] == approx(rv7 * math.sqrt(365 * 1440 / 4))

    # Parkinson over bars 1..3: the empty bar 2 is left out of the mean
    assert f["parkinson_vol_short"][0] is None  # one valid bar < 2
    assert f["parkinson_vol_short"][3] == approx(math.sqrt((pk(102, 100) + pk(103, 100)) / 2))
    gk7 = [0.0, gk(101, 104, 101, 104), gk(104, 104, 102, 103), gk(103, 105, 103, 105)]
    assert f["garman_klass_vol_long"][7] == approx(math.sqrt(sum(gk7) / 4))

    vols = [1.0, 4.0, 2.0, 2.0]  # bars 4..7
    assert f["volume_zscore"][7] == approx((2.0 - 2.25) / statistics.stdev(vols))
    assert f["volume_zscore"][7] == approx(-0.25 / math.sqrt(4.75 / 3))

    assert f["flow_imbalance"] == approx([0.5, -0.5, None, -1 / 3, 1.0, 0.5, -1.0, 1.0])
    assert f["flow_imbalance_long"][3] == approx(-0.5 / 6)  # (1 - 0.5 + 0 - 1) / (2 + 1 + 0 + 3)
    assert f["flow_imbalance_short"][7] == approx(2 / 8)  # bars 5..7: (2 - 2 + 2) / (4 + 2 + 2)
    assert f["vpin"][3] == approx(2.5 / 6)  # (1 + 0.5 + 0 + 1) / 6
    assert f["vpin"][7] == approx((1 + 2 + 2 + 2) / 9)

    # Amihud over bars 0..3: bar 0 has no return, bar 2 no dollar volume
    assert f["amihud_illiquidity"][3] == approx((ln(1.02) / 101 + abs(ln(101 / 102)) / (3 * 101.5)) / 2)

    # Kyle lambda over bars 4..7: OLS slope of r on (buy - sell) * vwap
    flow7 = [1 * 101.0, 2 * 103.0, -2 * 103.0, 2 * 104.0]
    assert f["kyle_lambda"][7] == approx(statistics.linear_regression(flow7, r[4:8]).slope)

    # Roll over bars 4..7: pairs (r_t, r_{t-1}), sample covariance, negative here
    cov = statistics.covariance(r[4:8], r[3:7])
    assert cov < 0
    assert f["roll_spread"][7] == approx(2 * math.sqrt(-cov))
    assert f["roll_spread"][3] is None  # pairs (r2, r1), (r3, r2): covariance >= 0


# --- independent computation in DuckDB SQL -------------------------------------------------------

SQL = """
WITH p AS (
    SELECT *, ln(last_value(close IGNORE NULLS) OVER (ORDER BY timestamp ROWS UNBOUNDED PRECEDING)) AS lp
    FROM bars
), r AS (
    SELECT *, lp - lag(lp) OVER (ORDER BY timestamp) AS r,
           pow(ln(high / low), 2) / (4 * ln(2)) AS pk,
           0.5 * pow(ln(high / low), 2) - (2 * ln(2) - 1) * pow(ln(close / open), 2) AS gk,
           (buy_volume_sum - sell_volume_sum) * vwap AS flow
    FROM p
), x AS (
    SELECT *, lag(r) OVER (ORDER BY timestamp) AS r_prev, abs(r) / nullif(volume * vwap, 0) AS illiq FROM r
)
SELECT timestamp,
    r AS log_return,
    CASE WHEN count(r) OVER s = {S} THEN sqrt(sum(r * r) OVER s) END AS realized_vol_short,
    CASE WHEN count(r) OVER l = {L} THEN sqrt(sum(r * r) OVER l) END AS realized_vol_long,
    CASE WHEN count(r) OVER l = {L} THEN sqrt(avg(r * r) OVER l * {BPY}) END AS realized_vol_long_annualized,
    CASE WHEN count(pk) OVER s >= {MS} THEN sqrt(avg(pk) OVER s) END AS parkinson_vol_short,
    CASE WHEN count(pk) OVER l >= {ML} THEN sqrt(avg(pk) OVER l) END AS parkinson_vol_long,
    CASE WHEN count(gk) OVER s >= {MS} THEN sqrt(avg(gk) OVER s) END AS garman_klass_vol_short,
    CASE WHEN count(gk) OVER l >= {ML} THEN sqrt(avg(gk) OVER l) END AS garman_klass_vol_long,
    CASE WHEN count(*) OVER l >= {ML} AND stddev_samp(volume) OVER l > 0
         THEN (volume - avg(volume) OVER l) / stddev_samp(volume) OVER l END AS volume_zscore,
    (buy_volume_sum - sell_volume_sum) / nullif(buy_volume_sum + sell_volume_sum, 0) AS flow_imbalance,
    CASE WHEN count(*) OVER s >= {MS} THEN sum(buy_volume_sum - sell_volume_sum) OVER s
         / nullif(sum(buy_volume_sum + sell_volume_sum) OVER s, 0) END AS flow_imbalance_short,
    CASE WHEN count(*) OVER l >= {ML} THEN sum(buy_volume_sum - sell_volume_sum) OVER l
         / nullif(sum(buy_volume_sum + sell_volume_sum) OVER l, 0) END AS flow_imbalance_long,
    CASE WHEN count(*) OVER l >= {ML} THEN sum(abs(buy_volume_sum - sell_volume_sum)) OVER l
         / nullif(sum(volume) OVER l, 0) END AS vpin,
    CASE WHEN count(illiq) OVER l >= {ML} THEN avg(illiq) OVER l END AS amihud_illiquidity,
    CASE WHEN regr_count(r, flow) OVER l >= {ML} THEN regr_slope(r, flow) OVER l END AS kyle_lambda,
    CASE WHEN regr_count(r, r_prev) OVER l >= {ML} AND covar_samp(r, r_prev) OVER l < 0
         THEN 2 * sqrt(-covar_samp(r, r_prev) OVER l) END AS roll_spread
FROM x
WINDOW s AS (ORDER BY timestamp ROWS BETWEEN {S1} PRECEDING AND CURRENT ROW),
       l AS (ORDER BY timestamp ROWS BETWEEN {L1} PRECEDING AND CURRENT ROW)
ORDER BY timestamp
"""


def duckdb_features(bars: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    s, l = WINDOWS[timeframe]
    sql = SQL.format(S=s, L=l, S1=s - 1, L1=l - 1, MS=(s + 1) // 2, ML=(l + 1) // 2, BPY=365 * DAY_US / width_us(timeframe))
    con = duckdb.connect()
    con.register("bars", bars.to_arrow())
    return con.sql(sql).pl().with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))


def assert_close(got: pl.DataFrame, want: pl.DataFrame, rtol: float = 1e-9) -> None:
    assert got.columns == ["timestamp", *FEATURES]
    assert got["timestamp"].to_list() == want["timestamp"].to_list()
    for c in FEATURES:
        g, w = got[c].to_numpy(), want[c].cast(pl.Float64).to_numpy()
        assert np.array_equal(np.isnan(g), np.isnan(w)), f"{c}: null pattern differs"
        assert np.isfinite(g[~np.isnan(g)]).all(), c
        scale = np.nanmax(np.abs(w)) if (~np.isnan(w)).any() else 0.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12 * scale, equal_nan=True, err_msg=c)


def test_matches_duckdb_sql():
    both = synthetic(2 * 1440, seed=11)
    history, day = both.head(1440), both.tail(1440)
    want = duckdb_features(both, "1m").tail(1440)
    got = mft_features(day, history, "1m")
    assert_close(got, want)
    for c in FEATURES:  # the random day exercises every feature
        assert got[c].null_count() < 300, c


def test_matches_duckdb_sql_from_start_of_data_5m():
    bars = synthetic(288, "5m", seed=3, empty=0.3)
    assert_close(mft_features(bars, None, "5m"), duckdb_features(bars, "5m"))


# --- continuity, history, timeframes, edge cases --------------------------------------------------

def test_continuity_across_midnight():
    both = synthetic(2 * 1440, seed=5)
    day1, day2 = both.head(1440), both.tail(1440)
    together = mft_features(both, None, "1m").tail(1440)
    assert_frame_equal(mft_features(day2, day1, "1m"), together)
    # history_bars of history suffices: every window is summed from scratch, so exactly
    assert_frame_equal(mft_features(day2, day1.tail(history_bars("1m")), "1m"), together)
    # less history: as if the data started there
    short = mft_features(day2, day1.tail(10), "1m")
    assert_frame_equal(short, mft_features(pl.concat([day1.tail(10), day2]), None, "1m").tail(1440))
    assert short["realized_vol_long"][:50].null_count() == 50
    # and without history the day restarts: its first bars differ
    assert mft_features(day2, None, "1m")["log_return"][0] is None


@pytest.mark.parametrize("timeframe", MFT_TIMEFRAMES)
def test_every_timeframe(timeframe):
    n_day = DAY_US // width_us(timeframe)
    h = history_bars(timeframe)
    start = T0 - dt.timedelta(microseconds=(h + 10) * width_us(timeframe))
    both = synthetic(h + 10 + n_day, timeframe, seed=1, empty=0.0, start=start)
    long_history, day = both.head(h + 10), both.tail(n_day)
    out = mft_features(day, long_history.tail(h), timeframe)
    assert out.height == n_day
    assert out["timestamp"].to_list() == day["timestamp"].to_list()
    assert out.columns == ["timestamp", *FEATURES]
    assert all(dtype == pl.Float64 for dtype in out.drop("timestamp").dtypes)
    # with history_bars of history every window is complete at the day's first bar
    first = out.row(0, named=True)
    assert all(first[c] is not None for c in FEATURES if c != "roll_spread"), first
    assert_frame_equal(out, mft_features(day, long_history, timeframe))
    assert_close(mft_features(day, None, timeframe), duckdb_features(day, timeframe))


def test_history_bars():
    assert [history_bars(tf) for tf in MFT_TIMEFRAMES] == [61, 61, 61, 61, 31, 31]
    with pytest.raises(ValueError):
        history_bars("15s")
    with pytest.raises(ValueError):
        mft_features(synthetic(10), None, "15s")


def test_all_empty_day():
    day = candles([EMPTY] * 1440)
    out = mft_features(day, None, "1m")
    assert out.height == 1440 and all(out[c].null_count() == 1440 for c in FEATURES)

    # after a traded history: the price stands still, bar-range estimators run out of bars
    history = synthetic(history_bars("1m"), start=T0 - dt.timedelta(minutes=history_bars("1m")), empty=0.0)
    out = mft_features(day, history, "1m")
    assert out["log_return"].to_list() == [0.0] * 1440
    flat = out.slice(60)  # every window of the long features lies in the day
    for c in FEATURES[1:4]:
        assert flat[c].to_list() == [0.0] * flat.height, c
    for c in FEATURES[4:]:  # no bars to measure, zero variance, or a zero (not tiny) covariance
        assert flat[c].null_count() == flat.height, c


def test_history_none_and_empty_history():
    day = synthetic(1440, seed=2)
    out = mft_features(day, None, "1m")
    assert_frame_equal(out, mft_features(day, day.clear(), "1m"))
    assert out["log_return"][:4].to_list() == [None] * 4  # no price until bar 3, no previous at 3


def test_gaps_are_refused():
    both = synthetic(200)
    with pytest.raises(ValueError, match="consecutive"):  # history does not end just before the day
        mft_features(both.tail(100), both.head(90), "1m")
    with pytest.raises(ValueError, match="consecutive"):  # a missing bar inside the history
        mft_features(both.tail(100), pl.concat([both.head(40), both.slice(41, 59)]), "1m")


def test_extra_columns_and_dtypes_tolerated():
    both = synthetic(300, seed=9).with_columns(exchange=pl.lit("binance"))
    history = both.head(100).with_columns(pl.col("volume").cast(pl.Float32))
    out = mft_features(both.tail(200), history, "1m")
    assert out.columns == ["timestamp", *FEATURES]


def test_log_return_keeps_every_digit_of_small_returns():
    """ln(c_t / c_{t-1}) against 50-digit decimal arithmetic: prices 70088.74 -> 70088.75 (a 1.4e-7
    return) and 1e-5 moves keep a relative error of a few 1e-16, where a difference of logs loses
    about five digits."""
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    closes = [70_088.74, 70_088.75, 70_089.45, 70_088.75, 100_000.0, 100_001.0]
    rows = [(c, c, c, c, 1.0, c, 0.5, 0.5, 1) for c in closes]
    got = mft_features(candles(rows), None, "1m")["log_return"].to_list()[1:]
    for k, r in enumerate(got, start=1):
        exact = float((Decimal(closes[k]) / Decimal(closes[k - 1])).ln())
        assert r == pytest.approx(exact, rel=4e-16, abs=0), (k, r, exact)
