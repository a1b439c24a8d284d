"""Features exact at midnight (issue 15): three days of raw files whose boundaries are crossed
both ways by ticker, book, liquidation, trade and options rows, as Tardis's split by arrival
time does. Computed day by day from the catalog (`mdh_lib.candles.day_inputs`), every column of
every bucket equals the same features over the three files as one continuous stream; the
boundary buckets also equal DuckDB SQL written here over the concatenated files."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdh_lib.candles import Instrument, candles
from mdh_lib.candles.day_inputs import candle_inputs, day_as_of, day_book
from mdh_lib.catalog import Catalog
from mdh_lib.features.book import book_features
from mdh_lib.features.mft import history_bars, mft_features
from mdh_lib.features.options import options_columns, options_features
from mdh_lib.instruments import InstrumentKey
from mdh_lib.layout import dataset_path, raw_path
from mdh_lib.schemas import BOOK_COLUMNS, LEVEL_NAMES, RAW_SCHEMAS
from mdh_lib.storage import Storage
from mdh_lib.timeframes import DAY_US, MFT_TIMEFRAMES, TIMEFRAMES, US, day_start_us, width_us
from test_options_features import SQL as OPTIONS_SQL

DAYS = [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)]
S0 = day_start_us(DAYS[0])
END = S0 + 3 * DAY_US
H = 3_600 * US
PERP = InstrumentKey.parse("BINANCE-FUTURES:PERPETUAL:BTC-USDT")
OPTIONS = InstrumentKey.parse("DERIBIT:OPTION:BTC")
INSTRUMENT = Instrument("binance-futures", "BTCUSDT", str(PERP))
PERP_TYPES = ("trades", "liquidations", "derivative_ticker", "book_snapshot_5")
EXPIRIES = [S0 + DAY_US + 8 * H, S0 + 10 * DAY_US + 8 * H, S0 + 40 * DAY_US + 8 * H]  # the first expires on day 2
STRIKES = [50_000.0, 55_000.0, 60_000.0, 65_000.0, 70_000.0]


def _times(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(timestamp, local_timestamp) of a stream from 1 h before day 1 to the end of day 3: a few
    ms of latency, 3% up to 3 s late, 1% with the exchange clock ahead, and at every midnight
    rows stamped just before it that arrive seconds after and rows stamped just after it that
    arrive before (the previous day's file)."""
    ts = rng.integers(S0 - H, END, n)
    delay = rng.lognormal(np.log(5_000), 1.0, n)
    slow, ahead = rng.random(n) < 0.03, rng.random(n) < 0.01
    delay[slow] = rng.uniform(0, 3 * US, slow.sum())
    delay[ahead] = -rng.uniform(0, 0.2 * US, ahead.sum())
    midnights = np.repeat([S0 + DAY_US, S0 + 2 * DAY_US], 8)
    late = midnights - rng.integers(1, 2 * US, midnights.size)
    early = midnights + rng.integers(0, US // 10, midnights.size)
    ts = np.concatenate([ts, late, early])
    delay = np.concatenate([delay, rng.uniform(2 * US, 4 * US, late.size), -rng.uniform(0.1 * US, 0.3 * US, early.size)])
    ts, first = np.unique(ts, return_index=True)  # unique stamps: "last before" is unambiguous in SQL
    return ts, ts + delay[first].astype(np.int64)


def _walk(rng: np.random.Generator, n: int, start: float, step: float) -> np.ndarray:
    return start + np.cumsum(rng.normal(0, step, n))


def _nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> list:
    return [None if m else float(v) for v, m in zip(values, rng.random(values.size) < share)]


def _streams(seed: int = 15) -> dict[str, pl.DataFrame]:
    """Each data type's rows over the three days (before the split into files)."""
    rng = np.random.default_rng(seed)
    out = {}
    ts, local = _times(rng, 30_000)
    n = ts.size
    out["trades"] = pl.DataFrame({"timestamp": ts, "local_timestamp": local, "id": [str(i) for i in range(n)],
                                  "side": rng.choice(["buy", "sell", "unknown"], n, p=[0.48, 0.48, 0.04]),
                                  "price": _walk(rng, n, 60_000, 5), "amount": rng.exponential(0.1, n)})
    ts, local = _times(rng, 1_500)
    out["liquidations"] = pl.DataFrame({"timestamp": ts, "local_timestamp": local, "id": [str(i) for i in range(ts.size)],
                                        "side": rng.choice(["buy", "sell"], ts.size), "price": _walk(rng, ts.size, 60_000, 20),
                                        "amount": rng.exponential(0.5, ts.size)})
    ts, local = _times(rng, 60_000)
    n = ts.size
    hour = ts % DAY_US // H
    out["derivative_ticker"] = pl.DataFrame({
        "timestamp": ts, "local_timestamp": local,
        # only between 08:00 and 09:00: the previous day's state is many row groups back
        "funding_rate": [float(v) if h == 8 else None for v, h in zip(rng.normal(1e-4, 1e-5, n), hour)],
        "predicted_funding_rate": _nulls(rng, rng.normal(1e-4, 1e-5, n), 0.5),
        "open_interest": _nulls(rng, _walk(rng, n, 1e4, 5), 0.1),
        "index_price": _walk(rng, n, 60_000, 3), "mark_price": _walk(rng, n, 60_000, 3)})
    ts, local = _times(rng, 60_000)
    n = ts.size
    mid = _walk(rng, n, 60_000, 2)
    book = {"timestamp": ts, "local_timestamp": local}
    for i in range(5):
        gap = 0.5 + i * rng.uniform(0.5, 1.5, n)
        missing = rng.random(n) < (0.02 if i == 4 else 0)
        for side, sign in (("asks", 1), ("bids", -1)):
            book[f"{side}[{i}].price"] = np.where(missing, np.nan, mid + sign * gap)
            book[f"{side}[{i}].amount"] = np.where(missing, np.nan, rng.exponential(2, n))
    out["book_snapshot_5"] = pl.DataFrame(book).fill_nan(None)
    out["options_chain"] = _chain(rng)
    return out


def _chain(rng: np.random.Generator) -> pl.DataFrame:
    """30 options of three expiries (one expires on day 2) plus one quoted only once a day,
    before 03:00 (so its state at midnight lies far back in the previous day's file)."""
    options = [(e, k, kind) for e in EXPIRIES for k in STRIKES for kind in ("call", "put")]
    ts, local = _times(rng, 45_000)
    which = rng.integers(0, len(options), ts.size)
    rare_ts = S0 + np.arange(3) * DAY_US + 2 * H + rng.integers(0, H, 3)
    ts, local = np.concatenate([ts, rare_ts]), np.concatenate([local, rare_ts + 5_000])
    options.append((EXPIRIES[2], 80_000.0, "call"))
    which = np.concatenate([which, np.full(3, len(options) - 1)])
    order = np.argsort(ts, kind="stable")
    ts, local, which = ts[order], local[order], which[order]
    spot = _walk(rng, ts.size, 60_000, 20)
    rows = {k: [] for k in ("symbol", "type", "strike_price", "expiration", "underlying_price", "delta")}
    for i, s in zip(which, spot):
        e, k, kind = options[i]
        fwd = s * (1 + 0.001 * EXPIRIES.index(e))
        call_delta = min(max(0.5 - (k - fwd) / 30_000 + rng.normal(0, 0.01), 0.02), 0.98)
        rows["symbol"].append(f"BTC-{(e - S0) // DAY_US}D-{k:g}-{kind[0].upper()}")
        rows["type"].append(kind)
        rows["strike_price"].append(k)
        rows["expiration"].append(e)
        rows["underlying_price"].append(float(fwd))
        rows["delta"].append(call_delta if kind == "call" else call_delta - 1)
    iv = 50 + 20 * np.abs(np.array(rows["strike_price"]) / 60_000 - 1) + rng.normal(0, 2, ts.size)
    return pl.DataFrame({"timestamp": ts, "local_timestamp": local, **rows,
                         "open_interest": rng.uniform(1, 100, ts.size), "mark_iv": _nulls(rng, iv, 0.05)})


def _files(stream: pl.DataFrame, data_type: str, exchange: str) -> dict[dt.date, pl.DataFrame]:
    """The stream split into day files by local_timestamp, each sorted by timestamp, in the raw schema."""
    schema = pl.from_arrow(RAW_SCHEMAS[data_type].empty_table()).schema
    full = stream.with_columns(exchange=pl.lit(exchange),
                               **({} if "symbol" in stream.columns else {"symbol": pl.lit("BTCUSDT")}))
    full = full.select(pl.col(c).cast(t) if c in full.columns else pl.lit(None, t).alias(c) for c, t in schema.items())
    out = {}
    for date in DAYS:
        start = day_start_us(date)
        out[date] = full.filter(pl.col("local_timestamp").is_between(start, start + DAY_US, closed="left")).sort(
            "timestamp", maintain_order=True)
    return out


@pytest.fixture(scope="module")
def files() -> dict[tuple[str, dt.date], pl.DataFrame]:
    streams = _streams()
    out = {}
    for data_type, stream in streams.items():
        exchange = "deribit" if data_type == "options_chain" else "binance-futures"
        for date, frame in _files(stream, data_type, exchange).items():
            out[data_type, date] = frame
    return out


def _key(data_type: str) -> InstrumentKey:
    return OPTIONS if data_type == "options_chain" else PERP


def _write(storage: Storage, files: dict, days: list[dt.date]) -> None:
    for (data_type, date), frame in files.items():
        if date in days:
            storage.write_parquet(raw_path(data_type, date, _key(data_type)), frame, sorting_column="timestamp")


def _continuous(files: dict, data_type: str) -> pl.DataFrame:
    """The three files as one stream: concatenated in day order, stably sorted by timestamp."""
    return pl.concat([files[data_type, d] for d in DAYS]).sort("timestamp", maintain_order=True)


def _in_day(frame: pl.DataFrame, date: dt.date) -> pl.DataFrame:
    start = day_start_us(date)
    return frame.filter(pl.col("timestamp").is_between(start, start + DAY_US, closed="left"))


def _day_from_catalog(catalog: Catalog, date: dt.date) -> dict:
    """What the assets compute for ``date`` (mdh_lib.candles.day_inputs + the feature functions)."""
    chain, option_sources = day_as_of(catalog, "options_chain", date, OPTIONS)
    options = options_features(chain, date)
    inputs, sources, absent = candle_inputs(catalog, date, PERP, PERP_TYPES)
    assert absent == []
    frames = candles(inputs["trades"], date, INSTRUMENT, ticker=inputs["derivative_ticker"],
                     liquidations=inputs["liquidations"], options={tf: options_columns(options, tf) for tf in TIMEFRAMES})
    chunks, book_sources = day_book(catalog, date, PERP)
    return {"candles": frames, "book": book_features(chunks, date), "options": options,
            "sources": {**sources, "book_snapshot_5": book_sources, "options_chain": option_sources}}


def _day_continuous(files: dict, date: dt.date) -> dict:
    """The same features with the whole three-day stream as input (earlier rows are the initial
    state, later ones are ignored)."""
    options = options_features(_continuous(files, "options_chain"), date)
    frames = candles(_in_day(_continuous(files, "trades"), date), date, INSTRUMENT,
                     ticker=_continuous(files, "derivative_ticker"),
                     liquidations=_in_day(_continuous(files, "liquidations"), date),
                     options={tf: options_columns(options, tf) for tf in TIMEFRAMES})
    return {"candles": frames, "book": book_features([_continuous(files, "book_snapshot_5")], date),
            "options": options}


def _mft(days: list[dict[str, pl.DataFrame]]) -> dict[str, list[pl.DataFrame]]:
    """Per timeframe, each day's MFT features with the previous days' candles as history (as the
    MFT assets do)."""
    out = {}
    for tf in MFT_TIMEFRAMES:
        out[tf] = []
        for k, day in enumerate(days):
            history = pl.concat([d[tf] for d in days[:k]]).tail(history_bars(tf)) if k else None
            out[tf].append(mft_features(day[tf], history, tf))
    return out


@pytest.fixture(scope="module")
def computed(files, tmp_path_factory):
    storage = Storage(str(tmp_path_factory.mktemp("midnight")))
    _write(storage, files, DAYS)
    catalog = Catalog(storage)
    return [_day_from_catalog(catalog, d) for d in DAYS], [_day_continuous(files, d) for d in DAYS]


def test_the_fixture_crosses_every_midnight(files):
    for data_type in ("trades", "liquidations", "derivative_ticker", "book_snapshot_5", "options_chain"):
        for date in DAYS[1:]:
            start = day_start_us(date)
            own = files[data_type, date]
            previous = files[data_type, date - dt.timedelta(days=1)]
            assert (own["timestamp"] < start).sum() > 0, (data_type, date)  # late rows from the day before
            assert (previous["timestamp"] >= start).sum() > 0, (data_type, date)  # clock ahead
    # several row groups per file, so the previous day's state is found by a backward scan
    storage_rows = files["derivative_ticker", DAYS[0]].height
    assert storage_rows > 2 * 8_192


def test_three_days_equal_one_continuous_stream(computed):
    days, continuous = computed
    for got, want in zip(days, continuous):
        for tf in TIMEFRAMES:
            assert_frame_equal(got["candles"][tf], want["candles"][tf], check_exact=True)
            assert_frame_equal(got["book"][tf], want["book"][tf], check_exact=True)
        assert_frame_equal(got["options"], want["options"], check_exact=True)
    got_mft = _mft([d["candles"] for d in days])
    for tf in MFT_TIMEFRAMES:
        whole = mft_features(pl.concat([d["candles"][tf] for d in continuous]), None, tf)
        for k, frame in enumerate(got_mft[tf]):
            assert_frame_equal(frame, whole.slice(k * frame.height, frame.height), check_exact=True)


def test_sources_name_the_missing_previous_day(computed):
    days, _ = computed
    for data_type, sources in days[0]["sources"].items():
        assert not sources.previous_day_included and sources.next_day_included
        assert sources.missing == (raw_path(data_type, DAYS[0] - dt.timedelta(days=1), _key(data_type)),)
    for day in days[1:]:
        for data_type, sources in day["sources"].items():
            assert sources.previous_day_included and sources.missing[1:] == ()
            assert sources.from_previous_day > 0, data_type
    last = days[-1]["sources"]["trades"]
    assert not last.next_day_included and last.missing == (raw_path("trades", DAYS[2] + dt.timedelta(days=1), PERP),)


def test_24h_candles_have_oi_change_and_a_full_liquidation_split(computed):
    days, _ = computed
    for day in days[1:]:
        row = day["candles"]["24h"].row(0, named=True)
        total = row["liquidation_buy_volume"] + row["liquidation_sell_volume"]
        assert row["oi_change"] is not None and row["oi_change"] != 0 and total > 0
        assert row["liquidation_with_rising_oi"] + row["liquidation_with_falling_oi"] == total


def test_only_the_tail_of_the_previous_file_is_read(files, tmp_path, monkeypatch):
    """The state at midnight comes from the last row group of D-1's file when that holds it; a
    ticker column the file never fills (row-group null counts) does not send the scan further."""
    storage = Storage(str(tmp_path))
    for date in DAYS[:2]:
        ticker = files["derivative_ticker", date].with_columns(funding_rate=pl.col("mark_price") * 1e-9,
                                                               predicted_funding_rate=pl.lit(None, pl.Float64))
        storage.write_parquet(raw_path("derivative_ticker", date, PERP), ticker, sorting_column="timestamp")
        storage.write_parquet(raw_path("book_snapshot_5", date, PERP), files["book_snapshot_5", date],
                              sorting_column="timestamp")
    reads: list[tuple[str, int]] = []
    parquet_file = Storage.parquet_file

    def counted(self, rel):
        pf = parquet_file(self, rel)
        read = pf.read_row_group
        pf.read_row_group = lambda i, **kw: reads.append((rel, i)) or read(i, **kw)
        return pf

    monkeypatch.setattr(Storage, "parquet_file", counted)
    catalog = Catalog(storage)
    for data_type in ("derivative_ticker", "book_snapshot_5"):
        reads.clear()
        rows = day_as_of(catalog, data_type, DAYS[1], PERP) if data_type == "derivative_ticker" else list(
            day_book(catalog, DAYS[1], PERP)[0])
        previous = raw_path(data_type, DAYS[0], PERP)
        groups = storage.parquet_file(previous).num_row_groups
        assert groups >= 3 and [r for r in reads if r[0] == previous] == [(previous, groups - 1)], data_type
        assert rows  # the day's input was assembled


# --- independent SQL over the concatenated files, at the buckets next to each midnight -----------

TICKER_SQL = """
SELECT {values}, {values_at_start} FROM ticker WHERE timestamp < $end
"""
LIQUIDATION_SQL = """
SELECT coalesce(sum(amount) FILTER (side = 'buy'), 0), coalesce(sum(amount) FILTER (side = 'sell'), 0), count(*)
FROM liq WHERE timestamp >= $start AND timestamp < $end
"""
BOOK_SQL = """
WITH pairs AS (
    SELECT *, lag("bids[0].price") OVER w AS pb, lag("bids[0].amount") OVER w AS qb,
              lag("asks[0].price") OVER w AS pa, lag("asks[0].amount") OVER w AS qa
    FROM book WINDOW w AS (ORDER BY timestamp)
)
SELECT (SELECT {levels} FROM book WHERE timestamp < $end ORDER BY timestamp DESC LIMIT 1),
       coalesce(sum(("bids[0].price" >= pb)::INT * "bids[0].amount" - ("bids[0].price" <= pb)::INT * qb
                    - ("asks[0].price" <= pa)::INT * "asks[0].amount" + ("asks[0].price" >= pa)::INT * qa), 0),
       count(*)
FROM pairs WHERE timestamp >= $start AND timestamp < $end
"""
TICKER = ["funding_rate", "predicted_funding_rate", "open_interest", "mark_price", "index_price"]


def _approx(value):
    return None if value is None else pytest.approx(value, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("tf", ["15s", "1m", "24h"])
def test_midnight_buckets_equal_sql_over_the_concatenated_files(files, computed, tf):
    days, _ = computed
    con = duckdb.connect()
    for name, data_type in (("ticker", "derivative_ticker"), ("liq", "liquidations"), ("book", "book_snapshot_5"),
                            ("chain", "options_chain")):
        con.register(name, _continuous(files, data_type).to_arrow())
    last = ", ".join(f"arg_max({c}, timestamp) FILTER ({c} IS NOT NULL)" for c in TICKER)
    ticker_sql = TICKER_SQL.format(values=last, values_at_start="arg_max(open_interest, timestamp) FILTER "
                                   "(open_interest IS NOT NULL AND timestamp < $start)")
    book_sql = BOOK_SQL.format(levels="[" + ", ".join(f'"{c}"' for c in BOOK_COLUMNS) + "]")
    width = width_us(tf)
    for date, day in zip(DAYS, days):
        start = day_start_us(date)
        for k in sorted({0, DAY_US // width - 1}):
            b = start + k * width
            params = {"start": b, "end": b + width}
            candle, book = day["candles"][tf].row(k, named=True), day["book"][tf].row(k, named=True)
            *ticker, oi_before = con.execute(ticker_sql, params).fetchone()
            assert [candle[c] for c in TICKER] == ticker, (date, tf, k)
            oi_change = None if oi_before is None else ticker[2] - oi_before
            assert candle["oi_change"] == _approx(oi_change)
            buy, sell, count = con.execute(LIQUIDATION_SQL, params).fetchone()
            assert (candle["liquidation_buy_volume"], candle["liquidation_sell_volume"]) == (_approx(buy), _approx(sell))
            assert candle["liquidation_count"] == count
            rising = buy + sell if oi_change is not None and oi_change > 0 else 0.0
            falling = buy + sell if oi_change is not None and oi_change < 0 else 0.0
            assert (candle["liquidation_with_rising_oi"], candle["liquidation_with_falling_oi"]) == (
                _approx(rising), _approx(falling))
            levels, ofi, snapshots = con.execute(book_sql, params).fetchone()
            got_levels = [book[LEVEL_NAMES[c]] for c in BOOK_COLUMNS]
            assert got_levels == levels and book["snapshot_count"] == snapshots
            assert book["ofi"] == _approx(ofi)
        # the options chain as of the end of the day's first and last 15s buckets
        for k in (0, 1, 5_759):
            count, expiry, forward, atm = con.execute(OPTIONS_SQL, {"end": start + (k + 1) * 15 * US}).fetchone()
            row = day["options"].row(k, named=True)
            assert row["options_count"] == count
            got_expiry = None if row["nearest_expiry"] is None else row["nearest_expiry"].timestamp() * US
            assert got_expiry == expiry and row["underlying_price"] == (forward if expiry is not None else None)
            assert row["atm_mark_iv"] == _approx(atm)


def _changed(before: pl.DataFrame, after: pl.DataFrame) -> list[int]:
    """Indices of the rows that differ in any column."""
    differs = pl.any_horizontal(before[c].ne_missing(after[c]) for c in before.columns)
    return before.with_row_index().filter(differs)["index"].to_list()


def _horizon(files: dict, data_type: str, date: dt.date) -> int:
    """The last time the previous day's file can matter to ``date``: its rows stamped in the day,
    and the first row of the day (from the day's and the next day's files) of every series it
    holds a value of at midnight (ticker column, the book, each option not yet expired): no
    bucket starting later can change when that file arrives."""
    start = day_start_us(date)
    previous = files[data_type, date - dt.timedelta(days=1)]
    later = _in_day(pl.concat([files[data_type, date], files[data_type, date + dt.timedelta(days=1)]]), date)
    times = _in_day(previous, date)["timestamp"].to_list()
    carried = previous.filter(pl.col("timestamp") < start)
    if data_type == "derivative_ticker":
        firsts = [later.filter(pl.col(c).is_not_null())["timestamp"].min() for c in TICKER
                  if carried[c].null_count() < carried.height]
    elif data_type == "options_chain":
        live = carried.filter(pl.col("expiration") > start)["symbol"].unique()
        firsts = [later.filter(pl.col("symbol") == s)["timestamp"].min() for s in live]
    elif data_type == "book_snapshot_5":
        firsts = [later["timestamp"].min()]
    else:  # trades and liquidations: events, no state
        firsts = []
    return max([start, *times, *(start + DAY_US if t is None else t for t in firsts)])


def test_previous_day_arriving_later_fills_exactly_the_first_buckets(files, computed, tmp_path):
    storage = Storage(str(tmp_path))
    _write(storage, files, DAYS[1:])
    catalog = Catalog(storage)
    date = DAYS[1]
    before = _day_from_catalog(catalog, date)
    for data_type, sources in before["sources"].items():
        assert not sources.previous_day_included
        assert sources.missing == (raw_path(data_type, DAYS[0], _key(data_type)),)
        assert sources.metadata()["missing_neighbour_files"] == raw_path(data_type, DAYS[0], _key(data_type))
    _write(storage, files, [DAYS[0]])
    after = _day_from_catalog(catalog, date)
    full = computed[0][1]
    candle_horizon = max(_horizon(files, t, date) for t in ("trades", "liquidations", "derivative_ticker"))
    checked = [("options", "15s", _horizon(files, "options_chain", date))]
    checked += [("candles", tf, candle_horizon) for tf in TIMEFRAMES]
    checked += [("book", tf, _horizon(files, "book_snapshot_5", date)) for tf in TIMEFRAMES]
    changed = {}
    for name, tf, horizon in checked:
        old, new = (before[name], after[name]) if name == "options" else (before[name][tf], after[name][tf])
        assert_frame_equal(new, full[name] if name == "options" else full[name][tf], check_exact=True)
        changed[name, tf] = _changed(old, new)
        if changed[name, tf]:  # the buckets changed start at midnight and none starts after the horizon
            assert changed[name, tf][0] == 0
            assert day_start_us(date) + changed[name, tf][-1] * width_us(tf) <= horizon, (name, tf)
    # the chain restarted empty; the funding rate (quoted 08:00-09:00) was unknown until 08:00
    assert changed["options", "15s"] and changed["book", "15s"] and changed["candles", "24h"] == [0]
    assert before["candles"]["1m"]["funding_rate"].head(8 * 60).null_count() == 8 * 60
    assert len(changed["candles", "1m"]) >= 8 * 60


# --- through Dagster: the declared dependency, the metadata and the stored features ---------------


def _metadata(instance, asset: list[str], partition: str) -> dict:
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
    found = [r.asset_materialization for r in records if r.asset_materialization.partition == partition]
    assert found, (asset, partition)
    return {k: v.value for k, v in found[0].metadata.items()}


def test_assets_read_the_neighbour_days_and_name_a_missing_one(mdh_env):
    import dagster as dg

    from mdh_assets.book.assets import book_assets
    from mdh_assets.candles.assets import candle_assets
    from mdh_assets.cli import main
    from mdh_assets.features.assets import options_features_asset

    for asset, upstream in ((candle_assets, ["raw", "trades"]), (candle_assets, ["raw", "derivative_ticker"]),
                            (candle_assets, ["raw", "liquidations"]), (book_assets, ["raw", "book_snapshot_5"]),
                            (options_features_asset, ["raw", "options_chain"])):
        days = asset.get_partition_mapping(dg.AssetKey(upstream)).downstream_mappings_by_upstream_dimension["date"]
        assert (days.partition_mapping.start_offset, days.partition_mapping.end_offset) == (-1, 1)

    dates = ["--start-date", "2024-01-01", "--end-date", "2024-01-02"]
    assert main(["download", *dates, "--symbols", f"{PERP},{OPTIONS}"]) == 0
    assert main(["candle-processing", *dates, "--symbols", str(PERP), "--timeframes", "1m"]) == 0
    instance = dg.DagsterInstance.get()
    for asset, key, data_type in ((["candles", "1m"], PERP, "trades"), (["book", "1m"], PERP, "book_snapshot_5"),
                                  (["features", "options"], OPTIONS, "options_chain")):
        # a venue-day's metadata counts the instruments with each neighbour day (one here)
        first = _metadata(instance, asset, f"2024-01-01|{key.exchange}")
        assert first["previous_day_included"] == 0 and first["next_day_included"] == 1
        assert raw_path(data_type, "2023-12-31", key) in first["missing_neighbour_files"]
        second = _metadata(instance, asset, f"2024-01-02|{key.exchange}")
        assert second["previous_day_included"] == 1 and second["next_day_included"] == 0
        assert second["rows_from_previous_day"] > 0

    # the stored second day equals the features over the two downloaded days as one stream
    storage = Storage(mdh_env["MDH_DATA_ROOT"])
    date = dt.date(2024, 1, 2)
    stream = {t: pl.concat([pl.from_arrow(storage.read_parquet(raw_path(t, d, _key(t))))
                            for d in ("2024-01-01", "2024-01-02")]).sort("timestamp", maintain_order=True)
              for t in ("trades", "liquidations", "derivative_ticker", "book_snapshot_5", "options_chain")}
    options = options_features(stream["options_chain"], date)
    want_candles = candles(_in_day(stream["trades"], date), date, INSTRUMENT, timeframes=["1m"],
                           ticker=stream["derivative_ticker"], liquidations=_in_day(stream["liquidations"], date),
                           options={"1m": options_columns(options, "1m")})["1m"]
    stored = {name: pl.from_arrow(storage.read_parquet(dataset_path((name, "1m"), date, PERP)))
              for name in ("candles", "book")}
    assert_frame_equal(stored["candles"], want_candles, check_exact=True)
    want_book = book_features([stream["book_snapshot_5"]], date, ["1m"])["1m"]
    assert_frame_equal(stored["book"].select(want_book.columns), want_book, check_exact=True)
    got_options = pl.from_arrow(storage.read_parquet(dataset_path(("features", "options"), date, OPTIONS)))
    assert_frame_equal(got_options, options, check_exact=True)
