"""Book snapshot features: a hand-worked book, edge cases (NaN, crossed, zero depth), an
independent DuckDB computation on a random day, chunking invariance and real Tardis snapshots."""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import polars as pl
import pytest

from conftest import real_file
from polars.testing import assert_frame_equal

from mdh_lib.features.book import DERIVED_COLUMNS, FEATURE_COLUMNS, LEVEL_COLUMNS, BookAggregator, book_features
from mdh_lib.schemas import BOOK_COLUMNS, LEVEL_NAMES, header
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, US, day_start_us

DAY = dt.date(2024, 1, 1)
S = day_start_us(DAY)


def _book(rows: list[tuple[int, list, list]]) -> pl.DataFrame:
    """Raw book_snapshot_5 rows from (timestamp, asks, bids); a side lists (price, amount)
    from the best level, missing levels are null."""
    records = []
    for ts, asks, bids in rows:
        rec = {"exchange": "binance-futures", "symbol": "BTCUSDT", "timestamp": ts, "local_timestamp": ts + 1_000}
        for i in range(5):
            for side, levels in (("asks", asks), ("bids", bids)):
                price, amount = levels[i] if i < len(levels) else (None, None)
                rec[f"{side}[{i}].price"], rec[f"{side}[{i}].amount"] = price, amount
        records.append(rec)
    schema = {"exchange": pl.Utf8, "symbol": pl.Utf8, "timestamp": pl.Int64, "local_timestamp": pl.Int64}
    return pl.DataFrame(records, schema=schema | {c: pl.Float64 for c in BOOK_COLUMNS})


def _side(best: float, amount: float, step: float, levels: int = 5) -> list:
    """Best level (best, amount), deeper levels one price unit apart with amount 1."""
    return [(best, amount)] + [(best + step * k, 1.0) for k in range(1, levels)]


# s0 is stamped before the day, s4/s5 share a timestamp (s5 lacks asks[4]), s6 is next day.
HAND = _book([
    (S - 2 * US, _side(101, 2, 1), _side(99, 3, -1)),  # s0
    (S + 1 * US, _side(101, 1, 1), _side(99, 3, -1)),  # s1
    (S + 10 * US, _side(100, 2, 1), _side(99, 5, -1)),  # s2
    (S + 16 * US, _side(100, 2, 1), _side(99.5, 1, -1)),  # s3
    (S + 50 * US, _side(101, 3, 1), _side(99.5, 2, -1)),  # s4
    (S + 50 * US, _side(101, 4, 1, levels=4), _side(99.5, 2, -1)),  # s5
    (S + DAY_US + 5 * US, _side(200, 1, 1), _side(1, 1, -1)),  # s6
])
# CKS e_n by hand (bid term + ask term):
# s0->s1: bid 99=99: +3-3 = 0; ask 101=101: -1+2 = +1  -> 1
# s1->s2: bid 99=99: +5-3 = 2; ask 100<101: -2        -> 0
# s2->s3: bid 99.5>99: +1;     ask 100=100: -2+2 = 0  -> 1
# s3->s4: bid 99.5=99.5: +2-1; ask 101>100: +2        -> 3
# s4->s5: bid 99.5=99.5: +2-2; ask 101=101: -4+3      -> -1
# Mids: s0 100, s1 100, s2 99.5, s3 99.75, s4 100.25, s5 100.25.
# spread_bps: s1 200, s2 1e4/99.5, s3 5e3/99.75, s4 = s5 1.5e4/100.25.
# imbalance_1: s1 (3-1)/4 = 1/2, s2 (5-2)/7 = 3/7, s3 (1-2)/3 = -1/3, s4 (2-3)/5 = -1/5, s5 (2-4)/6 = -1/3.
SPREAD_BPS = [200, 1e4 / 99.5, 5e3 / 99.75, 1.5e4 / 100.25, 1.5e4 / 100.25]
IMBALANCE_1 = [1 / 2, 3 / 7, -1 / 3, -1 / 5, -1 / 3]


def _row(frame: pl.DataFrame, seconds: int) -> dict:
    ts = dt.datetime.fromtimestamp(S / US + seconds, dt.timezone.utc)
    return frame.filter(pl.col("timestamp") == ts).to_dicts()[0]


def _pop_std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def test_columns_and_derived_count():
    """The guide's "40+ derived features": every column past the timestamp and the 20 raw
    levels is derived, and the module docstring states the count."""
    import mdh_lib.features.book as book

    out = book_features([HAND], DAY, ["1m", "24h"])
    assert LEVEL_COLUMNS == list(LEVEL_NAMES.values()) and len(LEVEL_COLUMNS) == 20
    assert len(DERIVED_COLUMNS) == len(set(DERIVED_COLUMNS)) >= 40
    assert FEATURE_COLUMNS == ["timestamp", *LEVEL_COLUMNS, *DERIVED_COLUMNS]
    for frame in out.values():
        assert frame.columns == FEATURE_COLUMNS
        assert frame.schema["timestamp"] == pl.Datetime("us", "UTC") and frame.schema["snapshot_count"] == pl.Int64
        assert all(frame.schema[c] == pl.Float64 for c in FEATURE_COLUMNS[1:] if c != "snapshot_count")
    assert f"Derived count: {len(DERIVED_COLUMNS)} =" in book.__doc__
    assert all(f"``{c}``" in book.__doc__ or c.rstrip("012345") + "k``" in book.__doc__
               or c.rstrip("012345") + "i``" in book.__doc__ for c in DERIVED_COLUMNS)


def test_hand_worked_book():
    out = book_features([HAND], DAY)
    assert {tf: f.height for tf, f in out.items()} == {tf: DAY_US // w for tf, w in TIMEFRAMES.items()}
    f15 = out["15s"]
    assert f15.columns[:21] == ["timestamp", *LEVEL_NAMES.values()]
    assert f15.schema["timestamp"] == pl.Datetime("us", "UTC") and f15.width - 21 >= 40

    b0 = _row(f15, 0)  # s1, s2 in the bucket; s2 is last
    assert (b0["ask_price_0"], b0["bid_amount_0"], b0["bid_price_4"]) == (100, 5, 95)
    assert b0["mid"] == 99.5 and b0["spread"] == 1
    assert b0["spread_bps"] == pytest.approx(1 / 99.5 * 1e4, rel=1e-12)
    assert b0["microprice"] == pytest.approx((100 * 5 + 99 * 2) / 7, rel=1e-12)
    assert b0["imbalance_1"] == pytest.approx(3 / 7, rel=1e-12)
    assert (b0["bid_depth_5"], b0["ask_depth_5"], b0["bid_cum_depth_2"], b0["ask_cum_depth_4"]) == (9, 6, 6, 5)
    assert b0["imbalance_5"] == pytest.approx(0.2, rel=1e-12)
    assert b0["ask_dist_bps_0"] == pytest.approx(0.5 / 99.5 * 1e4, rel=1e-12)
    assert b0["bid_dist_bps_4"] == pytest.approx(4.5 / 99.5 * 1e4, rel=1e-12)
    # Cumulative depth grows by 1 per price unit = 99.5 / 1e4 per bp on both sides.
    assert b0["bid_slope"] == pytest.approx(0.00995, rel=1e-9)
    assert b0["ask_slope"] == pytest.approx(0.00995, rel=1e-9)
    assert b0["bid_wdist_bps"] == pytest.approx((5 * 0.5 + 1.5 + 2.5 + 3.5 + 4.5) / 9 / 99.5 * 1e4, rel=1e-12)
    assert b0["bid_vwap_5"] == pytest.approx((99 * 5 + 98 + 97 + 96 + 95) / 9, rel=1e-12)
    assert (b0["ofi"], b0["snapshot_count"], b0["staleness_ms"]) == (1, 2, 5_000.0)
    # s2: cumulative depth bid 5, 6, 7, 8, 9 and ask 2, 3, 4, 5, 6; deeper levels 1 vs 1.
    assert (b0["imbalance_2"], b0["imbalance_3"], b0["imbalance_4"]) == pytest.approx((3 / 9, 3 / 11, 3 / 13),
                                                                                      rel=1e-12)
    assert [b0[f"level_imbalance_{i}"] for i in range(1, 5)] == [0, 0, 0, 0]
    # From s0 (mid 100, the state at the day's start) to s2 (99.5); s1 (100) is the first in the bucket.
    assert b0["mid_log_return"] == pytest.approx(math.log(0.995), rel=1e-12)
    assert b0["mid_log_return_in_bucket"] == pytest.approx(math.log(0.995), rel=1e-12)
    assert b0["mid_realized_vol_bps"] == pytest.approx(-math.log(0.995) * 1e4, rel=1e-12)  # s0->s1 adds 0
    assert b0["spread_bps_mean"] == pytest.approx((200 + 1e4 / 99.5) / 2, rel=1e-12)
    assert b0["spread_bps_std"] == pytest.approx((200 - 1e4 / 99.5) / 2, rel=1e-12)  # population: |x1 - x2| / 2
    assert (b0["spread_bps_min"], b0["spread_bps_max"]) == pytest.approx((1e4 / 99.5, 200), rel=1e-12)
    assert (b0["imbalance_1_mean"], b0["imbalance_1_std"]) == pytest.approx((13 / 28, 1 / 28), rel=1e-12)

    b1 = _row(f15, 15)  # s3
    assert b1["mid"] == 99.75 and b1["spread"] == 0.5
    assert b1["microprice"] == pytest.approx((100 * 1 + 99.5 * 2) / 3, rel=1e-12)
    assert b1["imbalance_1"] == pytest.approx(-1 / 3, rel=1e-12)
    assert (b1["ofi"], b1["snapshot_count"], b1["staleness_ms"]) == (1, 1, 14_000.0)
    assert b1["mid_log_return"] == pytest.approx(math.log(99.75 / 99.5), rel=1e-12)
    assert b1["mid_realized_vol_bps"] == pytest.approx(math.log(99.75 / 99.5) * 1e4, rel=1e-12)
    # One snapshot: no move inside the bucket and population std 0.
    assert (b1["mid_log_return_in_bucket"], b1["spread_bps_std"], b1["imbalance_1_std"]) == (0, 0, 0)
    assert b1["spread_bps_mean"] == b1["spread_bps_min"] == b1["spread_bps_max"] == pytest.approx(5e3 / 99.75)
    assert b1["imbalance_1_mean"] == pytest.approx(-1 / 3, rel=1e-12)

    b2 = _row(f15, 30)  # empty: carries s3's state; flows 0, within-bucket statistics null
    per_bucket = {"timestamp", "staleness_ms", "ofi", "snapshot_count", "mid_realized_vol_bps", "mid_log_return",
                  "mid_log_return_in_bucket", "spread_bps_mean", "spread_bps_std", "spread_bps_min",
                  "spread_bps_max", "imbalance_1_mean", "imbalance_1_std"}
    assert {k: v for k, v in b2.items() if k not in per_bucket} == {k: v for k, v in b1.items() if k not in per_bucket}
    assert (b2["ofi"], b2["snapshot_count"], b2["staleness_ms"]) == (0, 0, 29_000.0)
    assert (b2["mid_realized_vol_bps"], b2["mid_log_return"]) == (0, 0)
    assert {b2[c] for c in per_bucket - {"timestamp", "staleness_ms", "ofi", "snapshot_count",
                                         "mid_realized_vol_bps", "mid_log_return"}} == {None}

    b3 = _row(f15, 45)  # s4 then s5 at the same timestamp: s5 (input order) is last
    assert (b3["ask_amount_0"], b3["ask_price_4"], b3["mid"], b3["spread"]) == (4, None, 100.25, 1.5)
    assert b3["imbalance_1"] == pytest.approx(-1 / 3, rel=1e-12)
    assert (b3["ask_cum_depth_4"], b3["ask_depth_5"], b3["imbalance_5"], b3["ask_slope"]) == (7, None, None, None)
    assert b3["bid_depth_5"] == 6 and b3["bid_slope"] is not None
    assert (b3["ofi"], b3["snapshot_count"], b3["staleness_ms"]) == (2, 2, 10_000.0)
    # s5: bid cumulative 2, 3, 4, 5 (no 5-level ask depth); asks[4] missing.
    assert b3["imbalance_4"] == pytest.approx((5 - 7) / 12, rel=1e-12) and b3["level_imbalance_4"] is None
    assert b3["mid_log_return"] == pytest.approx(math.log(100.25 / 99.75), rel=1e-12)
    assert b3["mid_log_return_in_bucket"] == 0  # s4 and s5 have the same mid
    assert b3["mid_realized_vol_bps"] == pytest.approx(math.log(100.25 / 99.75) * 1e4, rel=1e-12)
    assert (b3["spread_bps_mean"], b3["spread_bps_std"]) == (1.5e4 / 100.25, 0)
    assert (b3["imbalance_1_mean"], b3["imbalance_1_std"]) == pytest.approx((-4 / 15, 1 / 15), rel=1e-12)

    last = f15.row(-1, named=True)  # the next-day s6 is ignored
    assert (last["ask_amount_0"], last["snapshot_count"], last["staleness_ms"]) == (4, 0, (DAY_US - 50 * US) / 1_000)

    m0 = _row(out["1m"], 0)
    assert (m0["ask_amount_0"], m0["ofi"], m0["snapshot_count"], m0["staleness_ms"]) == (4, 4, 5, 10_000.0)
    # The 1m bucket combines its four 15s partials: s1..s5 as one set.
    assert m0["mid_log_return"] == pytest.approx(math.log(1.0025), rel=1e-12)
    assert m0["mid_log_return_in_bucket"] == pytest.approx(math.log(1.0025), rel=1e-12)
    rv = math.log(0.995) ** 2 + math.log(99.75 / 99.5) ** 2 + math.log(100.25 / 99.75) ** 2
    assert m0["mid_realized_vol_bps"] == pytest.approx(math.sqrt(rv) * 1e4, rel=1e-12)
    assert m0["spread_bps_mean"] == pytest.approx(sum(SPREAD_BPS) / 5, rel=1e-12)
    assert m0["spread_bps_std"] == pytest.approx(_pop_std(SPREAD_BPS), rel=1e-12)
    assert (m0["spread_bps_min"], m0["spread_bps_max"]) == pytest.approx((5e3 / 99.75, 200), rel=1e-12)
    assert m0["imbalance_1_mean"] == pytest.approx(sum(IMBALANCE_1) / 5, rel=1e-12)
    assert m0["imbalance_1_std"] == pytest.approx(_pop_std(IMBALANCE_1), rel=1e-12)
    # Sums of squared returns and returns add up over a bucket's 15s parts.
    assert sum(_row(f15, s)["mid_log_return"] for s in (0, 15, 30, 45)) == pytest.approx(m0["mid_log_return"])
    assert sum(_row(f15, s)["mid_realized_vol_bps"] ** 2 for s in (0, 15, 30, 45)) == pytest.approx(
        m0["mid_realized_vol_bps"] ** 2)
    m1 = _row(out["1m"], 60)
    assert (m1["mid_log_return"], m1["mid_realized_vol_bps"], m1["spread_bps_mean"]) == (0, 0, None)
    day = out["24h"].row(0, named=True)
    assert (day["ofi"], day["snapshot_count"], day["mid"]) == (4, 5, 100.25)
    assert day["mid_log_return"] == pytest.approx(math.log(1.0025), rel=1e-12)
    assert day["spread_bps_std"] == pytest.approx(_pop_std(SPREAD_BPS), rel=1e-12)


def test_no_state_before_the_first_snapshot():
    f15 = book_features([HAND.slice(3, 3)], DAY, ["15s"])["15s"]  # s3, s4, s5 only
    b0 = _row(f15, 0)
    assert b0["mid"] is None and b0["ask_price_0"] is None and b0["staleness_ms"] is None
    assert (b0["ofi"], b0["snapshot_count"]) == (0, 0)
    assert (_row(f15, 15)["ofi"], _row(f15, 45)["ofi"]) == (0, 2)  # s3 has no predecessor
    assert (b0["mid_log_return"], b0["spread_bps_mean"], b0["mid_realized_vol_bps"]) == (None, None, 0)
    b1 = _row(f15, 15)  # no state at its start, and s3 has no predecessor
    assert (b1["mid_log_return"], b1["mid_log_return_in_bucket"], b1["mid_realized_vol_bps"]) == (None, 0, 0)
    assert _row(f15, 45)["mid_log_return"] == pytest.approx(math.log(100.25 / 99.75), rel=1e-12)


def test_empty_input_and_zero_amounts():
    empty = book_features([], DAY, ["1h"])["1h"]
    assert empty.height == 24 and empty["mid"].null_count() == 24 and empty["snapshot_count"].sum() == 0
    zero = _book([(S, [(101, 0), (102, 1)], [(99, 0)])])  # level-1 amounts 0, one bid level
    row = book_features([zero], DAY, ["24h"])["24h"].row(0, named=True)
    assert (row["mid"], row["ask_cum_depth_2"], row["bid_cum_depth_1"]) == (100, 1, 0)
    assert (row["imbalance_1"], row["microprice"], row["bid_depth_5"], row["bid_slope"]) == (None,) * 4


def test_nan_crossed_book_and_zero_depth():
    """e1 crossed (ask 99 < bid 101) with level-1 amounts 1/3 and empty level-2 amounts; e2
    with a NaN ask amount; e3 with a NaN ask price: NaN reads as missing."""
    nan = float("nan")
    edge = _book([
        (S + 1 * US, [(99, 1), (102, 0)], [(101, 3), (98, 0)]),  # e1
        (S + 16 * US, [(100.5, nan)], [(99.5, 1)]),  # e2
        (S + 31 * US, [(nan, 1)], [(99, 1)]),  # e3
    ])
    out = book_features([edge], DAY, ["15s", "1m"])
    e1, e2, e3 = (_row(out["15s"], s) for s in (0, 15, 30))
    assert (e1["mid"], e1["spread"], e1["spread_bps"], e1["ask_dist_bps_0"]) == (100, -2, -200, -100)
    assert e1["imbalance_1"] == 0.5 and e1["imbalance_2"] == 0.5 and e1["level_imbalance_1"] is None  # 0 / 0
    assert (e1["spread_bps_mean"], e1["spread_bps_std"], e1["imbalance_1_std"]) == (-200, 0, 0)
    assert (e2["ask_amount_0"], e2["imbalance_1"], e2["microprice"], e2["spread_bps"]) == (None, None, None, 100)
    assert (e2["imbalance_1_mean"], e2["imbalance_1_std"], e2["spread_bps_mean"]) == (None, None, 100)
    assert (e2["ofi"], e2["mid_realized_vol_bps"], e2["mid_log_return"]) == (0, 0, 0)  # mid 100 -> 100
    assert (e3["ask_price_0"], e3["mid"], e3["spread_bps_mean"], e3["spread_bps_max"]) == (None,) * 4
    assert (e3["mid_log_return"], e3["mid_log_return_in_bucket"], e3["mid_realized_vol_bps"], e3["ofi"]) == (
        None, None, 0, 0)
    m0 = _row(out["1m"], 0)  # e3's missing spread is left out of n
    assert (m0["spread_bps_mean"], m0["spread_bps_std"], m0["spread_bps_min"], m0["spread_bps_max"]) == (
        -50, 150, -200, 100)
    # imbalance_1: e1 1/2, e2 missing, e3 (1 - 1) / 2 = 0 (its amounts are there)
    assert (m0["imbalance_1_mean"], m0["imbalance_1_std"], m0["snapshot_count"]) == (0.25, 0.25, 3)
    assert m0["mid_log_return_in_bucket"] is None  # the last mid is missing


def test_unsorted_input_is_rejected():
    agg = BookAggregator(DAY)
    agg.update(HAND.slice(2, 2))
    with pytest.raises(ValueError, match="sorted"):
        agg.update(HAND.slice(0, 1))


def _random_day(n: int = 50_000, seed: int = 7) -> pl.DataFrame:
    """Random snapshots on a 0.5 tick grid (so equal prices are common), with ties, a pre-day
    and next-day margin, a two-hour gap, zero amounts and sides cut short."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(S - 30 * US, S + DAY_US + 30 * US, n))
    ts = ts[(ts < S + 3_600 * US) | (ts >= S + 3 * 3_600 * US)]
    n = len(ts)
    ties = rng.random(n) < 0.01
    ties[0] = False
    ts = np.where(ties, np.roll(ts, 1), ts)
    bid = 40_000 + 0.5 * np.cumsum(rng.integers(-1, 2, n))
    ask = bid + 0.5 * rng.integers(1, 3, n)
    cols = {"exchange": ["x"] * n, "symbol": ["Y"] * n, "timestamp": ts, "local_timestamp": ts}
    depth = {s: np.where(rng.random(n) < 0.03, rng.integers(0, 5, n), 5) for s in ("asks", "bids")}
    for i in range(5):
        for side, best, sign in (("asks", ask, 1), ("bids", bid, -1)):
            amount = np.round(rng.exponential(2.0, n), 3) * (rng.random(n) > 0.01)
            present = i < depth[side]
            cols[f"{side}[{i}].price"] = np.where(present, best + sign * 0.5 * i, np.nan)
            cols[f"{side}[{i}].amount"] = np.where(present, amount, np.nan)
    return pl.DataFrame(cols).select(header("book_snapshot_5")).fill_nan(None)


def _duckdb_book(snaps: pl.DataFrame, width: int) -> pl.DataFrame:
    """The same features written directly in SQL over all rows (not using mdh_lib)."""
    snaps = snaps.with_row_index("i").with_columns(  # noqa: F841 (read by DuckDB)
        pl.col("i").cast(pl.Int64),
        mid_r=(pl.col("asks[0].price") + pl.col("bids[0].price")) / 2)
    a, aq, b, bq = '"asks[0].price"', '"asks[0].amount"', '"bids[0].price"', '"bids[0].amount"'

    def depth(side: str, k: int) -> str:
        return "(" + " + ".join(f'"{side}[{i}].amount"' for i in range(k)) + ")"

    def amount(side: str, i: int) -> str:
        return f'"{side}[{i}].amount"'

    def imbalance(bid: str, ask: str) -> str:
        return f"({bid} - {ask}) / NULLIF({bid} + {ask}, 0)"

    levels = ", ".join(f'"{c}" AS {LEVEL_NAMES[c]}' for c in BOOK_COLUMNS)
    imbalances = ", ".join(
        [f"{imbalance(depth('bids', k), depth('asks', k))} AS imbalance_{k}" for k in range(1, 6)]
        + [f"{imbalance(amount('bids', i), amount('asks', i))} AS level_imbalance_{i}" for i in range(1, 5)])
    sql = f"""
    WITH e AS (
        SELECT i, timestamp, mid_r,
               ({b} >= lag({b}) OVER w)::DOUBLE * {bq} - ({b} <= lag({b}) OVER w)::DOUBLE * lag({bq}) OVER w
             - ({a} <= lag({a}) OVER w)::DOUBLE * {aq} + ({a} >= lag({a}) OVER w)::DOUBLE * lag({aq}) OVER w AS e,
               CASE WHEN mid_r > 0 AND lag(mid_r) OVER w > 0 THEN ln(mid_r / lag(mid_r) OVER w) ^ 2 END AS r2,
               ({a} - {b}) / NULLIF(mid_r, 0) * 1e4 AS sbps,
               ({bq} - {aq}) / NULLIF({bq} + {aq}, 0) AS imb
        FROM snaps WINDOW w AS (ORDER BY i)),
    per AS (
        SELECT timestamp // {width} * {width} AS bucket, max(i) AS last_i, min(i) AS first_i,
               count(*) AS snapshot_count, coalesce(sum(e), 0) AS ofi, coalesce(sum(r2), 0) AS rv,
               avg(sbps) AS spread_bps_mean, stddev_pop(sbps) AS spread_bps_std,
               min(sbps) AS spread_bps_min, max(sbps) AS spread_bps_max,
               avg(imb) AS imbalance_1_mean, stddev_pop(imb) AS imbalance_1_std
        FROM e WHERE timestamp >= {S} AND timestamp < {S + DAY_US} GROUP BY 1),
    pick AS (
        SELECT g.bucket, per.* EXCLUDE (bucket, snapshot_count, ofi, rv),
               coalesce(snapshot_count, 0) AS snapshot_count, coalesce(ofi, 0) AS ofi, coalesce(rv, 0) AS rv,
               coalesce(max(last_i) OVER (ORDER BY g.bucket), (SELECT max(i) FROM snaps WHERE timestamp < {S})) AS i
        FROM range({S}, {S + DAY_US}, {width}) g(bucket) LEFT JOIN per ON per.bucket = g.bucket),
    framed AS (
        SELECT *, lag(i, 1, (SELECT max(i) FROM snaps WHERE timestamp < {S})) OVER (ORDER BY bucket) AS start_i
        FROM pick)
    SELECT bucket, {levels}, snapshot_count, ofi,
           ({a} + {b}) / 2 AS mid,
           ({a} - {b}) / NULLIF(({a} + {b}) / 2, 0) * 1e4 AS spread_bps,
           {imbalances},
           sqrt(rv) * 1e4 AS mid_realized_vol_bps,
           CASE WHEN s.mid_r > 0 AND st.mid_r > 0 THEN ln(s.mid_r / st.mid_r) END AS mid_log_return,
           CASE WHEN snapshot_count > 0 AND s.mid_r > 0 AND f.mid_r > 0 THEN ln(s.mid_r / f.mid_r) END
               AS mid_log_return_in_bucket,
           spread_bps_mean, spread_bps_std, spread_bps_min, spread_bps_max, imbalance_1_mean, imbalance_1_std
    FROM framed LEFT JOIN snaps s USING (i)
         LEFT JOIN (SELECT i, mid_r FROM snaps) st ON st.i = framed.start_i
         LEFT JOIN (SELECT i, mid_r FROM snaps) f ON f.i = framed.first_i
    ORDER BY bucket"""
    return duckdb.sql(sql).pl()


def _assert_close(got: pl.Series, want: pl.Series, name: str) -> None:
    assert (got.is_null() == want.is_null()).all(), name
    ok = got.is_not_null()
    np.testing.assert_allclose(
        got.filter(ok).to_numpy(), want.filter(ok).to_numpy(), rtol=1e-9, atol=1e-12, err_msg=name
    )


@pytest.fixture(scope="module")
def random_day() -> pl.DataFrame:
    return _random_day()


def test_matches_duckdb(random_day):
    out = book_features([random_day], DAY, ["15s", "1m", "1h"])
    for tf in ("15s", "1m", "1h"):
        got, want = out[tf], _duckdb_book(random_day, TIMEFRAMES[tf])
        assert got.height == want.height
        assert got["timestamp"].dt.epoch("us").to_list() == want["bucket"].to_list()
        assert got["snapshot_count"].to_list() == want["snapshot_count"].to_list(), tf
        checked = [c for c in want.columns if c not in ("bucket", "snapshot_count")]
        assert len(checked) == 20 + 21  # the levels and 21 features: every flow and bucket statistic among them
        for col in checked:
            _assert_close(got[col], want[col], f"{tf} {col}")
        for col in ("spread_bps_std", "imbalance_1_std", "mid_log_return", "level_imbalance_4"):
            assert got[col].null_count() < got.height and (got[col] != 0).any(), col  # exercised
        assert got["mid"].null_count() < got.height  # the random day has content
        assert (got["snapshot_count"] == 0).any()  # and empty buckets


def test_chunking_invariance(random_day):
    whole = book_features([random_day], DAY)
    rng = np.random.default_rng(1)
    cuts = np.unique(np.concatenate([[0, 1, 1, 2], rng.integers(0, random_day.height, 400), [random_day.height]]))
    chunks = [random_day.slice(lo, hi - lo) for lo, hi in zip(cuts[:-1], cuts[1:])] + [random_day.clear()]
    chunked = book_features(iter(chunks), DAY)
    for tf in TIMEFRAMES:
        assert_frame_equal(chunked[tf], whole[tf], check_exact=True)


def test_real_binance_futures_snapshots():
    path = real_file("binance-futures_book_snapshot_5_2020-09-01_BTCUSDT.csv")
    raw = pl.read_csv(path, schema_overrides={"timestamp": pl.Int64, "local_timestamp": pl.Int64})
    f15 = book_features([raw], dt.date(2020, 9, 1), ["15s"])["15s"]
    first = f15.row(0, named=True)  # all ten snapshots fall in 00:00:00-00:00:15
    # last row: ask 11657.08 x 1.393, bid 11657.07 x 10.881, stamped 1598918404284000
    assert first["snapshot_count"] == 10 and first["ask_amount_0"] == 1.393
    assert first["mid"] == pytest.approx(11657.075, rel=1e-12)
    assert first["spread"] == pytest.approx(0.01, rel=1e-6)
    assert first["microprice"] == pytest.approx((11657.08 * 10.881 + 11657.07 * 1.393) / 12.274, rel=1e-12)
    assert first["imbalance_1"] == pytest.approx((10.881 - 1.393) / 12.274, rel=1e-12)
    assert first["bid_depth_5"] == pytest.approx(10.881 + 0.2 + 0.2 + 0.98 + 0.188, rel=1e-12)
    assert first["ask_depth_5"] == pytest.approx(1.393 + 5.4 + 0.238 + 0.077 + 0.918, rel=1e-12)
    # Level-1 prices never move, so OFI telescopes to (last - first) bid minus ask amount.
    assert first["ofi"] == pytest.approx((10.881 - 10.896) - (1.393 - 1.714), rel=1e-9)
    assert first["staleness_ms"] == pytest.approx(15_000 - 4_284, rel=1e-12)
    second = f15.row(1, named=True)
    assert (second["snapshot_count"], second["ofi"], second["mid"]) == (0, 0, first["mid"])
