"""Raw tick assets, one per Tardis data type, partitioned by date x instrument (options: date x
underlying). A run downloads its partitions' Tardis files with the official client (many at
once), checks each with Pandera and commits it, sorted by timestamp, as that partition's
Parquet file (`mdh_assets.backfill`: a run may cover a month of one instrument).

A partition that the day's definitions do not call for (wrong data type for the instrument,
outside its availability window, not in the universe) fails at once without a download.
"""


import datetime as dt

import dagster as dg
import polars as pl

from mdh_assets.backfill import POLICY, Results, run_partitions
from mdh_assets.metadata import PREVIEW_ROWS, file_metadata, preview
from mdh_assets.partitions import RAW_PARTITIONS
from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.tardis import TardisResource
from mdh_lib.catalog import Catalog
from mdh_lib.definitions import Expected, expected_partitions
from mdh_lib.ingest import RawRequest
from mdh_lib.instruments import RAW_DATA_TYPES, InstrumentKey
from mdh_lib.layout import raw_path
from mdh_lib.tardis.parse import RawFileError

SCHEMA_CHECK = "pandera_schema"
TARDIS_POOL = "tardis"


def _expected(catalog: Catalog, data_type: str, date: dt.date, key: InstrumentKey) -> Expected:
    definitions = catalog.definitions(date)
    if definitions is None:
        raise dg.Failure(description=f"{data_type} {date} {key}: no instrument definitions for {date}; materialize instruments {date} first")
    for e in expected_partitions(definitions):
        if e.data_type == data_type and e.key == str(key):
            return e
    raise dg.Failure(
        description=f"{data_type} {date} {key}: not available that day (no such data type for it, "
        "outside its availability window, or not in the configured universe); nothing downloaded"
    )


def build_raw_asset(data_type: str) -> dg.AssetsDefinition:
    asset_key = dg.AssetKey(["raw", data_type])

    @dg.asset(
        key=asset_key,
        partitions_def=RAW_PARTITIONS[data_type],
        backfill_policy=POLICY,
        group_name="raw",
        kinds={"parquet", "tardis"},
        pool=TARDIS_POOL,
        deps=[dg.AssetDep("instruments", partition_mapping=dg.MultiToSingleDimensionPartitionMapping("date"))],
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=asset_key, blocking=True,
                                       description="Tardis header, types, value ranges, in-day local_timestamp")],
        description=f"Tardis {data_type} for one day, Tardis columns and units, sorted by timestamp.",
    )
    def raw(context: dg.AssetExecutionContext, tardis: TardisResource, storage: StorageResource):
        catalog, results, requests, bad_files = Catalog(storage.storage), Results(context), {}, []
        for pk, date, key in run_partitions(context):
            try:
                e = _expected(catalog, data_type, date, key)
            except dg.Failure as exc:
                results.failed(exc.description)
                continue
            requests[RawRequest(data_type, date, key, e.exchange, e.source_symbol)] = pk
        for request, got in tardis.fetch_raw_days(list(requests)):
            what = f"{data_type} {request.date} {request.key}"
            if isinstance(got, RawFileError):
                bad_files.append(f"{what}: {got}")
            if isinstance(got, Exception):
                results.failed(f"{what}: {got}")
                continue
            try:
                head = pl.read_parquet(got.file.uri, n_rows=PREVIEW_ROWS)
                info = storage.storage.commit(got.file, raw_path(data_type, request.date, request.key))
            finally:
                got.discard()
            results.materialized(asset_key, requests[request], {
                **file_metadata(info, head.to_arrow().schema), "preview": preview(head),
                "source_url": dg.MetadataValue.url(got.source_url), "source_bytes": got.source_bytes})
        yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=not bad_files,
                                  metadata={"failures": "\n".join(bad_files)[:2000]} if bad_files else
                                  {"partitions": len(results.done)})
        yield from results.finish([asset_key])

    return raw


raw_assets = [build_raw_asset(t) for t in RAW_DATA_TYPES]
