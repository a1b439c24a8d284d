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

import dagster as dg
import polars as pl
import pyarrow as pa

from mdh_assets.partitions import venue_day, venue_day_key
from mdh_assets.raw.assets import raw_key
from mdh_lib import manifest
from mdh_lib.definitions import EXPECTED_COLUMNS, Expected
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


def status_table(instance: dg.DagsterInstance, storage: Storage, expected: list[Expected] | pl.DataFrame,
                 retention: Retention | None = None) -> pa.Table:
    """One row per expected raw partition (`Expected`s, or their `expected_frame`) with its
    current status (see the module docstring): one join in polars, whatever the number of
    instruments."""
    if not len(expected):
        return REPORT_SCHEMA.empty_table()
    if not isinstance(expected, pl.DataFrame):
        expected = pl.DataFrame([tuple(vars(e).values()) for e in expected], schema=EXPECTED_COLUMNS, orient="row")
    rows = expected.select("date", pl.col("key").alias("instrument_key"), "data_type", pl.col("exchange").alias("venue"))
    pairs = rows.select("date", "venue").unique()
    pk = {(d, v): str(venue_day_key(d, v)) for d, v in pairs.iter_rows()}
    venue_days = pl.DataFrame(
        [{"date": d, "venue": v, "data_type": t, "venue_status": status}
         for t in rows["data_type"].unique().to_list()
         for (d, v), status in zip(pk, statuses(instance, raw_key(t), list(pk.values())).values())],
        schema={"date": pl.Date, "venue": pl.String, "data_type": pl.String, "venue_status": pl.String})
    outcomes = pl.from_arrow(manifest.query(storage, [("raw", t) for t in rows["data_type"].unique().to_list()],
                                            pairs["date"].unique().to_list(), pairs["venue"].unique().to_list()))
    outcomes = outcomes.select(pl.col("dataset").str.strip_prefix("raw/").alias("data_type"), "date", "venue",
                               "instrument_key", pl.col("status").alias("outcome"), "attempts")
    expired = pl.DataFrame([{"date": d, "venue": v, "expired": True} for d, v in pk
                            if retention and retention.expired(d, v)],
                           schema={"date": pl.Date, "venue": pl.String, "expired": pl.Boolean})
    joined = rows.join(venue_days, on=["date", "venue", "data_type"], how="left").join(
        outcomes, on=["date", "venue", "data_type", "instrument_key"], how="left").join(
        expired, on=["date", "venue"], how="left")
    status = (pl.when(pl.col("expired").fill_null(False)).then(pl.lit("expired"))
              .when(pl.col("venue_status") == "in_progress").then(pl.lit("in_progress"))
              .when(pl.col("outcome") == manifest.FAILED).then(pl.lit("failed"))
              .when(pl.col("outcome").is_not_null()).then(pl.lit("materialized"))
              .when(pl.col("venue_status") == "failed").then(pl.lit("failed"))
              .otherwise(pl.lit("missing")))
    table = joined.select("date", "instrument_key", "data_type", status.alias("status"),
                          pl.col("attempts").fill_null(0).cast(pl.Int32)).sort("date", "instrument_key", "data_type")
    return table.to_arrow().cast(REPORT_SCHEMA)
