"""Order-book features 15s..24h of every instrument with book snapshots of a (day, venue),
each streamed from its book_snapshot_5 Parquet one row group at a time, with the last
snapshot before midnight and the neighbour days' rows stamped in the day
(`mdh_lib.processing.instrument_book`)."""

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.io_managers.venue_day import Scope
from mdh_assets.partitions import neighbour_days
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.features.book import DERIVED_COLUMNS
from mdh_lib.processing import instrument_book
from mdh_lib.timeframes import TIMEFRAMES

GRID_CHECK = "full_grid"
BOOK_KEYS = {tf: dg.AssetKey(["book", tf]) for tf in TIMEFRAMES}


@dg.multi_asset(**per_timeframe(
    BOOK_KEYS, group="book", check=GRID_CHECK,
    deps=[dg.AssetDep(["raw", "book_snapshot_5"], partition_mapping=neighbour_days())],
    description=lambda tf: (f"{tf} order-book features from book_snapshot_5: the 20 level columns and "
                            f"{len(DERIVED_COLUMNS)} derived ones (mdh_lib.features.book)"),
    check_description="one row per bucket of the day, increasing timestamps", backfill_policy=POLICY,
))
def book_assets(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, BOOK_KEYS, GRID_CHECK).each(
        "book", "book_snapshot_5", config, instrument_book)
