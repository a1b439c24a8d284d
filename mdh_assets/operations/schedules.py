"""The seed's daily pipeline in Dagster: at 08:00 UTC the schedule materializes yesterday's
instrument definitions and missing-data report (and at 08:30 the raw retention runs); the
`pipeline` sensor then requests, for every day in the look-back window, what is missing or
failed, step by step, with the CLI's planner (`mdh_assets.planner`): raw downloads, options
features, candles and book, MFT features, warehouse tables, one request per (step, venue,
span of days). It is also the gap filler: a day whose 08:00 run never happened (the daemon
was down) gets its definitions run, a day that failed last week is retried on the next
tick (an instrument at most `MAX_ATTEMPTS` times in a row, a derived step over the same
venue-days likewise), and a venue-day in progress is never requested. An evaluation costs a
few instance queries and one manifest read per data type, whatever the number of
instruments; a tick where nothing changed since the last plan (the sensor's cursor) costs
two one-row runs queries.
Each evaluation first recovers the runs of crashed `mdh` processes (`mdh_assets.recovery`),
so a partition whose run died is retried rather than left "in progress" for ever.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg

from mdh_assets.book.assets import BOOK_KEYS
from mdh_assets.candles.assets import CANDLE_KEYS
from mdh_assets.features.assets import MFT_KEYS, OPTIONS
from mdh_assets.instruments.assets import KEY as INSTRUMENTS
from mdh_assets.partitions import daily, split, venue_day_key
from mdh_assets.planner import Planned, raw_runs, step_runs
from mdh_assets.recovery import ACTIVE, recover
from mdh_assets.reports.assets import REPORT, RETENTION
from mdh_assets.reports.status import status_table, statuses
from mdh_assets.resources.storage import StorageResource
from mdh_assets.runs import RANGE_END_TAG, RANGE_START_TAG
from mdh_assets.warehouse.assets import table_key
from mdh_lib.catalog import Catalog
from mdh_lib.config import load_settings
from mdh_lib.definitions import expected_partitions
from mdh_lib.instruments import InstrumentKey
from mdh_lib.retention import Retention
from mdh_lib.storage import Storage
from mdh_lib.timeframes import TIMEFRAMES

LOOKBACK_DAYS = int(os.environ.get("MDH_LOOKBACK_DAYS", "7"))
# How often the daemon evaluates the sensor (a test or a busy deployment may change it).
SENSOR_INTERVAL_SECONDS = int(os.environ.get("MDH_SENSOR_INTERVAL_SECONDS", "300"))
MAX_ATTEMPTS = 3
STEP_TAG, SPAN_TAG = "mdh/step", "mdh/venue_days"

# Selections name the keys themselves: a selection written as strings is parsed by Dagster's
# selection grammar, whose parser takes ~0.15 s to import in every process.
daily_job = dg.define_asset_job("daily_definitions", selection=dg.AssetSelection.assets(INSTRUMENTS, REPORT))
retention_job = dg.define_asset_job("raw_retention", selection=dg.AssetSelection.assets(RETENTION))
# The pipeline's steps, each a job over (day, venue) partitions; a run selects its assets.
STEP_JOBS = {
    "raw": dg.define_asset_job("raw", selection=dg.AssetSelection.groups("raw")),
    "options": dg.define_asset_job("options_features", selection=dg.AssetSelection.assets(OPTIONS)),
    "candles": dg.define_asset_job("candles_and_book", selection=dg.AssetSelection.assets(
        *(CANDLE_KEYS[tf] for tf in TIMEFRAMES), *(BOOK_KEYS[tf] for tf in TIMEFRAMES))),
    "mft": dg.define_asset_job("mft_features", selection=dg.AssetSelection.assets(*MFT_KEYS.values())),
    "warehouse": dg.define_asset_job("warehouse", selection=dg.AssetSelection.groups("warehouse")),
}
JOBS = [daily_job, *STEP_JOBS.values(), retention_job]

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job, name="daily_0800_utc", hour_of_day=8, minute_of_hour=0,
    description="08:00 UTC: yesterday's instrument definitions and missing-data report",
)
retention_schedule = dg.build_schedule_from_partitioned_job(
    retention_job, name="raw_retention_0830_utc", hour_of_day=8, minute_of_hour=30,
    description="08:30 UTC: delete the raw files older than the retention window, as of yesterday",
)
# A day's definitions are due once its 08:00 UTC run the next morning is (Tardis has
# published the day by then).
DUE_AFTER = dt.timedelta(days=1, hours=8)
PARTITION_TAG = "dagster/partition"
# What tells that a step is done for a venue-day (its first timeframe stands for the rest).
DONE = {"options": OPTIONS, "candles": CANDLE_KEYS["1m"], "mft": MFT_KEYS["1m"], "warehouse": table_key("candles", "1m")}
# A step runs once the step before it is done for the venue-day (raw: every instrument of it).
AFTER = {"options": None, "candles": None, "mft": "candles", "warehouse": "candles"}


def busy_venue_days(instance: dg.DagsterInstance) -> set[tuple[str, str, dt.date]]:
    """(step, venue, day) of every queued or running step run, from the runs' tags (one runs
    query, whatever the number of instruments): the sensor never requests them again, even
    where the assets' partition status does not show the queued run yet."""
    busy = set()
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, *ACTIVE])):
        step, span = record.dagster_run.tags.get(STEP_TAG), record.dagster_run.tags.get(SPAN_TAG)
        if step and span and ":" in span and ".." in span:
            venue, days = span.split(":", 1)
            first, last = (dt.date.fromisoformat(d) for d in days.split(".."))
            busy |= {(step, venue, first + dt.timedelta(days=i)) for i in range((last - first).days + 1)}
    return busy


def _request(context: dg.SensorEvaluationContext, planned: Planned) -> dg.RunRequest | None:
    """A run for ``planned`` unless the same step over the same venue-days failed
    `MAX_ATTEMPTS` times (then a person looks: the report lists it as failed)."""
    span = f"{planned.venue}:{planned.first}..{planned.last}"
    failed = context.instance.get_runs_count(dg.RunsFilter(
        tags={STEP_TAG: planned.step, SPAN_TAG: span}, statuses=[dg.DagsterRunStatus.FAILURE]))
    if failed >= MAX_ATTEMPTS:
        return None
    return dg.RunRequest(job_name=STEP_JOBS[planned.step].name, asset_selection=list(planned.assets),
                         tags={STEP_TAG: planned.step, SPAN_TAG: span, RANGE_START_TAG: planned.first_key,
                               RANGE_END_TAG: planned.last_key})


def definitions_requests(context: dg.SensorEvaluationContext, storage: Storage, dates: list[dt.date],
                         now: dt.datetime) -> list[dg.RunRequest]:
    """The daily job for each day of ``dates`` (from the universe's first day) that is due
    (`DUE_AFTER`) and has no instrument definitions: its 08:00 run was missed or failed. Not
    while one is queued or running, nor after `MAX_ATTEMPTS` failures."""
    catalog, requests, first = Catalog(storage), [], daily.start.date()
    for date in dates:
        due = dt.datetime.combine(date, dt.time(), dt.timezone.utc) + DUE_AFTER
        if date < first or now < due or catalog.definitions(date) is not None:
            continue

        def count(statuses: list[dg.DagsterRunStatus], date=date) -> int:
            return context.instance.get_runs_count(dg.RunsFilter(
                job_name=daily_job.name, tags={PARTITION_TAG: date.isoformat()}, statuses=statuses))

        if not count([dg.DagsterRunStatus.QUEUED, *ACTIVE]) and count([dg.DagsterRunStatus.FAILURE]) < MAX_ATTEMPTS:
            requests.append(dg.RunRequest(job_name=daily_job.name, partition_key=date.isoformat(),
                                          tags={STEP_TAG: "definitions"}))
    return requests


def pipeline_requests(context: dg.SensorEvaluationContext, storage: Storage, dates: list[dt.date]) -> list[dg.RunRequest]:
    """What the days still need, in pipeline order (`mdh_assets.planner`): a step is requested
    for a venue-day only once its inputs are materialized, never while it is in progress."""
    catalog = Catalog(storage)
    expected = [e for d in dates if (defs := catalog.definitions(d)) is not None for e in expected_partitions(defs)]
    if not expected:
        return []
    rows = status_table(context.instance, storage, expected, Retention.of(load_settings())).to_pylist()
    retry = [r for r in rows if r["status"] == "missing" or (r["status"] == "failed" and r["attempts"] < MAX_ATTEMPTS)]
    planned = raw_runs(retry, {})
    raw_done: dict[tuple[str, dt.date, str], bool] = {}  # (data type, date, venue) -> every instrument ok
    for r in rows:
        at = (r["data_type"], r["date"], InstrumentKey.parse(r["instrument_key"]).exchange)
        raw_done[at] = raw_done.get(at, True) and r["status"] in ("materialized", "expired")
    keys = sorted({str(venue_day_key(d, v)) for d, v in {(e.date, e.exchange) for e in expected}})
    done = {step: {split(pk): s for pk, s in statuses(context.instance, asset, keys).items()}
            for step, asset in DONE.items()}
    inputs = {"options": "options_chain", "candles": "trades", "mft": "trades", "warehouse": "trades"}
    for step in DONE:
        def ready(asset, date, venue, step=step) -> bool:
            before = AFTER[step]
            have = raw_done.get((inputs[step], date, venue), False) if before is None else \
                done[before][date, venue] == "materialized"
            return have and done[step][date, venue] in ("missing", "failed")
        planned += step_runs(step, expected, TIMEFRAMES, {}, wanted=ready)
    busy = busy_venue_days(context.instance)
    planned = [p for p in planned if not any((p.step, p.venue, p.first + dt.timedelta(days=i)) in busy
                                             for i in range(p.days))]
    return [r for r in (_request(context, p) for p in planned) if r is not None]


# An unchanged instance is planned again at least this often (files changed outside Dagster).
REPLAN_EVERY = dt.timedelta(hours=1)


def watermark(instance: dg.DagsterInstance, now: dt.datetime) -> dict:
    """What a plan depends on besides the files: the newest run and the latest change of any
    run's status (started, finished; a run's creation time has only whole seconds in
    SQLite, hence both; two one-row queries) and the latest day whose definitions are due."""
    newest = instance.get_run_records(limit=1)
    changed = instance.get_run_records(limit=1, order_by="update_timestamp", ascending=False)
    return {"newest_run": newest[0].dagster_run.run_id if newest else "",
            "runs": changed[0].update_timestamp.timestamp() if changed else 0.0, "due": str((now - DUE_AFTER).date())}


def unchanged(cursor: str | None, mark: dict, now: dt.datetime) -> bool:
    """Whether the last plan (the cursor: its watermark and time) still holds."""
    try:
        last = json.loads(cursor) if cursor else None
    except ValueError:
        return False
    return bool(last) and {k: last.get(k) for k in mark} == mark and \
        now - dt.datetime.fromisoformat(last["planned_at"]) < REPLAN_EVERY


@dg.sensor(name="pipeline", jobs=[daily_job, *STEP_JOBS.values()], minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
           description=f"Requests each day's missing and failed steps over the last {LOOKBACK_DAYS} days")
def pipeline_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
    """The cursor holds the `watermark` of the last plan: a tick where no run changed, no day
    became due and the plan is under `REPLAN_EVERY` old costs two one-row runs queries and requests
    nothing (the requests of the last plan are queued or running by then, or done)."""
    for line in recover(context.instance, storage.storage):
        context.log.warning(line)
    now = dt.datetime.now(dt.timezone.utc)
    mark = watermark(context.instance, now)
    if unchanged(context.cursor, mark, now):
        return dg.SkipReason("no run changed and no day became due since the last plan")
    dates = [now.date() - dt.timedelta(days=n) for n in range(LOOKBACK_DAYS, 0, -1)]
    requests = definitions_requests(context, storage.storage, dates, now) + pipeline_requests(context, storage.storage, dates)
    context.update_cursor(json.dumps({**mark, "planned_at": now.isoformat()}))
    if not requests:
        return dg.SkipReason(f"nothing missing in the last {LOOKBACK_DAYS} days")
    return requests
