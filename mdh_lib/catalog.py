"""Datasets by (dataset, date, key) over a storage root: polars frames in, Parquet files out.

What the Dagster assets and `mdh_lib.processor` use to combine `mdh_lib.layout` paths with
`mdh_lib.storage` (the service readers in `mdh_lib.readers` add read statistics on top);
reads prune columns and, with a ``timestamp`` window, row groups by their
statistics; `write` and `commit` are the one way a partition file is placed (atomically).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import polars as pl
import pyarrow as pa

from mdh_lib.instruments import InstrumentKey
from mdh_lib.layout import dataset_path
from mdh_lib.parquet_window import Window
from mdh_lib.storage import Storage, WriteInfo

Dataset = tuple[str, ...]


class MissingInput(LookupError):
    """An input of a computation is not in the storage root (one line naming it and the
    command that makes it)."""


class Catalog:
    def __init__(self, storage: Storage):
        self.storage = storage
        self._definitions: dict[dt.date, pa.Table] = {}  # read once per day: every instrument asks

    def path(self, dataset: Dataset, date: dt.date, key: InstrumentKey | str | None = None) -> str:
        """The partition's file, relative to the root (`mdh_lib.layout.dataset_path`)."""
        return dataset_path(dataset, date, key)

    def exists(self, dataset: Dataset, date: dt.date, key: InstrumentKey | str | None = None) -> bool:
        return self.storage.exists(dataset_path(dataset, date, key))

    def read(self, dataset: Dataset, date: dt.date, key: InstrumentKey | str | None = None,
             columns: list[str] | None = None, window: Window | None = None) -> pl.DataFrame | None:
        """The partition as a frame (only its rows with ``timestamp`` in ``window`` when given),
        or None when it has not been written."""
        rel = dataset_path(dataset, date, key)
        if not self.storage.exists(rel):
            return None
        return self.storage.read_frame(rel, columns=columns, window=window)

    def write(self, dataset: Dataset, date: dt.date, key: InstrumentKey | str | None,
              frame: pl.DataFrame | pa.Table) -> WriteInfo:
        """Write one partition's file atomically (sorted-by-timestamp metadata when it has one)."""
        table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
        return self.storage.write_parquet(dataset_path(dataset, date, key), table,
                                          sorting_column="timestamp" if "timestamp" in table.column_names else None)

    def commit(self, local: WriteInfo, dataset: Dataset, date: dt.date, key: InstrumentKey | str) -> WriteInfo:
        """Place a staged local file (a raw ingest, `mdh_lib.ingest`) as one partition's file."""
        return self.storage.commit(local, dataset_path(dataset, date, key))

    def definitions(self, date: dt.date) -> pa.Table | None:
        """The day's instrument definitions (`mdh_lib.definitions`), or None before they exist;
        a catalog reads a day's once (make a new one to see definitions written since)."""
        if date not in self._definitions:
            rel = dataset_path(("instruments",), date)
            if not self.storage.exists(rel):
                return None
            self._definitions[date] = self.storage.read_parquet(rel)
        return self._definitions[date]

    def batches(self, dataset: Dataset, date: dt.date, key: InstrumentKey | str | None = None,
                columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """The partition one row group at a time (bounded memory for large days)."""
        rel = dataset_path(dataset, date, key)
        if not self.storage.exists(rel):
            return
        pf = self.storage.parquet_file(rel)
        for i in range(pf.num_row_groups):
            yield pl.from_arrow(pf.read_row_group(i, columns=columns))
