"""Warehouse tables loaded from the Parquet datasets, one (day, instrument) slice per
partition: `candles_{tf}`, `book_features_{tf}`, `mft_features_{tf}`. A load replaces exactly
its slice (running it twice leaves no duplicates). Each family's loads run in the Dagster pool
`warehouse_{family}` (one at a time by default, `mdh_assets.runs`), so loads into one table
never overlap; the DuckDB backend also serializes writers with a file lock."""

import dagster as dg

from mdh_assets.partitions import by_instrument, split
from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.warehouse import WarehouseResource
from mdh_lib.catalog import Catalog
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES

# Warehouse table family -> (source dataset parts without the timeframe, timeframes)
FAMILIES = {
    "candles": (("candles",), TIMEFRAMES),
    "book_features": (("book",), TIMEFRAMES),
    "mft_features": (("features", "mft"), MFT_TIMEFRAMES),
}


def table_key(family: str, tf: str) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", f"{family}_{tf}"])


def build_loader(family: str) -> dg.AssetsDefinition:
    source, timeframes = FAMILIES[family]

    @dg.multi_asset(
        name=f"warehouse_{family}",
        specs=[dg.AssetSpec(table_key(family, tf), deps=[dg.AssetKey([*source, tf])], partitions_def=by_instrument,
                            group_name="warehouse", kinds={"duckdb", "bigquery"}, skippable=True,
                            description=f"Warehouse table {family}_{tf}, partitioned by day on timestamp, "
                                        "clustered by exchange, symbol")
               for tf in timeframes],
        partitions_def=by_instrument,
        can_subset=True,
        pool=f"warehouse_{family}",
    )
    def load(context: dg.AssetExecutionContext, storage: StorageResource, warehouse: WarehouseResource):
        date, key = split(context.partition_key)
        catalog = Catalog(storage.storage)
        wh = warehouse.open()
        try:
            for tf in timeframes:
                asset_key = table_key(family, tf)
                if asset_key not in context.selected_asset_keys:
                    continue
                frame = catalog.read((*source, tf), date, key)
                if frame is None:
                    raise dg.Failure(description=f"warehouse {family}_{tf} {date} {key}: "
                                                 f"{'/'.join((*source, tf))} is not materialized; run mdh candle-processing"
                                                 f"{' and mdh mft-processing' if family == 'mft_features' else ''} first")
                rows = wh.replace_slice(f"{family}_{tf}", frame, date=date, instrument_key=str(key))
                yield dg.MaterializeResult(asset_key=asset_key, metadata={
                    "dagster/row_count": rows, "table": wh.table_ref(f"{family}_{tf}")})
        finally:
            wh.close()

    return load


warehouse_assets = [build_loader(f) for f in FAMILIES]
