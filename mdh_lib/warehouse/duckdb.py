"""The embedded warehouse: one DuckDB file, the same table names and columns as BigQuery.

DuckDB has no table partitioning or clustering: `describe` reports both as None. Rows stay in
load order, so each (day, instrument) slice lands in its own row groups and DuckDB's automatic
min/max zone maps skip the other days when a query filters on ``timestamp``.

Concurrency: DuckDB lets one process at a time open a file for writing, and a second process
cannot even open it read-only meanwhile. Every operation therefore opens its own connection
while holding a file lock next to the database (``<file>.lock``, the `filelock` package),
waiting up to ``lock_timeout`` seconds for another writer (thread or process) to finish, and
retries briefly if a process that does not take the lock (a DuckDB shell) holds the file.
A slice replace is one DuckDB transaction (create if missing, delete, insert): on any error
nothing of it is applied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
from filelock import FileLock
from google.api_core.retry import Retry

from mdh_lib.crashpoints import crashpoint
from mdh_lib.warehouse.base import Warehouse
from mdh_lib.warehouse.frames import added_columns, table_name

_open = Retry(predicate=lambda e: isinstance(e, duckdb.IOException) and "lock" in str(e),
              initial=0.1, maximum=1.0, timeout=10.0)(duckdb.connect)


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: str | Path, *, lock_timeout: float = 120.0):
        self.path = Path(path)
        self.url = f"duckdb:///{path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(f"{self.path}.lock", timeout=lock_timeout)

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection under the file lock; closing it rolls back a transaction left open."""
        with self._lock:
            con = _open(str(self.path))
            try:
                con.execute("SET TimeZone = 'UTC'")
                yield con
            finally:
                con.close()

    def _load(self, table: str, frame: pa.Table, delete: tuple[dt.datetime, dt.datetime, str] | None) -> None:
        with self._connect() as con:
            con.register("incoming", frame)
            con.begin()
            con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS FROM incoming LIMIT 0')
            added = added_columns(table, self._columns(con, table), frame)
            if added:
                types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE incoming)").fetchall())
                for col in added:
                    con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{col}" {types[col]}')
            if delete:
                con.execute(f'DELETE FROM "{table}" WHERE timestamp >= $1 AND timestamp < $2 AND instrument_key = $3',
                            list(delete))
            con.execute(f'INSERT INTO "{table}" BY NAME FROM incoming')
            crashpoint("warehouse.in_transaction")
            con.commit()

    def _replace(self, table, frame, start, end, instrument_key) -> None:
        self._load(table, frame, (start, end, instrument_key))

    def _append(self, table, frame) -> None:
        self._load(table, frame, None)

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
        rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
                           "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()
        return [r[0] for r in rows]

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        with self._connect() as con:
            rel = con.sql(sql, params=params)
            return rel.pl() if rel is not None else pl.DataFrame()

    def table_ref(self, name: str) -> str:
        return f'"{table_name(name)}"'

    def param(self, name: str) -> str:
        return f"${name}"

    def tables(self) -> list[str]:
        with self._connect() as con:
            rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                               "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def describe(self, table: str) -> dict[str, Any]:
        with self._connect() as con:
            if not self._columns(con, table_name(table)):
                raise LookupError(f"no table {table} in {self.url}")
            rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        return {"partitioning": None, "clustering": None, "rows": rows}

    def close(self) -> None:
        """Nothing stays open between operations."""
