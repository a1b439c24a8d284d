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
from mdh_lib.catalog import MissingInput
from mdh_lib.warehouse.loads import FAMILIES, load_slice


def table_key(family: str, tf: str) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", f"{family}_{tf}"])


def build_loader(family: str) -> dg.AssetsDefinition:
    fam = FAMILIES[family]
    keys = {tf: table_key(family, tf) for tf in fam.timeframes}

    @dg.multi_asset(
        name=f"warehouse_{family}",
        specs=[dg.AssetSpec(key, deps=[dg.AssetKey([*fam.source, tf])], partitions_def=venue_day,
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
                instruments = sorted({e.key for e in expected if e.data_type == fam.needs and config.keep(e)})
                for tf, asset_key in chosen.items():
                    writer = run.writer(asset_key, date, venue)
                    for key in instruments:
                        try:
                            writer.loaded(key, *load_slice(wh, run.catalog, fam, tf, date, key))
                        except MissingInput as exc:
                            writer.failed(key, str(exc))
                    run.close(pk, writer, table=wh.table_ref(fam.table(tf)))
        finally:
            wh.close()
        yield from run.end()

    return load


warehouse_assets = [build_loader(f) for f in FAMILIES]
