"""Raw tick assets, one per Tardis data type, partitioned by (day, venue). A materialization
downloads the Tardis file of every instrument that the day's definitions list for the venue
and data type (options: one chain per underlying, filtered from the venue's grouped file),
20 in flight through the official client, checks each with Pandera and commits it, sorted by
timestamp, as that instrument's Parquet file (`mdh_assets.io_managers.venue_day`).

A re-materialization fetches only the instruments that are not ok in the venue-day's
manifest (every one with ``force``); the run config (`Scope`) narrows it further.
"""


import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.io_managers.venue_day import Scope, VenueDayRun, complete_check
from mdh_assets.partitions import the_day, venue_day
from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.tardis import TardisResource
from mdh_lib.ingest import RawRequest
from mdh_lib.instruments import RAW_DATA_TYPES, InstrumentKey
from mdh_lib.tardis.parse import RawFileError

SCHEMA_CHECK = "pandera_schema"
TARDIS_POOL = "tardis"


def raw_key(data_type: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", data_type])


def build_raw_asset(data_type: str) -> dg.AssetsDefinition:
    asset_key = raw_key(data_type)

    @dg.asset(
        key=asset_key,
        partitions_def=venue_day,
        backfill_policy=POLICY,
        group_name="raw",
        kinds={"parquet", "tardis"},
        pool=TARDIS_POOL,
        deps=[dg.AssetDep("instruments", partition_mapping=the_day())],
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=asset_key, blocking=False,
                                       description="Tardis header, types, value ranges, in-day local_timestamp"),
                     *complete_check([asset_key])],
        description=f"Tardis {data_type} of every instrument of the venue that day, one file per instrument, "
                    "Tardis columns and units, sorted by timestamp.",
    )
    def raw(context: dg.AssetExecutionContext, config: Scope, tardis: TardisResource, storage: StorageResource):
        run, bad_files = VenueDayRun(context, storage.storage, [asset_key]), []
        for pk, date, venue, expected in run.partitions(f"raw/{data_type}"):
            writer = run.writer(asset_key, date, venue)
            requests = [RawRequest(data_type, e.date, InstrumentKey.parse(e.key), e.exchange, e.source_symbol)
                        for e in expected if e.data_type == data_type and config.keep(e)
                        and (config.force or not writer.settled(e.key))]
            for request, got in tardis.fetch_raw_days(requests, staging=storage.storage.scratch_base):
                key = str(request.key)
                if isinstance(got, Exception):
                    if isinstance(got, RawFileError):
                        bad_files.append(f"{data_type} {date} {key}: {got}")
                    writer.failed(key, str(got), request.file.url(tardis.datasets_endpoint))
                    continue
                try:
                    writer.commit(key, got.file, got.source_url)
                finally:
                    got.discard()
            run.close(pk, writer, requested=len(requests))
        yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, asset_key=asset_key, passed=not bad_files,
                                  metadata={"failures": "\n".join(bad_files)[:2000]} if bad_files else {})
        yield from run.end()

    return raw


raw_assets = [build_raw_asset(t) for t in RAW_DATA_TYPES]
