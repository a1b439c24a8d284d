"""`DataClient.upload_features`: each bad argument raises one clear error naming the argument
and what it accepts, before anything is written; the accepted frame types still upload."""

from __future__ import annotations

import os
import pathlib

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdh_lib.readers.data_client import DataClient

ACCEPTED = "a pandas DataFrame, a polars DataFrame or a pyarrow Table"
GOOD = pd.DataFrame({"f": [1.0, 2.0]})


@pytest.fixture
def dc(tmp_path) -> DataClient:
    return DataClient(str(tmp_path / "root"))


def _nothing_written(dc: DataClient) -> bool:
    root = pathlib.Path(dc.storage.root)
    return not root.exists() or not [f for _, _, files in os.walk(root) for f in files if f.endswith(".parquet")]


@pytest.mark.parametrize("features, got", [
    (None, "got NoneType"),
    ({"f": [1.0]}, "got dict"),
    ([[1.0]], "got list"),
    ("features.csv", "got str"),
    (pa.record_batch({"f": [1.0]}), "got RecordBatch"),
    (pl.LazyFrame({"f": [1.0]}), r"got LazyFrame; call \.collect\(\) first"),
    (pl.Series("f", [1.0]), r"got Series; call \.to_frame\(\) first"),
    (pd.Series([1.0], name="f"), r"got Series; call \.to_frame\(\) first"),
])
def test_features_of_the_wrong_type(dc, features, got):
    with pytest.raises(TypeError, match=rf"^upload_features: features must be {ACCEPTED}, {got}"):
        dc.upload_features(features, "features/x/2024-01-01")
    assert _nothing_written(dc)


def test_none_features_positional_and_keyword(dc):
    for call in (lambda: dc.upload_features(None, "features/x"), lambda: dc.upload_features(features=None, path="f/x")):
        with pytest.raises(TypeError, match="features must be a pandas DataFrame, a polars DataFrame or a pyarrow "
                                            "Table, got NoneType"):
            call()


@pytest.mark.parametrize("features", [pd.DataFrame(), pl.DataFrame(), pa.table({})])
def test_features_without_columns(dc, features):
    with pytest.raises(ValueError, match="^upload_features: features has no columns"):
        dc.upload_features(features, "features/x")
    assert _nothing_written(dc)


@pytest.mark.parametrize("features", [
    pd.DataFrame([[1.0, 2.0]], columns=["f", "f"]),
    pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["f", "f"]),
])
def test_duplicate_column_names(dc, features):
    with pytest.raises(ValueError, match=r"^upload_features: features has duplicate column names \['f'\]"):
        dc.upload_features(features, "features/x")
    assert _nothing_written(dc)


def test_pandas_columns_arrow_cannot_hold(dc):
    mixed = pd.DataFrame({"f": [1.0, "a", object()]})
    with pytest.raises(ValueError, match="^upload_features: features cannot be written as Parquet: .*f"):
        dc.upload_features(mixed, "features/x")
    assert _nothing_written(dc)


@pytest.mark.parametrize("path", [None, 7, b"features/x", pathlib.PurePosixPath("features/x"), ["features", "x"]])
def test_path_of_the_wrong_type(dc, path):
    with pytest.raises(TypeError, match=r"^upload_features: path must be a str relative to the data root, "
                                        r"like 'features/x/2024-01-01'; got "):
        dc.upload_features(GOOD, path)
    assert _nothing_written(dc)


@pytest.mark.parametrize("path", ["", "   ", "/abs/path", "gs://other/x", "../outside", "features/../../x",
                                  "features//x", "features/x/", "./features/x", "features/.parquet"])
def test_bad_path_values(dc, path):
    with pytest.raises(ValueError, match=r"^upload_features: path "):
        dc.upload_features(GOOD, path)
    assert _nothing_written(dc)


def test_path_is_checked_first(dc):
    """With both arguments wrong, the first error names the path (checked first) and nothing is written."""
    with pytest.raises(TypeError, match="path must be a str"):
        dc.upload_features(None, None)
    assert _nothing_written(dc)


@pytest.mark.parametrize("features", [
    GOOD,
    pl.DataFrame({"f": [1.0, 2.0]}),
    pa.table({"f": [1.0, 2.0]}),
    pd.DataFrame({"f": pd.Series([], dtype="float64")}),  # zero rows: a valid empty file
])
def test_accepted_frames_still_upload(dc, features):
    uri = dc.upload_features(features, " features/ok/2024-01-01 ")
    assert uri.endswith("features/ok/2024-01-01.parquet")
    table = pq.ParquetFile(uri).read()
    assert table.column_names == ["f"] and table.num_rows == len(features)
