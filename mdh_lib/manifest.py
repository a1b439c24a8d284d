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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import polars as pl
import pyarrow as pa

from mdh_lib.layout import manifest_path
from mdh_lib.storage import Storage

OK, EMPTY, FAILED = "ok", "empty", "failed"
STATS = 8  # manifests looked up at once by `query` (a month of a venue's data types is ~150 files)
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
    rows = storage.read_parquet_many([rel], SCHEMA).drop("file")  # an older version's manifest conformed
    return {row["instrument_key"]: Outcome(**row) for row in rows.iter_rows(named=True)}


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
    wanted = {manifest_path(ds, d, v): ("/".join(ds), d, v) for ds in datasets for d in dates for v in venues}
    with ThreadPoolExecutor(STATS, thread_name_prefix="mdh-manifests") as pool:  # a bucket answers each in ~30 ms
        found = [rel for rel, there in zip(wanted, pool.map(storage.exists, wanted)) if there]
    where = pl.DataFrame([(rel, *wanted[rel]) for rel in found], orient="row",
                         schema={"file": pl.String, "dataset": pl.String, "date": pl.Date, "venue": pl.String})
    rows = storage.read_parquet_many(found, SCHEMA).join(where, on="file", how="left", maintain_order="left")
    return rows.drop("file").to_arrow().cast(SCHEMA.append(pa.field("dataset", pa.string())).append(
        pa.field("date", pa.date32())).append(pa.field("venue", pa.string())))
