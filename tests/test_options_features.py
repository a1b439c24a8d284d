"""Options-chain features: hand-worked numbers, as-of semantics, an independent DuckDB check,
a synthetic day and the real Deribit sample."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import math

import duckdb
import numpy as np
import polars as pl
import pyarrow.csv as pacsv
import pytest

from conftest import real_file

from mdh_lib.features.options import COLUMNS, options_columns, options_features
from mdh_lib.schemas import RAW_SCHEMAS
from mdh_lib.timeframes import DAY_US, US, day_start_us

DAY = dt.date(2024, 1, 1)
S = day_start_us(DAY)
H = 3_600 * US
STEP = 15 * US
SCHEMA = pl.from_arrow(RAW_SCHEMAS["options_chain"].empty_table()).schema


def snap(ts: int, expiry: int, strike: float, kind: str, iv: float | None, delta: float | None = None,
         fwd: float | None = 100.0) -> dict:
    """One options_chain row; calls carry open interest 1, puts 2."""
    symbol = f"BTC-E{(expiry - S) // H}H-{strike:g}-{kind[0].upper()}"
    return {"exchange": "deribit", "symbol": symbol, "timestamp": ts, "local_timestamp": ts, "type": kind,
            "strike_price": strike, "expiration": expiry, "open_interest": 1.0 if kind == "call" else 2.0,
            "mark_iv": iv, "underlying_price": fwd, "delta": delta}


def chain(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA).sort("timestamp", maintain_order=True)


def row(features: pl.DataFrame, k: int) -> dict:
    return features.row(k, named=True)


# --- hand-worked example -----------------------------------------------------------------------

E0, E3, E1, E2 = S + 36 * H, S + 5 * DAY_US, S + 10 * DAY_US, S + 40 * DAY_US
PRE = S - H  # stamped before the day: initial state
HAND = [
    # E0: 36 h away at the day start, < 24 h after 12:00 -> nearest only until the 12:00 bucket end
    snap(PRE, E0, 100, "call", 70, 0.5, 101), snap(PRE, E0, 100, "put", 72, -0.5, 101),
    # E3: calls only -> never eligible although nearer than E1
    snap(PRE, E3, 100, "call", 55, 0.5, 102), snap(PRE, E3, 110, "call", 50, 0.3, 102),
    # E1 (10 days): strikes 90 (call and put), 100 (call and put), 110 (call only)
    snap(PRE, E1, 90, "call", 60, 0.8, 103), snap(PRE, E1, 90, "put", 62, -0.1, 103),
    snap(PRE, E1, 100, "call", 50, 0.35, 103), snap(PRE, E1, 100, "put", 52, -0.4, 103),
    snap(PRE, E1, 110, "call", 46, 0.15, 103),
    # E2 (40 days): the 25-delta put is bracketed only once the 90 put arrives at 12:00:01
    snap(PRE, E2, 100, "call", 40, 0.6, 105), snap(PRE, E2, 100, "put", 44, -0.4, 105),
    snap(PRE, E2, 110, "call", 38, 0.2, 105), snap(PRE, E2, 110, "put", 40, -0.8, 105),
    snap(S + 12 * H + US, E2, 90, "put", 48, -0.2, 105),
]


@pytest.fixture(scope="module")
def hand() -> pl.DataFrame:
    return options_features(chain(HAND), DAY)


def test_shape_and_columns(hand):
    assert hand.columns == COLUMNS
    assert hand.height == 5_760
    assert hand["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert hand["nearest_expiry"].dtype == pl.Datetime("us", "UTC")
    assert hand["timestamp"][0] == dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert hand["timestamp"].diff()[1:].unique().to_list() == [dt.timedelta(seconds=15)]


def test_hand_worked_last_bucket(hand):
    r = row(hand, 5_759)  # bucket end = day end: E0 is 12 h away, E3 has no puts -> E1 is nearest
    t1, t2 = 9.0, 39.0  # days to E1 and E2 from the bucket end
    assert r["nearest_expiry"] == dt.datetime(2024, 1, 11, tzinfo=dt.timezone.utc)
    assert r["nearest_expiry_days"] == pytest.approx(t1)
    assert r["underlying_price"] == 103
    # ATM of E1 at F=103: strike 100 -> (50+52)/2 = 51, strike 110 -> 46 (call only)
    atm1 = 51 + (103 - 100) / (110 - 100) * (46 - 51)
    assert atm1 == pytest.approx(49.5)
    assert r["atm_mark_iv"] == pytest.approx(atm1)
    # 25d put of E1 between (-0.4, 52) and (-0.1, 62); 25d call between (0.15, 46) and (0.35, 50)
    put1 = 52 + (-0.25 - -0.4) / (-0.1 - -0.4) * (62 - 52)
    call1 = 46 + (0.25 - 0.15) / (0.35 - 0.15) * (50 - 46)
    assert (put1, call1) == (pytest.approx(57), pytest.approx(48))
    assert r["skew_25d_put_call_ratio"] == pytest.approx(put1 / call1)
    # E2: ATM at F=105 between 100 -> 42 and 110 -> 39; 25d put between (-0.4, 44) and (-0.2, 48),
    # 25d call between (0.2, 38) and (0.6, 40)
    atm2 = 42 + 0.5 * (39 - 42)
    skew2 = (44 + 0.15 / 0.2 * 4) / (38 + 0.05 / 0.4 * 2)
    w = (30 - t1) / (t2 - t1)
    var30 = atm1**2 * t1 + w * (atm2**2 * t2 - atm1**2 * t1)
    assert r["atm_mark_iv_30d"] == pytest.approx(math.sqrt(var30 / 30))
    assert r["atm_mark_iv_30d"] == pytest.approx(math.sqrt(1713.15))
    assert r["skew_25d_put_call_ratio_30d"] == pytest.approx(put1 / call1 + w * (skew2 - put1 / call1))
    assert r["options_count"] == 14
    assert r["put_call_oi_ratio"] == pytest.approx(6 * 2 / (8 * 1))  # 6 puts (OI 2), 8 calls (OI 1)


def test_hand_worked_first_bucket(hand):
    r = row(hand, 0)  # bucket end 00:00:15: E0 is 35h59m45s away, eligible and nearest
    assert r["nearest_expiry"] == dt.datetime(2024, 1, 2, 12, tzinfo=dt.timezone.utc)
    assert r["nearest_expiry_days"] == pytest.approx((36 * 3600 - 15) / 86400)
    assert r["underlying_price"] == 101
    assert r["atm_mark_iv"] == pytest.approx(71)  # F=101 above the only strike: nearest strike
    assert r["skew_25d_put_call_ratio"] is None  # deltas +-0.5 only: not bracketed
    # 30 days bracketed by E1 and E2 (E0's ATM is below both, not a bracket)
    t1, t2 = 10 - 15 / 86400, 40 - 15 / 86400
    w = (30 - t1) / (t2 - t1)
    var30 = 49.5**2 * t1 + w * (40.5**2 * t2 - 49.5**2 * t1)
    assert r["atm_mark_iv_30d"] == pytest.approx(math.sqrt(var30 / 30))
    # E2 has no 25d put yet: the closest expiry below 30 days with a ratio (E1) stands for 30 days
    assert r["skew_25d_put_call_ratio_30d"] == pytest.approx(57 / 48)
    assert r["options_count"] == 13


def test_nearest_expiry_needs_24_hours(hand):
    k = 12 * 3600 // 15 - 1  # the bucket ending exactly at 12:00, 24 h before E0
    assert row(hand, k)["nearest_expiry"] == dt.datetime(2024, 1, 2, 12, tzinfo=dt.timezone.utc)
    assert row(hand, k)["nearest_expiry_days"] == pytest.approx(1.0)
    assert row(hand, k + 1)["nearest_expiry"] == dt.datetime(2024, 1, 11, tzinfo=dt.timezone.utc)
    # the E2 90 put (12:00:01, bucket k+1) completes E2's 25d put only from bucket k+1 on
    assert row(hand, k)["skew_25d_put_call_ratio_30d"] == pytest.approx(57 / 48)
    assert row(hand, k + 1)["skew_25d_put_call_ratio_30d"] != pytest.approx(57 / 48)
    assert row(hand, k)["options_count"] == 13 and row(hand, k + 1)["options_count"] == 14


def test_30d_not_bracketed_uses_nearest_side():
    """All expiries beyond 30 days: the closest one's ATM IV, not an extrapolated variance."""
    e_a, e_b = S + 41 * DAY_US, S + 61 * DAY_US
    rows = [snap(PRE, e, 100, kind, iv, d) for e, iv in ((e_a, 50), (e_b, 40))
            for kind, d in (("call", 0.5), ("put", -0.5))]
    r = row(options_features(chain(rows), DAY), 5_759)
    assert r["atm_mark_iv"] == r["atm_mark_iv_30d"] == 50
    assert r["nearest_expiry_days"] == pytest.approx(40)


# --- as-of semantics ---------------------------------------------------------------------------


def test_as_of_bucket_end():
    e = S + 10 * DAY_US
    rows = [
        snap(PRE, e, 100, "call", 50, 0.5), snap(PRE, e, 100, "put", 52, -0.5),  # F=100 = strike
        snap(S + 100 * STEP + 7 * US, e, 100, "call", 60, 0.5),  # inside bucket 100
        snap(S + 200 * STEP, e, 100, "put", 62, -0.5),  # exactly at bucket 199's end = bucket 200
        snap(S + 300 * STEP + 1, e, 200, "call", None, 0.01),  # a new option without IV
        snap(S + DAY_US, e, 100, "call", 99, 0.5),  # next day: never used
    ]
    f = options_features(chain(rows), DAY)
    atm = f["atm_mark_iv"]
    assert atm[0] == atm[99] == 51  # the pre-day snapshots are the initial state
    assert atm[100] == atm[199] == 56
    assert atm[200] == atm[5_759] == 61
    assert f["options_count"][299] == 2 and f["options_count"][300] == 3
    assert f["put_call_oi_ratio"][299] == pytest.approx(2.0) and f["put_call_oi_ratio"][300] == pytest.approx(1.0)
    # the last snapshot is the state, missing cells included: a put without IV leaves only calls
    later = options_features(chain(rows + [snap(S + 400 * STEP, e, 100, "put", None, -0.5)]), DAY)
    assert later["atm_mark_iv"][399] == 61 and later["nearest_expiry"][400] is None


def test_empty_chain():
    f = options_features(pl.DataFrame(schema=SCHEMA), DAY)
    assert f.height == 5_760 and f.columns == COLUMNS
    assert f["options_count"].max() == 0 and f["atm_mark_iv"].null_count() == 5_760


def test_options_columns(hand):
    hourly = options_columns(hand, "1h")
    assert hourly.columns == ["timestamp", "atm_mark_iv", "skew_25d_put_call_ratio"]
    assert hourly.height == 24
    assert hourly["timestamp"].to_list() == hand["timestamp"].gather_every(240).to_list()
    last_of_hour = hand.gather(np.arange(239, 5_760, 240))
    assert hourly["atm_mark_iv"].to_list() == last_of_hour["atm_mark_iv"].to_list()
    assert hourly["skew_25d_put_call_ratio"].to_list() == last_of_hour["skew_25d_put_call_ratio"].to_list()
    assert options_columns(hand, "15s").equals(hand.select(hourly.columns))
    assert options_columns(hand, "24h").height == 1
    with pytest.raises(ValueError):
        options_columns(hand, "2m")


# --- independent check in DuckDB SQL -----------------------------------------------------------

SQL = """
WITH state AS (  -- each option's last snapshot before the bucket end
    SELECT * FROM chain WHERE timestamp < $end
    QUALIFY row_number() OVER (PARTITION BY symbol ORDER BY timestamp DESC) = 1
), nearest AS (
    SELECT expiration FROM state GROUP BY expiration
    HAVING bool_or(type = 'call' AND mark_iv IS NOT NULL) AND bool_or(type = 'put' AND mark_iv IS NOT NULL)
       AND expiration - $end >= 86400000000
    ORDER BY expiration LIMIT 1
), near AS (
    SELECT * FROM state WHERE expiration = (SELECT expiration FROM nearest)
), fwd AS (
    SELECT arg_max(underlying_price, timestamp) AS f FROM near WHERE underlying_price IS NOT NULL
), strikes AS (
    SELECT strike_price AS k, avg(mark_iv) AS iv FROM near WHERE mark_iv IS NOT NULL GROUP BY 1
), lo AS (
    SELECT max(k) AS k0, arg_max(iv, k) AS iv0 FROM strikes, fwd WHERE k <= f
), hi AS (
    SELECT min(k) AS k1, arg_min(iv, k) AS iv1 FROM strikes, fwd WHERE k >= f
)
SELECT (SELECT count(*) FROM state WHERE expiration > $end) AS options_count,
       (SELECT expiration FROM nearest) AS expiration,
       f AS underlying_price,
       CASE WHEN k0 = k1 THEN iv0
            WHEN k0 IS NOT NULL AND k1 IS NOT NULL THEN iv0 + (iv1 - iv0) * (f - k0) / (k1 - k0)
            ELSE coalesce(iv0, iv1) END AS atm
FROM fwd, lo, hi
"""


def random_chain(seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    expiries = [S + DAY_US + 8 * H, S + 9 * DAY_US + 8 * H, S + 30 * DAY_US]  # the first one: until 08:00
    options = [(e, k, kind) for e in expiries for k in (80, 90, 100, 110, 120)
               for kind in ("call", "put") if rng.random() < 0.8]
    ts = np.unique(rng.integers(S - 2 * H, S + DAY_US + H, 400))  # unique: no ties
    which = rng.integers(0, len(options), ts.size)
    iv = np.where(rng.random(ts.size) < 0.1, np.nan, rng.uniform(30, 90, ts.size))
    fwd = np.where(rng.random(ts.size) < 0.05, np.nan, rng.uniform(75, 125, ts.size))
    rows = [snap(int(t), *options[i], None if math.isnan(v) else float(v), 0.0, None if math.isnan(f) else float(f))
            for t, i, v, f in zip(ts, which, iv, fwd)]
    return chain(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_duckdb(seed):
    data = random_chain(seed)
    features = options_features(data, DAY)
    con = duckdb.connect()
    con.register("chain", data.to_arrow())
    expiry_us = features["nearest_expiry"].dt.epoch("us")
    for k in (0, 37, 1_000, 1_919, 1_920, 2_879, 4_000, 5_759):
        want = con.execute(SQL, {"end": S + (k + 1) * STEP}).fetchone()
        got = row(features, k)
        assert got["options_count"] == want[0]
        assert expiry_us[k] == want[1]
        assert got["underlying_price"] == (want[2] if want[1] is not None else None)
        assert got["atm_mark_iv"] == (pytest.approx(want[3], rel=1e-12) if want[3] is not None else None)


# --- synthetic and real data -------------------------------------------------------------------


def test_synthetic_chain_is_sane():
    from mdh_lib.sample_server.synthetic import day_csv_gz

    day = dt.date(2024, 9, 1)
    raw = gzip.decompress(day_csv_gz("deribit", "options_chain", day, "OPTIONS", 4_000))
    data = (pl.read_csv(io.BytesIO(raw), schema=SCHEMA)
            .filter(pl.col("symbol").str.starts_with("BTC-")).sort("timestamp", maintain_order=True))
    assert data.height > 0
    f = options_features(data, day)
    assert f.height == 5_760
    seen = f.filter(pl.col("nearest_expiry").is_not_null())
    assert seen.height > 5_000  # from the first snapshots of the day on
    assert seen["atm_mark_iv"].is_between(5, 300).all()
    assert seen["atm_mark_iv_30d"].is_between(5, 300).all()
    assert seen["nearest_expiry_days"].min() >= 1
    assert (seen["underlying_price"] > 0).all()
    skew = seen["skew_25d_put_call_ratio"].drop_nulls()
    assert skew.len() > 0.5 * seen.height and skew.is_between(0.5, 2).all()
    assert seen["skew_25d_put_call_ratio_30d"].drop_nulls().is_between(0.5, 2).all()
    assert f["skew_25d_put_call_ratio_30d"][-1] is not None
    assert f["options_count"][-1] == data["symbol"].n_unique()


def test_real_deribit_sample():
    path = real_file("deribit_options_chain_sample.csv")
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types=RAW_SCHEMAS["options_chain"], null_values=[""], strings_can_be_null=True))
    data = pl.from_arrow(table).filter(pl.col("symbol").str.starts_with("BTC-")).sort("timestamp", maintain_order=True)
    f = options_features(data, dt.date(2020, 6, 8))
    assert f.height == 5_760
    first = row(f, 0)  # pre-day 9875 put, its 00:00:04 update and the 10000 call (00:00:05)
    assert first["nearest_expiry"] == dt.datetime(2020, 6, 9, 8, tzinfo=dt.timezone.utc)
    assert first["underlying_price"] == 9756.40
    assert first["atm_mark_iv"] == 62.86  # forward below both strikes: the 9875 put's IV
    assert first["skew_25d_put_call_ratio"] is None  # deltas -0.62 and 0.42: no 25-delta bracket
    assert first["options_count"] == 3
    assert first["put_call_oi_ratio"] == pytest.approx(0.1 / 0.2)  # the 10JUN20 call has no OI
    assert row(f, 3)["atm_mark_iv"] == 62.86 and row(f, 4)["atm_mark_iv"] == 62.96  # update at 00:01:00.45
    # from the 08:00 bucket end on, 9JUN20 is < 24 h away and 10JUN20 has no puts: no nearest expiry
    assert row(f, 1_919)["nearest_expiry_days"] == pytest.approx(1.0)
    late = f[1_920:]
    assert late["nearest_expiry"].null_count() == late["atm_mark_iv"].null_count() == late.height
    assert late["atm_mark_iv_30d"].null_count() == late.height
    assert f["skew_25d_put_call_ratio_30d"].null_count() == 5_760
