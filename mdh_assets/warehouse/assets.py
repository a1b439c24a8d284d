"""Warehouse tables loaded from the Parquet datasets: `candles_{tf}`, `book_features_{tf}`,
`mft_features_{tf}`, one (day, venue) partition per materialization, one slice per
instrument. A load replaces exactly its (day, instrument) slice (running it twice leaves no
duplicates). Each family's loads run in the Dagster pool `warehouse_{family}` (one run at a
time by default, `mdh_assets.runs`), so loads into one table never overlap; the DuckDB
backend also serializes writers with a file lock."""

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.io_managers.venue_day import Scope, VenueDayRun, complete_check
from mdh_assets.partitions import venue_day
from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.warehouse import WarehouseResource
from mdh_lib.layout import dataset_path
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES

# Warehouse table family -> (source dataset parts without the timeframe, timeframes, the raw
# data type an instrument needs for the source to exist)
FAMILIES = {
    "candles": (("candles",), TIMEFRAMES, "trades"),
    "book_features": (("book",), TIMEFRAMES, "book_snapshot_5"),
    "mft_features": (("features", "mft"), MFT_TIMEFRAMES, "trades"),
}


def table_key(family: str, tf: str) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", f"{family}_{tf}"])


def build_loader(family: str) -> dg.AssetsDefinition:
    source, timeframes, needs = FAMILIES[family]
    keys = {tf: table_key(family, tf) for tf in timeframes}

    @dg.multi_asset(
        name=f"warehouse_{family}",
        specs=[dg.AssetSpec(key, deps=[dg.AssetKey([*source, tf])], partitions_def=venue_day,
                            group_name="warehouse", kinds={"duckdb", "bigquery"}, skippable=True,
                            description=f"Warehouse table {family}_{tf}, partitioned by day on timestamp, "
                                        "clustered by exchange, symbol")
               for tf, key in keys.items()],
        check_specs=complete_check(keys.values()),
        partitions_def=venue_day,
        backfill_policy=POLICY,
        can_subset=True,
        pool=f"warehouse_{family}",
    )
    def load(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource, warehouse: WarehouseResource):
        chosen = {tf: key for tf, key in keys.items() if key in context.selected_asset_keys}
        run = VenueDayRun(context, storage.storage, list(chosen.values()))
        wh = warehouse.open()
        try:
            for pk, date, venue, expected in run.partitions(f"warehouse {family}"):
                instruments = sorted({e.key for e in expected if e.data_type == needs and config.keep(e)})
                for tf, asset_key in chosen.items():
                    writer = run.writer(asset_key, date, venue)
                    for key in instruments:
                        rel = dataset_path((*source, tf), date, key)
                        if not storage.storage.exists(rel):
                            writer.failed(key, f"{rel} is not materialized; run mdh candle-processing"
                                               f"{' and mdh mft-processing' if family == 'mft_features' else ''} first")
                            continue
                        rows = wh.replace_slice(f"{family}_{tf}", storage.storage.read_parquet(rel), date=date,
                                                instrument_key=key)
                        writer.loaded(key, rows, storage.storage.uri(rel))
                    run.close(pk, writer, table=wh.table_ref(f"{family}_{tf}"))
        finally:
            wh.close()
        yield from run.end()

    return load


warehouse_assets = [build_loader(f) for f in FAMILIES]
