"""Order-book features 15s..24h for each (day, instrument), streamed from the day's
book_snapshot_5 Parquet one row group at a time (bounded memory on 10M-snapshot days), with the
last snapshot before midnight and the neighbour days' rows stamped in the day
(`mdh_lib.candles.day_inputs.day_book`)."""

import datetime as dt

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_assets.candles.assets import neighbour_days
from mdh_lib.candles.day_inputs import day_book
from mdh_lib.catalog import Catalog
from mdh_lib.definitions import instrument_row
from mdh_lib.features.book import BookAggregator
from mdh_lib.frames import Instrument, with_ids
from mdh_lib.timeframes import TIMEFRAMES, grid_failures

GRID_CHECK = "full_grid"


BOOK_KEYS = {tf: dg.AssetKey(["book", tf]) for tf in TIMEFRAMES}


@dg.multi_asset(**per_timeframe(
    BOOK_KEYS, group="book", check=GRID_CHECK,
    deps=[dg.AssetDep(["raw", "book_snapshot_5"], partition_mapping=neighbour_days())],
    description=lambda tf: f"{tf} order-book features from book_snapshot_5 (mdh_lib.features.book)",
    check_description="one row per bucket of the day, increasing timestamps", backfill_policy=POLICY,
))
def book_assets(context: dg.AssetExecutionContext, storage: StorageResource):
    yield from TimeframeRun(context, BOOK_KEYS, GRID_CHECK).each(storage.storage, "book", _book_partition)


def _book_partition(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    definitions = catalog.definitions(date)
    definition = instrument_row(definitions, key) if definitions is not None else None
    if definition is not None and "book_snapshot_5" not in definition["data_types"]:
        return None  # listed without book snapshots: no book features, and no failure
    inputs = day_book(catalog, date, key)
    if inputs is None:
        raise dg.Failure(description=f"book {date} {key}: raw/book_snapshot_5 is not downloaded; run mdh download first")
    chunks, sources = inputs
    instrument = Instrument.from_definitions(definitions, key)
    aggregator = BookAggregator(date, timeframes)
    snapshots = 0
    for chunk in chunks:
        snapshots += chunk.height
        aggregator.update(chunk)
    frames = {tf: with_ids(frame, instrument, tf) for tf, frame in aggregator.finish().items()}
    failures = {tf: grid_failures(frame, date, tf) for tf, frame in frames.items()}
    return frames, failures, lambda tf, frame: {"snapshots": snapshots, **sources.metadata()}
