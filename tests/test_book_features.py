"""Book snapshot features: a hand-worked book, an independent DuckDB computation on a random
day, chunking invariance and real Tardis snapshots."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest

from conftest import real_file
from polars.testing import assert_frame_equal

from mdh_lib.features.book import BookAggregator, book_features
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


def _row(frame: pl.DataFrame, seconds: int) -> dict:
    ts = dt.datetime.fromtimestamp(S / US + seconds, dt.timezone.utc)
    return frame.filter(pl.col("timestamp") == ts).to_dicts()[0]


def test_hand_worked_book():
    out = book_features([HAND], DAY)
    assert {tf: f.height for tf, f in out.items()} == {tf: DAY_US // w for tf, w in TIMEFRAMES.items()}
    f15 = out["15s"]
    assert f15.columns[:21] == ["timestamp", *LEVEL_NAMES.values()]
    assert f15.schema["timestamp"] == pl.Datetime("us", "UTC") and f15.width - 21 >= 20

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

    b1 = _row(f15, 15)  # s3
    assert b1["mid"] == 99.75 and b1["spread"] == 0.5
    assert b1["microprice"] == pytest.approx((100 * 1 + 99.5 * 2) / 3, rel=1e-12)
    assert b1["imbalance_1"] == pytest.approx(-1 / 3, rel=1e-12)
    assert (b1["ofi"], b1["snapshot_count"], b1["staleness_ms"]) == (1, 1, 14_000.0)

    b2 = _row(f15, 30)  # empty: carries s3
    assert {k: v for k, v in b2.items() if k not in ("timestamp", "staleness_ms", "ofi", "snapshot_count")} == {
        k: v for k, v in b1.items() if k not in ("timestamp", "staleness_ms", "ofi", "snapshot_count")
    }
    assert (b2["ofi"], b2["snapshot_count"], b2["staleness_ms"]) == (0, 0, 29_000.0)

    b3 = _row(f15, 45)  # s4 then s5 at the same timestamp: s5 (input order) is last
    assert (b3["ask_amount_0"], b3["ask_price_4"], b3["mid"], b3["spread"]) == (4, None, 100.25, 1.5)
    assert b3["imbalance_1"] == pytest.approx(-1 / 3, rel=1e-12)
    assert (b3["ask_cum_depth_4"], b3["ask_depth_5"], b3["imbalance_5"], b3["ask_slope"]) == (7, None, None, None)
    assert b3["bid_depth_5"] == 6 and b3["bid_slope"] is not None
    assert (b3["ofi"], b3["snapshot_count"], b3["staleness_ms"]) == (2, 2, 10_000.0)

    last = f15.row(-1, named=True)  # the next-day s6 is ignored
    assert (last["ask_amount_0"], last["snapshot_count"], last["staleness_ms"]) == (4, 0, (DAY_US - 50 * US) / 1_000)

    m0 = _row(out["1m"], 0)
    assert (m0["ask_amount_0"], m0["ofi"], m0["snapshot_count"], m0["staleness_ms"]) == (4, 4, 5, 10_000.0)
    day = out["24h"].row(0, named=True)
    assert (day["ofi"], day["snapshot_count"], day["mid"]) == (4, 5, 100.25)


def test_no_state_before_the_first_snapshot():
    f15 = book_features([HAND.slice(3, 3)], DAY, ["15s"])["15s"]  # s3, s4, s5 only
    b0 = _row(f15, 0)
    assert b0["mid"] is None and b0["ask_price_0"] is None and b0["staleness_ms"] is None
    assert (b0["ofi"], b0["snapshot_count"]) == (0, 0)
    assert (_row(f15, 15)["ofi"], _row(f15, 45)["ofi"]) == (0, 2)  # s3 has no predecessor


def test_empty_input_and_zero_amounts():
    empty = book_features([], DAY, ["1h"])["1h"]
    assert empty.height == 24 and empty["mid"].null_count() == 24 and empty["snapshot_count"].sum() == 0
    zero = _book([(S, [(101, 0), (102, 1)], [(99, 0)])])  # level-1 amounts 0, one bid level
    row = book_features([zero], DAY, ["24h"])["24h"].row(0, named=True)
    assert (row["mid"], row["ask_cum_depth_2"], row["bid_cum_depth_1"]) == (100, 1, 0)
    assert (row["imbalance_1"], row["microprice"], row["bid_depth_5"], row["bid_slope"]) == (None,) * 4


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
    snaps = snaps.with_row_index("i")  # noqa: F841 (read by DuckDB)
    a, aq, b, bq = '"asks[0].price"', '"asks[0].amount"', '"bids[0].price"', '"bids[0].amount"'
    bid5 = " + ".join(f'"bids[{i}].amount"' for i in range(5))
    ask5 = " + ".join(f'"asks[{i}].amount"' for i in range(5))
    levels = ", ".join(f'"{c}" AS {LEVEL_NAMES[c]}' for c in BOOK_COLUMNS)
    sql = f"""
    WITH e AS (
        SELECT i, timestamp,
               ({b} >= lag({b}) OVER w)::DOUBLE * {bq} - ({b} <= lag({b}) OVER w)::DOUBLE * lag({bq}) OVER w
             - ({a} <= lag({a}) OVER w)::DOUBLE * {aq} + ({a} >= lag({a}) OVER w)::DOUBLE * lag({aq}) OVER w AS e
        FROM snaps WINDOW w AS (ORDER BY i)),
    per AS (
        SELECT timestamp // {width} * {width} AS bucket, max(i) AS last_i, count(*) AS snapshot_count,
               coalesce(sum(e), 0) AS ofi
        FROM e WHERE timestamp >= {S} AND timestamp < {S + DAY_US} GROUP BY 1),
    pick AS (
        SELECT bucket, coalesce(snapshot_count, 0) AS snapshot_count, coalesce(ofi, 0) AS ofi,
               coalesce(max(last_i) OVER (ORDER BY bucket), (SELECT max(i) FROM snaps WHERE timestamp < {S})) AS i
        FROM range({S}, {S + DAY_US}, {width}) g(bucket) LEFT JOIN per USING (bucket))
    SELECT bucket, {levels}, snapshot_count, ofi,
           ({a} + {b}) / 2 AS mid,
           ({a} - {b}) / NULLIF(({a} + {b}) / 2, 0) * 1e4 AS spread_bps,
           ({bq} - {aq}) / NULLIF({bq} + {aq}, 0) AS imbalance_1,
           (({bid5}) - ({ask5})) / NULLIF(({bid5}) + ({ask5}), 0) AS imbalance_5
    FROM pick LEFT JOIN snaps USING (i) ORDER BY bucket"""
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
        for col in [*LEVEL_NAMES.values(), "mid", "spread_bps", "imbalance_1", "imbalance_5", "ofi"]:
            _assert_close(got[col], want[col], f"{tf} {col}")
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
