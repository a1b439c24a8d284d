"""Per-instrument outcomes of one venue-day materialization: the manifest.

A Dagster partition is a (day, venue); one materialization writes a file per instrument, and
Dagster's status cannot say which instrument failed. The manifest does: one row per
instrument with status ``ok`` (a file with rows), ``empty`` (a file without rows: a day the
exchange had no data) or ``failed`` (no new file; the previous good one stays), the rows and
bytes written, the source file, a one-line error, how many attempts in a row failed and the
run. It is written atomically after the files it describes, under ``_manifests/`` (a tree
that Hive globs over the datasets never read: `mdh_lib.layout.manifest_path`).

A re-materialization that touches only some instruments (the failed ones, or a narrowed run)
keeps the rows of the others, so the manifest always holds each instrument's latest outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from mdh_lib.layout import manifest_path
from mdh_lib.storage import Storage

OK, EMPTY, FAILED = "ok", "empty", "failed"
SCHEMA = pa.schema([
    ("instrument_key", pa.string()), ("status", pa.string()), ("rows", pa.int64()), ("bytes", pa.int64()),
    ("source", pa.string()), ("error", pa.string()), ("attempts", pa.int32()), ("run_id", pa.string()),
])


@dataclass(frozen=True)
class Outcome:
    instrument_key: str
    status: str
    rows: int = 0
    bytes: int = 0
    source: str = ""
    error: str = ""
    attempts: int = 0  # failed attempts in a row (0 once it succeeds)
    run_id: str = ""


def read(storage: Storage, dataset: tuple[str, ...], date: dt.date, venue: str) -> dict[str, Outcome]:
    """The latest outcome of each instrument of a venue-day (empty before any)."""
    rel = manifest_path(dataset, date, venue)
    if not storage.exists(rel):
        return {}
    return {row["instrument_key"]: Outcome(**row) for row in storage.read_parquet(rel).to_pylist()}


def write(storage: Storage, dataset: tuple[str, ...], date: dt.date, venue: str, outcomes: Iterable[Outcome]) -> str:
    """Replace the venue-day's manifest atomically; its path."""
    rel = manifest_path(dataset, date, venue)
    rows = sorted((asdict(o) for o in outcomes), key=lambda r: r["instrument_key"])
    storage.write_parquet(rel, pa.Table.from_pylist(rows, schema=SCHEMA))
    return rel


def query(storage: Storage, datasets: Iterable[tuple[str, ...]], dates: Iterable[dt.date],
          venues: Iterable[str]) -> pa.Table:
    """Every manifest row of these datasets, days and venues in one read, with ``dataset``
    (``raw/trades``), ``date`` and ``venue`` columns added."""
    found = {storage.path(manifest_path(ds, d, v)): ("/".join(ds), d, v)
             for ds in datasets for d in dates for v in venues if storage.exists(manifest_path(ds, d, v))}
    schema = SCHEMA.append(pa.field("dataset", pa.string())).append(pa.field("date", pa.date32())).append(
        pa.field("venue", pa.string()))
    if not found:
        return schema.empty_table()
    tables = []
    for path, (dataset, date, venue) in found.items():
        t = pq.read_table(path, filesystem=storage.fs, schema=SCHEMA)
        tables.append(t.append_column("dataset", pa.array([dataset] * t.num_rows, pa.string()))
                      .append_column("date", pa.array([date] * t.num_rows, pa.date32()))
                      .append_column("venue", pa.array([venue] * t.num_rows, pa.string())))
    return pa.concat_tables(tables)
