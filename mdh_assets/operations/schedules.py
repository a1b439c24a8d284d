"""The seed's daily pipeline in Dagster: at 08:00 UTC the schedule materializes yesterday's
instrument definitions and missing-data report (and at 08:30 the raw retention runs); the `pipeline` sensor then requests, for
every day in the look-back window, what is missing or failed, step by step: raw downloads,
options features, candles and book, MFT features, warehouse tables. It is also the gap
filler: a day that failed last week is retried on the next tick (at most
`MAX_ATTEMPTS` failed runs per partition), and a partition in progress is never requested.
Each evaluation first recovers the runs of crashed `mdh` processes (`mdh_assets.recovery`),
so a partition whose run died is retried rather than left "in progress" for ever.
"""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from mdh_assets.partitions import by_instrument, by_underlying, partition_key
from mdh_assets.recovery import recover
from mdh_assets.reports.status import statuses, status_table
from mdh_assets.resources.storage import StorageResource
from mdh_lib.catalog import Catalog
from mdh_lib.config import load_settings
from mdh_lib.definitions import expected_partitions
from mdh_lib.instruments import InstrumentKey
from mdh_lib.retention import Retention
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES

LOOKBACK_DAYS = int(os.environ.get("MDH_LOOKBACK_DAYS", "7"))
MAX_ATTEMPTS = 3
PARTITION_TAG = "mdh/partition"

daily_job = dg.define_asset_job("daily_definitions", selection=["instruments", "reports/missing"])
retention_job = dg.define_asset_job("raw_retention", selection=["reports/retention"])
# One job per raw partitions definition: (job, the data types it downloads).
RAW_GROUPS = {
    name: (dg.define_asset_job(f"raw_{name}", selection=[f"raw/{t}" for t in types]), set(types))
    for name, types in (("instruments", ("trades", "book_snapshot_5")),
                        ("derivatives", ("derivative_ticker", "liquidations")),
                        ("options", ("options_chain",)))
}
options_job = dg.define_asset_job("options_features", selection=["features/options"])
candles_job = dg.define_asset_job(
    "candles_and_book", selection=[f"{k}/{tf}" for k in ("candles", "book") for tf in TIMEFRAMES])
mft_job = dg.define_asset_job("mft_features", selection=[f"features/mft/{tf}" for tf in MFT_TIMEFRAMES])
warehouse_job = dg.define_asset_job("warehouse", selection=dg.AssetSelection.groups("warehouse"))
# The jobs the gap-filling sensor requests, then every job of the code location.
PIPELINE_JOBS = [*(job for job, _ in RAW_GROUPS.values()), options_job, candles_job, mft_job, warehouse_job]
JOBS = [daily_job, *PIPELINE_JOBS, retention_job]

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, name="daily_0800_utc", hour_of_day=8, minute_of_hour=0,
    description="08:00 UTC: yesterday's instrument definitions and missing-data report",
)
retention_schedule = dg.build_schedule_from_partitioned_job(
    retention_job, name="raw_retention_0830_utc", hour_of_day=8, minute_of_hour=30,
    description="08:30 UTC: delete the raw files older than the retention window, as of yesterday",
)


def _request(context: dg.SensorEvaluationContext, job, pk: str) -> dg.RunRequest | None:
    """A run for ``pk`` unless it already failed `MAX_ATTEMPTS` times."""
    failed = context.instance.get_runs_count(dg.RunsFilter(
        job_name=job.name, tags={PARTITION_TAG: pk}, statuses=[dg.DagsterRunStatus.FAILURE]))
    if failed >= MAX_ATTEMPTS:
        return None
    return dg.RunRequest(job_name=job.name, partition_key=pk, tags={PARTITION_TAG: pk})


def _todo(context, job, asset_key: dg.AssetKey, partitions_def, keys: list[str]) -> list[dg.RunRequest]:
    found = statuses(context.instance, asset_key, partitions_def, keys)
    requests = [_request(context, job, pk) for pk, status in found.items() if status in ("missing", "failed")]
    return [r for r in requests if r is not None]


def day_requests(context: dg.SensorEvaluationContext, catalog: Catalog, date: dt.date) -> list[dg.RunRequest]:
    """What one day still needs, in pipeline order: a step is requested only once the data
    it reads is materialized."""
    definitions = catalog.definitions(date)
    if definitions is None:
        return []
    expected = expected_partitions(definitions)
    report = status_table(context.instance, expected, Retention.of(load_settings())).to_pylist()
    requests, raw_done = [], {}
    for row in report:
        raw_done.setdefault(row["instrument_key"], []).append(row["status"] == "materialized")
    pending = {(r["data_type"], r["instrument_key"]) for r in report if r["status"] in ("missing", "failed")}
    for job, types in RAW_GROUPS.values():
        keys = sorted({k for t, k in pending if t in types})
        requests += [r for r in (_request(context, job, str(partition_key(date, k))) for k in keys) if r]
    complete = sorted(k for k, done in raw_done.items() if all(done))
    instruments = [k for k in complete if InstrumentKey.parse(k).type != "OPTION"]
    underlyings = [k for k in complete if InstrumentKey.parse(k).type == "OPTION"]

    def pk(keys: list[str]) -> list[str]:
        return [str(partition_key(date, k)) for k in keys]

    requests += _todo(context, options_job, dg.AssetKey(["features", "options"]), by_underlying, pk(underlyings))
    requests += _todo(context, candles_job, dg.AssetKey(["candles", "1m"]), by_instrument, pk(instruments))
    with_candles = [k for k, s in statuses(context.instance, dg.AssetKey(["candles", "1m"]), by_instrument,
                                           pk(instruments)).items() if s == "materialized"]
    requests += _todo(context, mft_job, dg.AssetKey(["features", "mft", "1m"]), by_instrument, with_candles)
    requests += _todo(context, warehouse_job, dg.AssetKey(["warehouse", "candles_1m"]), by_instrument, with_candles)
    return requests


@dg.sensor(name="pipeline", jobs=PIPELINE_JOBS, minimum_interval_seconds=300,
           description=f"Requests each day's missing and failed steps over the last {LOOKBACK_DAYS} days")
def pipeline_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
    for line in recover(context.instance, storage.storage):
        context.log.warning(line)
    today = dt.datetime.now(dt.timezone.utc).date()
    catalog = Catalog(storage.storage)
    requests = []
    for n in range(1, LOOKBACK_DAYS + 1):
        requests += day_requests(context, catalog, today - dt.timedelta(days=n))
    if not requests:
        return dg.SkipReason(f"nothing missing in the last {LOOKBACK_DAYS} days")
    return requests
