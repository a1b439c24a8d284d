"""Atomic Parquet writes on a local root and on gs:// (google-cloud-storage/gcsfs against
gcp-storage-emulator on 127.0.0.1)."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdh_lib.storage import ROW_GROUPS_PER_DAY, STREAM_ROW_GROUP, Storage

REL = "raw/trades/date=2024-01-01/BINANCE_SPOT_PAIR_BTC-USDT.parquet"


def _table(n: int) -> pa.Table:
    return pa.table({"timestamp": pa.array(range(n), pa.int64()), "price": pa.array([1.0] * n)})


def test_local_atomic_replace_and_failed_write_keeps_old(tmp_path):
    st = Storage(str(tmp_path))
    st.write_parquet(REL, _table(10), sorting_column="timestamp")
    def broken():
        yield _table(5)
        raise ValueError("stream broke")

    with pytest.raises(ValueError, match="stream broke"):
        st.write_batches(REL, _table(1).schema, broken(), sorting_column="timestamp")
    assert st.read_parquet(REL).num_rows == 10
    assert [p for p in os.listdir(tmp_path / "raw/trades/date=2024-01-01")] == ["BINANCE_SPOT_PAIR_BTC-USDT.parquet"]
    day = pa.table({"timestamp": pa.array(range(0, 86_400_000_000, 86_400), pa.int64())})  # 1M rows
    info = st.write_parquet(REL, day, sorting_column="timestamp")
    assert (info.rows, info.row_groups, info.first_timestamp, info.last_timestamp) == (
        1_000_000, ROW_GROUPS_PER_DAY, 0, 86_400_000_000 - 86_400)
    meta = pq.read_metadata(st.path(REL))
    for i in range(meta.num_row_groups):  # statistics let a reader skip groups
        assert meta.row_group(i).column(0).statistics.has_min_max
    assert st.write_parquet(REL, _table(100), sorting_column="timestamp").row_groups == 1
    streamed = st.write_batches(REL, day.schema, day.to_batches(max_chunksize=77_777), sorting_column="timestamp")
    assert (streamed.rows, streamed.row_groups) == (1_000_000, -(-1_000_000 // STREAM_ROW_GROUP))
    assert st.read_parquet(REL)["timestamp"].to_pylist() == day["timestamp"].to_pylist()


def test_gcs_round_trip(gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    st = Storage("gs://mdh-test/root")
    info = st.write_parquet(REL, _table(5))
    assert info.uri == f"gs://mdh-test/root/{REL}"
    assert st.exists(REL) and st.list("raw") == [REL]
    assert st.read_parquet(REL)["timestamp"].to_pylist() == [0, 1, 2, 3, 4]

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_emulator})
    assert [b.name for b in client.list_blobs("mdh-test", prefix="root/")] == [f"root/{REL}"]
    st.delete(REL)
    assert not st.exists(REL)


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_read_parquet_many_conforms_older_files(where, tmp_path, request, monkeypatch):
    """Many small files in one read (the manifests of a month): rows in file order, each
    with its file, and a column an older file lacks comes back null."""
    if where == "gcs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", request.getfixturevalue("gcs_emulator"))
    st = Storage("gs://mdh-test/many" if where == "gcs" else str(tmp_path))
    schema = pa.schema([("timestamp", pa.int64()), ("price", pa.float64()), ("note", pa.string())])
    st.write_parquet("a.parquet", _table(2))  # an older file: no `note`
    st.write_parquet("b.parquet", pa.table({"timestamp": [7], "price": [2.0], "note": ["new"]}, schema=schema))
    got = st.read_parquet_many(["a.parquet", "b.parquet"], schema)
    assert got.columns == ["timestamp", "price", "note", "file"]
    assert got.rows() == [(0, 1.0, None, "a.parquet"), (1, 1.0, None, "a.parquet"), (7, 2.0, "new", "b.parquet")]
    assert st.read_parquet_many([], schema).columns == ["timestamp", "price", "note", "file"]
