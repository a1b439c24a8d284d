"""Status of the raw data, from the Dagster instance and the manifests its materializations
recorded (not from listing files): one Dagster status query per data type for the venue-days
asked about, and one read of their manifests, however many instruments they hold.

Per expected (day, data type, instrument): ``expired`` when the venue's raw retention drops
the day; ``in_progress`` while a run writes its venue-day; else the instrument's row in the
manifest (``materialized`` for ok or empty, ``failed``); without a row, ``missing`` (never
attempted, e.g. a venue-day never materialized) or ``failed`` when the venue-day's latest run
failed as a whole.
"""

from __future__ import annotations

from collections import defaultdict

import dagster as dg
import pyarrow as pa

from mdh_assets.partitions import venue_day, venue_day_key
from mdh_assets.raw.assets import raw_key
from mdh_lib import manifest
from mdh_lib.definitions import Expected
from mdh_lib.retention import Retention
from mdh_lib.storage import Storage

REPORT_SCHEMA = pa.schema([
    ("date", pa.date32()), ("instrument_key", pa.string()), ("data_type", pa.string()), ("status", pa.string()),
    ("attempts", pa.int32()),  # failed attempts in a row (the manifest's count)
])
# SPEC section 7: the report lists `missing` and `failed`; the stored report also keeps
# `materialized`, `in_progress` and `expired` rows.
REPORTED = ("missing", "failed")
_DAGSTER = {dg.AssetPartitionStatus.MATERIALIZED: "materialized", dg.AssetPartitionStatus.FAILED: "failed",
            dg.AssetPartitionStatus.IN_PROGRESS: "in_progress"}


def statuses(instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: list[str]) -> dict[str, str]:
    """``materialized``, ``failed``, ``in_progress`` or ``missing`` per venue-day key."""
    found = (instance.get_status_by_partition(asset_key, keys, venue_day) or {}) if keys else {}
    return {k: _DAGSTER.get(found.get(k), "missing") for k in keys}


def status_table(instance: dg.DagsterInstance, storage: Storage, expected: list[Expected],
                 retention: Retention | None = None) -> pa.Table:
    """One row per expected raw partition with its current status (see the module docstring)."""
    by_type: dict[str, list[Expected]] = defaultdict(list)
    for e in expected:
        by_type[e.data_type].append(e)
    days, venues = sorted({e.date for e in expected}), sorted({e.exchange for e in expected})
    outcomes = {(r["dataset"], r["date"], r["venue"], r["instrument_key"]): r for r in manifest.query(
        storage, [("raw", t) for t in by_type], days, venues).select(
        ["dataset", "date", "venue", "instrument_key", "status", "attempts"]).to_pylist()}
    pk = {(d, v): str(venue_day_key(d, v)) for d, v in {(e.date, e.exchange) for e in expected}}
    rows = []
    for data_type, items in sorted(by_type.items()):
        found = statuses(instance, raw_key(data_type), sorted({pk[e.date, e.exchange] for e in items}))
        for e in items:
            venue_status = found[pk[e.date, e.exchange]]
            outcome = outcomes.get((f"raw/{data_type}", e.date, e.exchange, e.key))
            if retention and retention.expired(e.date, e.exchange):
                status = "expired"
            elif venue_status == "in_progress":
                status = "in_progress"
            elif outcome is not None:
                status = "failed" if outcome["status"] == manifest.FAILED else "materialized"
            else:
                status = "failed" if venue_status == "failed" else "missing"
            rows.append({"date": e.date, "instrument_key": e.key, "data_type": data_type, "status": status,
                         "attempts": outcome["attempts"] if outcome else 0})
    rows.sort(key=lambda r: (r["date"], r["instrument_key"], r["data_type"]))
    return pa.Table.from_pylist(rows, schema=REPORT_SCHEMA)
