"""The one write path of every venue-day asset (raw, candles, book, options, MFT, warehouse).

A materialization of a (day, venue) partition works instrument by instrument: each file is
committed atomically on its own (`mdh_lib.storage`), each outcome goes into the venue-day's
manifest (`mdh_lib.manifest`), written after the files it describes, and the
materialization's metadata carries the manifest's path and counts. An instrument that fails
(a bad Tardis file, a failed check) writes nothing, keeps its previous good file and is
named in the manifest and in the non-blocking `complete` check; the other instruments go on.
A partition whose inputs are missing altogether (no definitions for the day) fails alone,
named in the step's failure, while the other partitions of a range run are materialized
(`mdh_assets.backfill.Results`).

Dagster's IO-manager model (one output object per partition) does not fit a partition of
thousands of files written as they are made, with bounded memory; the daily single-file
assets (instruments, reports) use `ParquetIOManager` or write through `Storage` the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from mdh_assets.backfill import Results
from mdh_assets.metadata import PREVIEW_ROWS, preview
from mdh_assets.partitions import split
from mdh_lib import manifest
from mdh_lib.catalog import Catalog
from mdh_lib.definitions import Expected, Filters, expected_partitions
from mdh_lib.storage import Storage, WriteInfo

COMPLETE_CHECK = "complete"
FAILURES_SHOWN = 5


class Scope(dg.Config):
    """Narrows a run to some instruments of its venue-days (shown in the UI launchpad; the
    CLI's --symbols, --instrument-types and --force map onto it)."""

    symbols: list[str] = []  # exchange symbols (BTCUSDT) or instrument keys
    instrument_types: list[str] = []  # SPOT_PAIR, PERPETUAL, FUTURE
    force: bool = False  # raw data: fetch instruments that are already ok as well

    def keep(self, e: Expected) -> bool:
        return Filters(instrument_types=tuple(t.upper() for t in self.instrument_types),
                       symbols=tuple(s.upper() for s in self.symbols)).keep(e)


COMPLETE_DESCRIPTION = "every instrument of the venue-day was written (the manifest has no failed row)"


def complete_check(keys, name: str = COMPLETE_CHECK, checks: str = "") -> list[dg.AssetCheckSpec]:
    """The non-blocking check of each asset that its venue-day's instruments were all written;
    ``name`` and ``checks`` when the frames' own checks are folded into it (an instrument
    whose frames fail them is not written, so it fails this check too)."""
    description = f"{checks}; {COMPLETE_DESCRIPTION}" if checks else COMPLETE_DESCRIPTION
    return [dg.AssetCheckSpec(name, asset=key, blocking=False, description=description) for key in keys]


class VenueDayWriter:
    """Files and manifest of one asset for one venue-day."""

    def __init__(self, catalog: Catalog, asset_key: dg.AssetKey, date: dt.date, venue: str, run_id: str):
        self.catalog, self.storage = catalog, catalog.storage
        self.dataset, self.date, self.venue, self.run_id = tuple(asset_key.path), date, venue, run_id
        self.previous = manifest.read(self.storage, self.dataset, date, venue)
        self.outcomes: dict[str, manifest.Outcome] = {}
        self.head: pl.DataFrame | None = None  # the first rows written, for the preview
        self.schema: pa.Schema | None = None

    def settled(self, key: str) -> bool:
        """Whether ``key``'s latest outcome is a good file (a re-run may skip it)."""
        return self.previous.get(key, manifest.Outcome(key, manifest.FAILED)).status != manifest.FAILED

    def _ok(self, key: str, info: WriteInfo, source: str, schema: pa.Schema, head) -> None:
        self.outcomes[key] = manifest.Outcome(key, manifest.OK if info.rows else manifest.EMPTY, info.rows,
                                              info.bytes, source, run_id=self.run_id)
        self.schema = self.schema or schema
        if self.head is None and info.rows:
            self.head = head()

    def commit(self, key: str, local: WriteInfo, source: str = "") -> WriteInfo:
        """Place a staged local file (raw ingest) as ``key``'s file."""
        schema = pq.read_schema(local.uri)
        head = pl.read_parquet(local.uri, n_rows=PREVIEW_ROWS) if self.head is None and local.rows else None
        info = self.catalog.commit(local, self.dataset, self.date, key)
        self._ok(key, info, source, schema, lambda: head)
        return info

    def write(self, key: str, frame: pl.DataFrame | pa.Table, source: str = "") -> WriteInfo:
        table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
        info = self.catalog.write(self.dataset, self.date, key, table)
        self._ok(key, info, source, table.schema, lambda: pl.from_arrow(table.slice(0, PREVIEW_ROWS)))
        return info

    def loaded(self, key: str, rows: int, source: str) -> None:
        """A slice loaded elsewhere (a warehouse table) from ``source``."""
        self.outcomes[key] = manifest.Outcome(key, manifest.OK if rows else manifest.EMPTY, rows, 0, source,
                                              run_id=self.run_id)

    def failed(self, key: str, error: str, source: str = "") -> None:
        before = self.previous.get(key)
        attempts = (before.attempts if before and before.status == manifest.FAILED else 0) + 1
        line = error.strip().splitlines()[0] if error.strip() else "failed"
        self.outcomes[key] = manifest.Outcome(key, manifest.FAILED, source=source, error=line, attempts=attempts,
                                              run_id=self.run_id)

    @property
    def failures(self) -> list[str]:
        return [f"{'/'.join(self.dataset)} {self.date} {o.instrument_key}: {o.error}"
                for o in self.outcomes.values() if o.status == manifest.FAILED]

    def finish(self) -> dict:
        """Write the manifest (the previous rows of instruments this run did not touch kept);
        the materialization's metadata."""
        rows = {**self.previous, **self.outcomes}
        path = manifest.write(self.storage, self.dataset, self.date, self.venue, rows.values())
        counts = {s: sum(o.status == s for o in rows.values()) for s in (manifest.OK, manifest.EMPTY, manifest.FAILED)}
        written = [o for o in self.outcomes.values() if o.status != manifest.FAILED]
        meta = {
            "dagster/row_count": sum(o.rows for o in written), "bytes": sum(o.bytes for o in written),
            "instruments": len(rows), "written_this_run": len(written), **{f"instruments_{s}": n for s, n in counts.items()},
            "manifest": dg.MetadataValue.path(self.storage.uri(path)),
        }
        failures = self.failures
        if failures:
            more = len(failures) - FAILURES_SHOWN
            meta["failures"] = "\n".join(failures[:FAILURES_SHOWN] + (
                [f"{'/'.join(self.dataset)} {self.date} {self.venue}: {more} more failed instruments, listed in "
                 f"{self.storage.uri(path)}"] if more > 0 else []))
        if self.schema is not None:
            meta["dagster/column_schema"] = dg.TableSchema(
                columns=[dg.TableColumn(f.name, str(f.type)) for f in self.schema])
        if self.head is not None:
            meta["preview"] = preview(self.head)
        return meta


class VenueDayRun(Results):
    """A run of venue-day assets over its partitions: each partition's instruments, a writer
    per asset, the ``check`` (`complete` unless named otherwise) per asset over the whole run."""

    def __init__(self, context: dg.AssetExecutionContext, storage: Storage, asset_keys: list[dg.AssetKey],
                 check: str = COMPLETE_CHECK):
        super().__init__(context)
        self.storage, self.catalog, self.asset_keys, self.check = storage, Catalog(storage), asset_keys, check
        self.instrument_failures: dict[dg.AssetKey, list[str]] = {k: [] for k in asset_keys}

    def partitions(self, what: str) -> Iterator[tuple[str, dt.date, str, list[Expected]]]:
        """(partition key, date, venue, the day's expected raw partitions of the venue) of each
        partition with definitions; a partition without them fails alone."""
        for pk in self.context.partition_keys:
            date, venue = split(pk)
            definitions = self.catalog.definitions(date)
            if definitions is None:
                self.failed(f"{what} {date} {venue}: no instrument definitions for {date}; materialize instruments "
                            f"{date} first")
                continue
            yield pk, date, venue, [e for e in expected_partitions(definitions) if e.exchange == venue]

    def writer(self, asset_key: dg.AssetKey, date: dt.date, venue: str) -> VenueDayWriter:
        return VenueDayWriter(self.catalog, asset_key, date, venue, self.context.run.run_id)

    def close(self, pk: str, writer: VenueDayWriter, **extra) -> None:
        """The partition of one asset is done: its manifest, its metadata."""
        key = dg.AssetKey(list(writer.dataset))
        self.instrument_failures[key] += writer.failures
        self.materialized(key, pk, {**writer.finish(), **extra})

    def check_metadata(self, asset_key: dg.AssetKey) -> dict:
        """More metadata of ``asset_key``'s check (none here)."""
        return {}

    def checks(self):
        for key, failures in self.instrument_failures.items():
            yield dg.AssetCheckResult(asset_key=key, check_name=self.check, passed=not failures,
                                      metadata={"failed_instruments": len(failures),
                                                **({"first_failures": "\n".join(failures[:FAILURES_SHOWN])}
                                                   if failures else {}), **self.check_metadata(key)})

    def end(self):
        """The run's last events: the checks, then `Results.finish`."""
        yield from self.checks()
        yield from self.finish(self.asset_keys)

