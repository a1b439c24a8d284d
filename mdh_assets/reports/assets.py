"""The daily reports: the missing-data report (every raw partition the day's definitions call
for, with its materialization status from the Dagster instance) and the retention run (the
raw files it deleted)."""


import datetime as dt
from collections import Counter

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from mdh_assets.backfill import POLICY, Results
from mdh_assets.metadata import file_metadata, preview
from mdh_assets.partitions import daily
from mdh_assets.reports.status import status_table
from mdh_assets.resources.storage import StorageResource
from mdh_lib.catalog import Catalog
from mdh_lib.config import load_settings
from mdh_lib.definitions import expected_frame
from mdh_lib.instruments import RAW_DATA_TYPES
from mdh_lib.layout import missing_report_path
from mdh_lib.retention import Retention, remove_expired


REPORT = dg.AssetKey(["reports", "missing"])
RETENTION = dg.AssetKey(["reports", "retention"])


@dg.asset(
    key=REPORT,
    partitions_def=daily,
    backfill_policy=POLICY,
    deps=["instruments"],
    group_name="reports",
    kinds={"parquet"},
    description="Raw partitions of the day that are missing or failed (status from the Dagster instance).",
)
def missing_report(context: dg.AssetExecutionContext, storage: StorageResource):
    """One run may cover many days (`mdh_assets.backfill`); their statuses come from one
    query of the instance and one read of the manifests."""
    catalog, results = Catalog(storage.storage), Results(context)
    expected = {}
    for pk in context.partition_keys:
        date = dt.date.fromisoformat(pk)
        definitions = catalog.definitions(date)
        if definitions is None:
            results.failed(f"missing report {date}: no instrument definitions for {date}; materialize instruments {date} first")
            continue
        expected[pk] = expected_frame(definitions)
    every = status_table(context.instance, storage.storage, pl.concat(expected.values()) if expected else [],
                         Retention.of(load_settings()))
    for pk in expected:
        date = dt.date.fromisoformat(pk)
        table = every.filter(pc.equal(every["date"], pa.scalar(date, pa.date32())))
        info = storage.storage.write_parquet(missing_report_path(date), table)
        counts = Counter(table["status"].to_pylist())
        results.materialized(REPORT, pk, {**file_metadata(info, table.schema), "preview": preview(pl.from_arrow(table)),
                                          **dict(sorted(counts.items()))})
    yield from results.finish([REPORT])


@dg.asset(
    key=RETENTION,
    partitions_def=daily,
    deps=[["raw", t] for t in RAW_DATA_TYPES],
    group_name="reports",
    kinds={"parquet"},
    description="Deletes raw tick files older than each venue's retention window (off unless set, "
                "mdh_lib.retention; counted back from the partition day's end) and records every file removed.",
)
def raw_retention(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.Output[pa.Table]:
    date = dt.date.fromisoformat(context.partition_key)
    settings = load_settings()
    retention, today = Retention.of(settings), date + dt.timedelta(days=1)
    removed = remove_expired(storage.storage, retention, today)
    cutoffs = {ex: retention.cutoff(ex, today) for ex in settings.universe.exchanges}
    return dg.Output(removed, metadata={
        **{f"first_kept_day_{ex}": c.isoformat() if c else "all kept" for ex, c in cutoffs.items()},
        "files_removed": removed.num_rows, "bytes_removed": int(sum(removed["bytes"].to_pylist())),
    })
