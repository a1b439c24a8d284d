"""The daily missing-data report: every raw partition the day's definitions call for, with
its materialization status from the Dagster instance."""


import datetime as dt
from collections import Counter

import dagster as dg
import pyarrow as pa

from mdh_assets.partitions import daily
from mdh_assets.reports.status import status_table
from mdh_assets.resources.storage import StorageResource
from mdh_lib.definitions import expected_partitions
from mdh_lib.catalog import Catalog


@dg.asset(
    key=["reports", "missing"],
    partitions_def=daily,
    deps=["instruments"],
    group_name="reports",
    kinds={"parquet"},
    description="Raw partitions of the day that are missing or failed (status from the Dagster instance).",
)
def missing_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.Output[pa.Table]:
    date = dt.date.fromisoformat(context.partition_key)
    definitions = Catalog(storage.storage).definitions(date)
    if definitions is None:
        raise dg.Failure(description=f"missing report {date}: no instrument definitions for {date}; materialize instruments {date} first")
    table = status_table(context.instance, expected_partitions(definitions))
    counts = Counter(table["status"].to_pylist())
    return dg.Output(table, metadata=dict(sorted(counts.items())))
