"""Raw tick assets, one per Tardis data type, partitioned by date x instrument (options: date x
underlying). Each downloads one Tardis file with the official client, checks it with Pandera
and hands an Arrow table sorted by timestamp to the Parquet IO manager.

A partition that the day's definitions do not call for (wrong data type for the instrument,
outside its availability window, not in the universe) fails at once without a download.
"""


import datetime as dt

import dagster as dg

from mdh_assets.partitions import RAW_PARTITIONS, split
from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.tardis import TardisResource
from mdh_lib.definitions import Expected, expected_partitions
from mdh_lib.instruments import RAW_DATA_TYPES, InstrumentKey
from mdh_lib.catalog import Catalog
from mdh_lib.tardis.client import TardisError
from mdh_lib.tardis.parse import RawFileError

SCHEMA_CHECK = "pandera_schema"
TARDIS_POOL = "tardis"


def _expected(storage: StorageResource, data_type: str, date: dt.date, key: InstrumentKey) -> Expected:
    definitions = Catalog(storage.storage).definitions(date)
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
        group_name="raw",
        kinds={"parquet", "tardis"},
        pool=TARDIS_POOL,
        deps=[dg.AssetDep("instruments", partition_mapping=dg.MultiToSingleDimensionPartitionMapping("date"))],
        check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=asset_key, blocking=True,
                                       description="Tardis header, types, value ranges, in-day local_timestamp")],
        description=f"Tardis {data_type} for one day, Tardis columns and units, sorted by timestamp.",
    )
    def raw(context: dg.AssetExecutionContext, tardis: TardisResource, storage: StorageResource):
        date, key = split(context.partition_key)
        expected = _expected(storage, data_type, date, key)
        try:
            day = tardis.fetch_raw_day(data_type, date, key, expected.exchange, expected.source_symbol)
        except RawFileError as exc:
            yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=False, metadata={"error": str(exc)})
            raise dg.Failure(description=f"{data_type} {date} {key}: {exc}") from None
        except TardisError as exc:
            raise dg.Failure(description=f"{data_type} {date} {key}: {exc}") from None
        yield dg.Output(day, metadata={
            "source_url": dg.MetadataValue.url(day.source_url), "source_bytes": day.source_bytes})
        yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True, metadata={"rows": day.file.rows})

    return raw


raw_assets = [build_raw_asset(t) for t in RAW_DATA_TYPES]
