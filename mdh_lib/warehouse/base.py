"""The warehouse interface that both backends (DuckDB, BigQuery) implement identically.

The public methods normalise and check the frame once (`mdh_lib.warehouse.frames`); a backend
only implements how to replace a checked slice, append, query and describe.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import Any

import polars as pl
import pyarrow as pa

from mdh_lib.warehouse.frames import as_arrow, check_slice, day_bounds, table_name


class Warehouse(ABC):
    """Tables by bare name (``candles_1m``); SQL in the backend's dialect, with
    ``table_ref(name)`` for table names and ``param(name)`` for query parameters."""

    url: str

    def replace_slice(self, table: str, data: pa.Table | pl.DataFrame, *, date: dt.date, instrument_key: str) -> int:
        """Replace exactly the rows of (UTC day ``date`` of ``timestamp``, ``instrument_key``)
        with ``data``, creating the table if missing; returns the rows loaded. Every row of
        ``data`` must belong to the slice (ValueError otherwise, nothing changed)."""
        frame = as_arrow(data)
        check_slice(frame, date, instrument_key)
        start, end = day_bounds(date)
        self._replace(table_name(table), frame, start, end, instrument_key)
        return frame.num_rows

    def append(self, table: str, data: pa.Table | pl.DataFrame) -> int:
        """Append ``data`` as is, creating the table if missing; returns the rows loaded."""
        frame = as_arrow(data)
        self._append(table_name(table), frame)
        return frame.num_rows

    def stream_rows(self, table: str, data: pa.Table | pl.DataFrame) -> int:
        """Append a live micro-batch (streaming ticks and candles), creating the table if missing;
        returns the rows written. Unlike `append`, made for many small writes: BigQuery streams
        them (load jobs are limited to about 1,500 per table per day)."""
        frame = as_arrow(data)
        self._stream(table_name(table), frame)
        return frame.num_rows

    def _stream(self, table: str, frame: pa.Table) -> None:
        """Backends where an append is cheap (DuckDB: one small transaction) stream by appending."""
        self._append(table, frame)

    @abstractmethod
    def _replace(self, table: str, frame: pa.Table, start: dt.datetime, end: dt.datetime, instrument_key: str) -> None:
        """Atomically delete the rows with ``start <= timestamp < end`` of ``instrument_key``
        and insert ``frame``."""

    @abstractmethod
    def _append(self, table: str, frame: pa.Table) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run ``sql``; ``params`` fill the placeholders written ``param(name)``."""

    @abstractmethod
    def table_ref(self, name: str) -> str:
        """``name`` as it is written in this backend's SQL."""

    @abstractmethod
    def param(self, name: str) -> str:
        """The placeholder of query parameter ``name`` in this backend's SQL."""

    @abstractmethod
    def tables(self) -> list[str]: ...

    @abstractmethod
    def describe(self, table: str) -> dict[str, Any]:
        """``{"partitioning": str | None, "clustering": list[str] | None, "rows": int}``;
        LookupError for a table that does not exist."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
