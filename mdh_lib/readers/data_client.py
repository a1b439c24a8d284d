"""`DataClient`: one storage root for the readers, plus the seed's definitions and upload calls.

Root rule: ``DataClient("gs://bucket/prefix")`` or ``DataClient("/local/folder")``; the seed's
``DataClient(bucket_name, config)`` (a bare name, no ``/``, together with a config object)
means ``gs://bucket_name``, with the GCP project taken from ``config.gcp.project_id`` when
present; ``DataClient(config.gcp.bucket, config)`` with `mdh_lib.guide.get_config` opens the configured
root itself (a local folder, or gs:// with its prefix); ``DataClient()`` uses ``MDH_DATA_ROOT`` (or ``GCS_BUCKET``, or mdh.toml, default
``./.mdh/data``) as `mdh_lib.config.load_settings` resolves it. gs:// honours
``STORAGE_EMULATOR_HOST`` (see `mdh_lib.storage`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

import pandas as pd
import polars as pl
import pyarrow as pa

from mdh_lib.config import load_settings
from mdh_lib.definitions import DEFINITIONS_SCHEMA
from mdh_lib.instruments import InstrumentKey
from mdh_lib.layout import dataset_path
from mdh_lib.parquet_window import OpenFiles, read_window
from mdh_lib.readers.ranges import MissingPartitionError, TimeLike, as_date, days, instrument, micros, utc_range
from mdh_lib.storage import Storage

# The columns every returned frame leads with (the seed merges on them), typed so that an
# empty result still merges with a full one.
KEY_COLUMNS = ["timestamp", "exchange", "symbol"]
_KEY_TYPES = {"timestamp": pa.timestamp("us", "UTC"), "exchange": pa.large_string(), "symbol": pa.large_string()}


def resolve_root(root: str | os.PathLike | None, config: object | None = None) -> str:
    if root is None:
        return load_settings().data_root
    root = os.fspath(root)
    if not root:
        raise ValueError("an empty storage root: give a folder, gs://bucket/prefix or a bucket name with a config")
    gcp = getattr(config, "gcp", None)
    if getattr(config, "data_root", None) and root == getattr(gcp, "bucket", None):
        return config.data_root  # get_config()'s bucket: the configured root, prefix included
    return f"gs://{root}" if config is not None and "/" not in root else root


def with_keys(columns: Sequence[str] | None) -> list[str] | None:
    """``columns`` with the key columns in front (None = every column)."""
    return None if columns is None else KEY_COLUMNS + [c for c in columns if c not in KEY_COLUMNS]


class DataClient:
    def __init__(self, root: str | os.PathLike | None = None, config: object | None = None):
        project = getattr(getattr(config, "gcp", None), "project_id", None)
        self.storage = Storage(resolve_root(root, config), project=project or None)

    def __repr__(self) -> str:
        return f"DataClient({self.storage.root!r})"

    def read_range(self, dataset: Sequence[str], instrument_id: InstrumentKey | str, start: TimeLike, end: TimeLike,
                   *, columns: Sequence[str] | None = None, allow_missing: bool = False) -> pd.DataFrame:
        """Rows of a per-instrument daily dataset (``("candles", "1m")``, ``("book", "15s")``,
        ``("features", "mft", "1h")``, ``("features", "options")`` ...) with ``timestamp`` in
        [start, end): each day's file in turn, only ``columns`` (plus the keys) and only the row
        groups whose statistics overlap the range (`mdh_lib.parquet_window`)."""
        key, dataset = instrument(instrument_id), tuple(dataset)
        lo, hi = utc_range(start, end)
        wanted = with_keys(columns)
        tables, missing = [], []
        with OpenFiles(self.storage) as open_file:
            for day in days(lo, hi):
                rel = dataset_path(dataset, day, key)
                if self.storage.exists(rel):
                    tables.append(read_window(open_file(rel), (micros(lo), micros(hi)), wanted)[0])
                else:
                    missing.append(day)
        if missing and not allow_missing:
            raise MissingPartitionError(dataset, missing, key)
        if not tables:
            names = wanted or KEY_COLUMNS
            return pa.schema([(c, _KEY_TYPES.get(c, pa.null())) for c in names]).empty_table().to_pandas()
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def get_instrument_definitions(self, start_date: TimeLike, end_date: TimeLike | None = None, *,
                                   allow_missing: bool = False) -> pd.DataFrame:
        """The definitions of each day in [start_date, end_date) (``end_date`` omitted: the
        start day alone), one row per instrument and day (`mdh_lib.definitions`)."""
        end = end_date if end_date is not None else as_date(start_date) + dt.timedelta(days=1)
        lo, hi = utc_range(start_date, end)
        rels = {day: dataset_path(("instruments",), day) for day in days(lo, hi)}
        missing = [day for day, rel in rels.items() if not self.storage.exists(rel)]
        if missing and not allow_missing:
            raise MissingPartitionError(("instruments",), missing)
        with OpenFiles(self.storage) as open_file:
            tables = [open_file(rel).read() for day, rel in rels.items() if day not in missing]
        if not tables:
            return DEFINITIONS_SCHEMA.empty_table().to_pandas()
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def upload_features(self, features: pd.DataFrame | pl.DataFrame | pa.Table, path: str) -> str:
        """Write ``features`` as Parquet at ``path`` under the root (".parquet" appended when
        missing) and return its URI. Atomic (`Storage.write_parquet`): the file appears only
        complete and a re-upload replaces it. A pandas index other than the default range is
        kept as a column.

        ``features``: a pandas DataFrame, polars DataFrame or pyarrow Table with at least one
        column and unique column names (zero rows is fine); ``path``: a str relative to the data
        root, like ``"features/x/2024-01-01"`` (no leading ``/``, scheme, ``..``, ``.`` or empty
        segment). Anything else raises before any write: TypeError for a wrong type (None, a
        LazyFrame, a Series, a non-str path), ValueError for a wrong value."""
        rel = _upload_path(path)
        return self.storage.write_parquet(rel, _upload_table(features)).uri


_UPLOADABLE = "a pandas DataFrame, a polars DataFrame or a pyarrow Table"


def _upload_path(path: object) -> str:
    """The relative ``.parquet`` path of an upload, or TypeError/ValueError naming ``path``."""
    example = "like 'features/x/2024-01-01'"
    if not isinstance(path, str):
        raise TypeError(f"upload_features: path must be a str relative to the data root, {example}; "
                        f"got {type(path).__name__} {path!r}")
    rel = path.strip()
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "://" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"upload_features: path must be relative to the data root, {example} (no leading '/', "
                         f"scheme, '..', '.' or empty segment); got {path!r}")
    if parts[-1] == ".parquet":
        raise ValueError(f"upload_features: path needs a file name before '.parquet'; got {path!r}")
    return rel if rel.endswith(".parquet") else f"{rel}.parquet"


def _upload_table(features: object) -> pa.Table | pl.DataFrame:
    """``features`` as a frame `Storage.write_parquet` takes, or TypeError/ValueError naming it."""
    if isinstance(features, (pl.LazyFrame, pl.Series, pd.Series)):
        hint = "; call .collect() first" if isinstance(features, pl.LazyFrame) else "; call .to_frame() first"
        raise TypeError(f"upload_features: features must be {_UPLOADABLE}, got {type(features).__name__}{hint}")
    if not isinstance(features, (pd.DataFrame, pl.DataFrame, pa.Table)):
        raise TypeError(f"upload_features: features must be {_UPLOADABLE}, got {type(features).__name__}")
    names = features.column_names if isinstance(features, pa.Table) else [str(c) for c in features.columns]
    if not names:
        raise ValueError("upload_features: features has no columns; give at least one")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"upload_features: features has duplicate column names {duplicated}; "
                         "Parquet needs unique ones")
    if not isinstance(features, pd.DataFrame):
        return features
    try:
        return pa.Table.from_pandas(features)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ValueError(f"upload_features: features cannot be written as Parquet: {exc}") from exc
