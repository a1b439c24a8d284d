"""mdh_lib.readers over data written by the real pipeline (sample server -> download ->
candle-processing -> mft-processing, run once for the module), locally and on gs:// against
gcp-storage-emulator."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mdh_lib.candles.build import CANDLE_COLUMNS
from mdh_lib.features.mft import FEATURES
from mdh_lib.layout import dataset_path, raw_path
from mdh_lib.readers import (
    CandleDataReader, DataClient, HFTFeaturesReader, MFTFeaturesReader, MissingPartitionError, TickDataReader,
)
from mdh_lib.readers.data_client import resolve_root
from mdh_lib.schemas import LEVEL_NAMES
from mdh_lib.storage import Storage

UTC = dt.timezone.utc
PERP = "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
SPOT = "BINANCE:SPOT_PAIR:BTC-USDT"
DAY1, DAY2, DAY3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
# 200,000 trades a day give the perpetual ~25 row groups of trades, so pruning is visible.
TRADES_PER_DAY = 200_000
UNIVERSE = (
    '[universe]\nstart_date = "2024-01-01"\n'
    '[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n'
    '[[universe.venues]]\nexchange = "binance-futures"\nsymbols = ["BTCUSDT"]\n'
    '[[universe.venues]]\nexchange = "deribit"\nsymbols = []\ninstrument_types = ["PERPETUAL"]\n'
    'option_underlyings = ["BTC"]\n'
)


def at(hour: int, minute: int = 0, day: dt.date = DAY1) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), UTC)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """The pipeline's output for 2024-01-01 and 2024-01-02, built once for the module."""
    from mdh_assets.cli import main
    from mdh_lib.sample_server import SampleServer

    home = tmp_path_factory.mktemp("readers")
    (home / "mdh.toml").write_text(UNIVERSE)
    days = ["--start-date", DAY1.isoformat(), "--end-date", DAY2.isoformat()]
    with SampleServer(trades_per_day=TRADES_PER_DAY) as srv, pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        for name, value in {"MDH_DATA_ROOT": str(home / "data"), "DAGSTER_HOME": str(home / "dagster"),
                            "TARDIS_DATASETS_ENDPOINT": srv.endpoint, "TARDIS_API_ENDPOINT": srv.endpoint,
                            "TARDIS_API_KEY": "", "MDH_CONFIG": str(home / "mdh.toml")}.items():
            mp.setenv(name, value)
        for mode in ("download", "candle-processing", "mft-processing"):
            assert main([mode, *days]) == 0, mode
    return str(home / "data")


@pytest.fixture(scope="module")
def dc(root) -> DataClient:
    return DataClient(root)


def stored_ticks(root: str, day: dt.date, lo: dt.datetime | None = None, hi: dt.datetime | None = None,
                 data_type: str = "trades") -> pd.DataFrame:
    """What a plain full read of the stored day gives inside [lo, hi), timestamps as UTC datetimes."""
    table = pq.ParquetFile(os.path.join(root, raw_path(data_type, day, PERP))).read()
    frame = table.to_pandas()
    for col in ("timestamp", "local_timestamp"):
        frame[col] = pd.to_datetime(frame[col], unit="us", utc=True).astype("datetime64[us, UTC]")
    if lo is not None:
        frame = frame[(frame.timestamp >= lo) & (frame.timestamp < hi)]
    return frame.reset_index(drop=True)


# --- candles and features ----------------------------------------------------------------------


def test_candles_one_day_two_days_and_partial_days(root, dc):
    reader = CandleDataReader(dc)
    day = reader.get_candles(instrument_id=SPOT, timeframe="1m", start_date=DAY2, end_date=DAY3)
    assert len(day) == 1440 and day.timestamp.is_monotonic_increasing
    assert str(day.timestamp.dtype) == "datetime64[us, UTC]" and day.timestamp.iloc[0] == at(0, day=DAY2)
    assert set(day.exchange) == {"binance"} and set(day.symbol) == {"BTCUSDT"}
    stored = pq.ParquetFile(os.path.join(root, dataset_path(("candles", "1m"), DAY2, SPOT))).read().to_pandas()
    pd.testing.assert_frame_equal(day, stored[day.columns.tolist()])

    both = reader.get_candles(SPOT, "1m", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 3))  # naive = UTC
    assert len(both) == 2880 and both.timestamp.is_unique
    noon = reader.get_candles(SPOT, "1m", at(12), at(12, day=DAY2))
    assert len(noon) == 1440
    assert noon.timestamp.iloc[0] == at(12) and noon.timestamp.iloc[-1] == at(11, 59, DAY2)
    hours = reader.get_candles(PERP, "1h", "2024-01-01T22:00", "2024-01-02T02:00")
    assert hours.timestamp.tolist() == [at(22), at(23), at(0, day=DAY2), at(1, day=DAY2)]

    everything = reader.get_candles(SPOT, "15s", DAY1, DAY2, columns=CANDLE_COLUMNS)
    assert everything.columns.tolist() == CANDLE_COLUMNS and len(everything) == 5760


def test_missing_partition_raises_or_returns_what_exists(dc):
    reader = CandleDataReader(dc)
    with pytest.raises(MissingPartitionError) as err:
        reader.get_candles(SPOT, "1m", DAY1, dt.date(2024, 1, 5))
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.dates == [DAY3, dt.date(2024, 1, 4)] and err.value.instrument_key == SPOT
    assert "candles/1m" in str(err.value) and "2024-01-03" in str(err.value)
    assert len(reader.get_candles(SPOT, "1m", DAY1, dt.date(2024, 1, 5), allow_missing=True)) == 2880
    empty = reader.get_candles(SPOT, "1m", DAY3, dt.date(2024, 1, 5), allow_missing=True)
    assert empty.empty and {"timestamp", "exchange", "symbol"} <= set(empty.columns)


def test_bad_arguments_are_clear_value_errors(dc):
    reader = CandleDataReader(dc)
    with pytest.raises(ValueError, match="unknown timeframe"):
        reader.get_candles(SPOT, "2m", DAY1, DAY2)
    with pytest.raises(ValueError, match="VENUE:TYPE:SYMBOL"):
        reader.get_candles("BTCUSDT", "1m", DAY1, DAY2)
    with pytest.raises(ValueError, match="empty range"):
        reader.get_candles(SPOT, "1m", DAY1, DAY1)
    with pytest.raises(ValueError, match="MFT features exist for"):
        MFTFeaturesReader(dc).get_mft_features(SPOT, "15s", DAY1, DAY2)
    with pytest.raises(ValueError, match="unknown data type"):
        TickDataReader(dc).get_tick_data(PERP, at(12), at(12, 5), data_types=["quotes"])
    with pytest.raises(ValueError, match="give date"):
        TickDataReader(dc).get_tick_data(PERP, start_time=at(12))


def test_seed_merge_of_15s_candles_with_hft_features(dc):
    args = dict(instrument_id=PERP, timeframe="15s", start_date=at(0), end_date=at(12))
    candles_15s = CandleDataReader(dc).get_candles(**args)
    hft_features = HFTFeaturesReader(dc).get_hft_features(**args)
    merged = pd.merge(candles_15s, hft_features, on=["timestamp", "symbol", "exchange"], how="left")
    assert len(candles_15s) == len(hft_features) == len(merged) == 2880
    assert not [c for c in merged.columns if c.endswith(("_x", "_y"))]
    for col in ("delay_median", "liquidation_count", "buy_volume_sum", "funding_rate", "atm_mark_iv", "mid",
                "spread_bps", "ofi", LEVEL_NAMES["asks[0].price"]):
        assert col in merged.columns
    assert np.isfinite(merged["delay_median"].mean()) and merged["liquidation_count"].sum() >= 0
    assert merged["mid"].notna().all() and merged["atm_mark_iv"].notna().any()
    assert (merged["buy_volume_sum"] + merged["sell_volume_sum"] <= merged["volume"] + 1e-9).all()


def test_mft_features_span_days(dc):
    mft = MFTFeaturesReader(dc).get_mft_features(instrument_id=PERP, timeframe="1h", start_date=DAY1, end_date=DAY3)
    assert len(mft) == 48 and mft.timestamp.is_unique and mft.timestamp.iloc[-1] == at(23, day=DAY2)
    assert set(FEATURES) <= set(mft.columns) and mft["log_return"].notna().sum() > 40


def test_options_features_through_read_range(dc):
    options = dc.read_range(("features", "options"), "DERIBIT:OPTION:BTC", at(6), at(7))
    assert len(options) == 240 and options.timestamp.iloc[0] == at(6)


def test_instrument_definitions(dc):
    defs = dc.get_instrument_definitions(start_date=DAY1, end_date=DAY3)
    assert set(defs.date) == {DAY1, DAY2}
    assert {PERP, SPOT} <= set(defs.instrument_key) and (defs.instrument_key == PERP).sum() == 2
    one = dc.get_instrument_definitions(start_date=at(15))  # the start's day alone
    assert set(one.date) == {DAY1} and len(one) == (defs.date == DAY1).sum()
    with pytest.raises(MissingPartitionError, match="instruments"):
        dc.get_instrument_definitions(start_date=DAY2, end_date=dt.date(2024, 1, 4))


# --- uploads -----------------------------------------------------------------------------------


def test_upload_features_round_trip_and_replace(tmp_path):
    dc = DataClient(str(tmp_path))
    first = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC"), "f": [1.0, 2, 3]})
    uri = dc.upload_features(features=first, path=f"features/{PERP.replace(':', '_')}/1m/2024-01-01")
    assert uri == str(tmp_path / "features/BINANCE-FUTURES_PERPETUAL_BTC-USDT/1m/2024-01-01.parquet")
    assert pq.ParquetFile(uri).read().to_pandas()["f"].tolist() == [1.0, 2, 3]
    dc.upload_features(pl.DataFrame({"g": [7]}), "features/x/2024-01-01.parquet")
    assert dc.upload_features(pa.table({"g": [8, 9]}), "features/x/2024-01-01") == str(
        tmp_path / "features/x/2024-01-01.parquet")
    assert pq.ParquetFile(tmp_path / "features/x/2024-01-01.parquet").read()["g"].to_pylist() == [8, 9]
    for bad in ("../outside", "/abs/path", "gs://other/x", ""):
        with pytest.raises(ValueError):
            dc.upload_features(first, bad)


def test_upload_is_atomic_under_concurrent_reads(tmp_path):
    """A reader polling the target while it is replaced again and again only ever sees a
    whole file (one of the two versions), and no temporary file is left behind."""
    dc = DataClient(str(tmp_path))
    small, large = pd.DataFrame({"x": np.arange(10.0)}), pd.DataFrame({"x": np.arange(400_000.0)})
    target = tmp_path / "features" / "atomic.parquet"
    dc.upload_features(small, "features/atomic")
    seen, errors, done = set(), [], threading.Event()

    def poll():  # one open per read: pyarrow's path reader opens twice and could mix versions
        while not done.is_set():
            try:
                with open(target, "rb") as fh:
                    seen.add(pq.ParquetFile(fh).read().num_rows)
            except Exception as exc:  # any partial file would show up here
                errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for i in range(12):
            dc.upload_features(large if i % 2 == 0 else small, "features/atomic")
    finally:
        done.set()
        thread.join()
    assert not errors and seen <= {10, 400_000} and seen
    assert os.listdir(target.parent) == ["atomic.parquet"]


# --- ticks -------------------------------------------------------------------------------------


def test_window_read_equals_full_read_and_prunes_row_groups(root, dc):
    reader = TickDataReader(dc)
    expected = stored_ticks(root, DAY1, at(12), at(12, 5))
    assert len(expected) > 100
    plain = reader.get_tick_data(instrument_id=PERP, start_time=at(12), end_time=at(12, 5), date=DAY1)
    optimized = reader.get_tick_data_optimized(instrument_id=PERP, start_time=at(12), end_time=at(12, 5),
                                               date=dt.datetime(2024, 1, 1, tzinfo=UTC), use_predicate_pushdown=True)
    for got in (plain, optimized):
        pd.testing.assert_frame_equal(got, expected)
    stats = optimized.attrs["mdh_read_stats"]
    assert stats == vars(reader.last_read_stats)
    assert stats["row_groups_total"] >= 20 and 1 <= stats["row_groups_read"] <= 2
    assert stats["rows_returned"] == len(expected) and stats["rows_read"] < 3 * 8192
    size = os.path.getsize(os.path.join(root, raw_path("trades", DAY1, PERP)))
    assert stats["bytes_read"] < size / 8

    whole = reader.get_tick_data_optimized(PERP, at(12), at(12, 5), DAY1, use_predicate_pushdown=False)
    pd.testing.assert_frame_equal(whole, expected)
    assert whole.attrs["mdh_read_stats"]["row_groups_read"] == stats["row_groups_total"]

    prices = reader.get_tick_data(PERP, at(12), at(12, 5), DAY1, columns=["price"])
    assert prices.columns.tolist() == ["timestamp", "exchange", "symbol", "price"]
    assert reader.last_read_stats.bytes_read < stats["bytes_read"]


def test_window_across_midnight_reads_both_files_and_several_types(root, dc):
    reader = TickDataReader(dc)
    lo, hi = at(23, 58), at(0, 2, DAY2)
    got = reader.get_tick_data(PERP, lo, hi, data_types=["trades", "book_snapshot_5"])
    assert set(got) == {"trades", "book_snapshot_5"}
    for data_type, frame in got.items():
        expected = pd.concat([stored_ticks(root, d, lo, hi, data_type) for d in (DAY1, DAY2)], ignore_index=True)
        pd.testing.assert_frame_equal(frame, expected)
        assert frame.attrs["mdh_read_stats"]["files"] == 2
    with pytest.raises(MissingPartitionError, match="raw/trades"):
        reader.get_tick_data(PERP, at(12, day=DAY2), at(12, day=DAY3))
    only_day2 = reader.get_tick_data(PERP, at(23, day=DAY2), at(1, day=DAY3), allow_missing=True)
    assert len(only_day2) and only_day2.timestamp.max() < at(0, day=DAY3)


def test_streaming_is_bounded_lazy_and_complete(root, dc):
    reader = TickDataReader(dc)
    lo, hi = at(12), at(14)
    expected = stored_ticks(root, DAY1, lo, hi)
    stream = reader.get_tick_data_streaming(instrument_id=PERP, start_time=lo, end_time=hi, date=DAY1,
                                            chunk_size=1000)
    first = next(stream)
    assert len(first) == 1000 and reader.last_read_stats.row_groups_read == 1  # nothing more decoded yet
    chunks = [first, *stream]
    assert all(len(c) == 1000 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 1000
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), expected)
    stats = reader.last_read_stats
    assert stats.rows_returned == len(expected) and 2 <= stats.row_groups_read < stats.row_groups_total
    with pytest.raises(ValueError, match="one data type"):
        reader.get_tick_data_streaming(PERP, lo, hi, DAY1, data_types=["trades", "liquidations"])
    with pytest.raises(MissingPartitionError):  # checked at the call, not at the first chunk
        reader.get_tick_data_streaming(PERP, date=DAY3)


def test_sparse_candles(root, dc):
    reader = TickDataReader(dc)
    times = [dt.datetime(2024, 1, 1, 12, 0), at(12, 15), at(18, 30)]  # a naive one is UTC
    sparse = reader.get_sparse_candles(instrument_id=PERP, candle_times=times, date=DAY1, data_types=["trades"],
                                       buffer_minutes=2)
    assert list(sparse) == times
    day = stored_ticks(root, DAY1)
    for t, frame in sparse.items():
        t = t.replace(tzinfo=UTC)
        want = day[(day.timestamp >= t - dt.timedelta(minutes=2)) & (day.timestamp < t + dt.timedelta(minutes=2))]
        pd.testing.assert_frame_equal(frame, want.reset_index(drop=True))
    stats = reader.last_read_stats
    assert stats.row_groups_read <= 2 * len(times) and stats.rows_read < len(day) / 4


def _sparse_copy(path: str, spans: list[tuple[int, int]]) -> bytes:
    """The file as a client with only HTTP range reads would hold it: the footer and the given
    byte spans, zeros everywhere else."""
    data = open(path, "rb").read()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    copy = bytearray(len(data))
    copy[-footer:] = data[-footer:]
    for start, end in spans:
        copy[start:end] = data[start:end]
    return bytes(copy)


def test_sparse_data_ranges_are_real_byte_ranges(root, dc):
    reader = TickDataReader(dc)
    ranges = reader.get_sparse_data_ranges(instrument_id=PERP, date=DAY1, data_types=["trades", "book_snapshot_5"],
                                           time_partition_minutes=1)
    assert set(ranges) == {"trades", "book_snapshot_5"}
    path = os.path.join(root, raw_path("trades", DAY1, PERP))
    data, meta = open(path, "rb").read(), pq.read_metadata(path)
    partitions = ranges["trades"]
    day = stored_ticks(root, DAY1)
    minutes_with_data = set(day.timestamp[day.timestamp >= at(0)].dt.floor("1min"))
    assert minutes_with_data <= {start for start, *_ in partitions}
    assert all(end - start == dt.timedelta(minutes=1) for start, end, *_ in partitions)
    first_chunks = [meta.row_group(i).column(0) for i in range(meta.num_row_groups)]
    starts = {c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset for c in first_chunks}
    for start, end, byte_start, byte_end in partitions:
        assert byte_start in starts and byte_start < byte_end <= len(data)
        assert data[byte_start] == 0x15  # a Thrift PageHeader starts here (field 1, i32 type)

    # A client holding only the footer and one partition's bytes decodes that partition's rows.
    start, end, byte_start, byte_end = partitions[720]
    assert start == at(12)
    sparse = pq.ParquetFile(pa.BufferReader(_sparse_copy(path, [(byte_start, byte_end)])))
    groups = [i for i in range(meta.num_row_groups) if byte_start <= meta.row_group(i).column(0).data_page_offset
              < byte_end]
    table = sparse.read_row_groups(groups)
    ts = table["timestamp"]
    rows = table.filter(pc.and_(pc.greater_equal(ts, int(start.timestamp() * 1e6)),
                                pc.less(ts, int(end.timestamp() * 1e6))))
    expected = day[(day.timestamp >= start) & (day.timestamp < end)]
    assert rows.num_rows == len(expected) > 0 and rows["id"].to_pylist() == expected["id"].tolist()

    hourly = reader.get_sparse_data_ranges(PERP, DAY1, "trades", time_partition_minutes=60)["trades"]
    assert len(hourly) == 24 and hourly[0][2] == partitions[0][2] and hourly[-1][3] == partitions[-1][3]


# --- gs:// ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gcs_root(root, gcs_emulator) -> str:
    """The files the gs:// tests read, copied into the emulator's bucket."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
        remote = Storage("gs://mdh-test/readers")
        for rel in (dataset_path(("candles", "1m"), DAY1, PERP), dataset_path(("candles", "1m"), DAY2, PERP),
                    raw_path("trades", DAY1, PERP), dataset_path(("instruments",), DAY1)):
            remote.fs.put_file(os.path.join(root, rel), remote.path(rel))
    return "gs://mdh-test/readers"


def test_readers_over_gcs_emulator(root, dc, gcs_root, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    gcs = DataClient(gcs_root)
    assert gcs.storage.is_gcs
    candles = CandleDataReader(gcs).get_candles(PERP, "1m", at(12), at(12, day=DAY2))
    pd.testing.assert_frame_equal(candles, CandleDataReader(dc).get_candles(PERP, "1m", at(12), at(12, day=DAY2)))
    with pytest.raises(MissingPartitionError):
        CandleDataReader(gcs).get_candles(PERP, "1m", DAY1, DAY3 + dt.timedelta(days=1))

    reader = TickDataReader(gcs)
    window = reader.get_tick_data_optimized(PERP, at(12), at(12, 5), DAY1)
    pd.testing.assert_frame_equal(window, stored_ticks(root, DAY1, at(12), at(12, 5)))
    assert window.attrs["mdh_read_stats"]["row_groups_read"] <= 2

    ranges = reader.get_sparse_data_ranges(PERP, DAY1)
    assert ranges == TickDataReader(dc).get_sparse_data_ranges(PERP, DAY1)
    _, _, byte_start, byte_end = ranges["trades"][600]
    local = open(os.path.join(root, raw_path("trades", DAY1, PERP)), "rb").read()
    fetched = gcs.storage.fs.cat_file(gcs.storage.path(raw_path("trades", DAY1, PERP)), byte_start, byte_end)
    assert fetched == local[byte_start:byte_end]  # an HTTP range read of exactly those bytes

    assert set(gcs.get_instrument_definitions(DAY1).instrument_key) >= {PERP}
    seed_style = DataClient("mdh-test", SimpleNamespace(gcp=SimpleNamespace(bucket="mdh-test", project_id="p")))
    assert seed_style.storage.root == "gs://mdh-test"


def test_root_rule(monkeypatch, tmp_path):
    assert resolve_root("gs://b/prefix") == "gs://b/prefix"
    assert resolve_root("/data/root") == "/data/root" and resolve_root("relative/dir") == "relative/dir"
    assert resolve_root("market-data-tick", object()) == "gs://market-data-tick"
    assert resolve_root("local-dir") == "local-dir"  # a bare name without a config is a folder
    monkeypatch.chdir(tmp_path)  # no mdh.toml here
    monkeypatch.delenv("MDH_CONFIG", raising=False)
    monkeypatch.setenv("MDH_DATA_ROOT", str(tmp_path / "x"))
    assert DataClient().storage.root == str(tmp_path / "x")


def test_import_does_not_load_dagster():
    code = "import sys, mdh_lib.readers; assert 'dagster' not in sys.modules, 'dagster imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
