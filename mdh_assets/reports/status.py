"""Partition status of raw data, read from the Dagster instance (not from listing files)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import dagster as dg
import pyarrow as pa

from mdh_assets.partitions import RAW_PARTITIONS, partition_key
from mdh_lib.definitions import Expected
from mdh_lib.retention import Retention

REPORT_SCHEMA = pa.schema([
    ("date", pa.date32()), ("instrument_key", pa.string()), ("data_type", pa.string()), ("status", pa.string()),
])
# SPEC section 7: the report lists `missing` (never materialized) and `failed` (the latest
# attempt failed); the stored report also keeps `materialized`, `in_progress` and `expired`
# (older than the raw retention window, `mdh_lib.retention`) rows.
_STATUS = {
    dg.AssetPartitionStatus.MATERIALIZED: "materialized",
    dg.AssetPartitionStatus.FAILED: "failed",
    dg.AssetPartitionStatus.IN_PROGRESS: "in_progress",
}
REPORTED = ("missing", "failed")


def statuses(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition,
             keys: list[str]) -> dict[str, str]:
    """``materialized``, ``failed``, ``in_progress`` or ``missing`` per partition key."""
    found = instance.get_status_by_partition(asset_key, keys, partitions_def) or {} if keys else {}
    return {k: _STATUS.get(found.get(k), "missing") for k in keys}


def status_table(instance: dg.DagsterInstance, expected: list[Expected], retention: Retention | None = None) -> pa.Table:
    """One row per expected raw partition with its current status; days that ``retention``
    expires (`mdh_lib.retention`) are ``expired``."""
    by_type: dict[str, list[Expected]] = defaultdict(list)
    for e in expected:
        by_type[e.data_type].append(e)
    rows = []
    for data_type, items in sorted(by_type.items()):
        keys = [str(partition_key(e.date, e.key)) for e in items]
        found = statuses(instance, dg.AssetKey(["raw", data_type]), RAW_PARTITIONS[data_type], keys)
        for e, pk in zip(items, keys):
            status = "expired" if retention and retention.expired(e.date, e.exchange) else found[pk]
            rows.append({"date": e.date, "instrument_key": e.key, "data_type": data_type, "status": status})
    rows.sort(key=lambda r: (r["date"], r["instrument_key"], r["data_type"]))
    return pa.Table.from_pylist(rows, schema=REPORT_SCHEMA)
