"""Order-book features 15s..24h of every instrument with book snapshots of a (day, venue),
each streamed from its book_snapshot_5 Parquet one row group at a time (bounded memory on
10M-snapshot days), with the last snapshot before midnight and the neighbour days' rows
stamped in the day (`mdh_lib.candles.day_inputs.day_book`)."""

import datetime as dt

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.io_managers.venue_day import Scope
from mdh_assets.partitions import neighbour_days
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.candles.day_inputs import day_book
from mdh_lib.catalog import Catalog
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
def book_assets(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, BOOK_KEYS, GRID_CHECK).each(
        "book", "book_snapshot_5", config, _book_instrument)


def _book_instrument(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    inputs = day_book(catalog, date, key)
    if inputs is None:
        raise dg.Failure(description=f"book {date} {key}: raw/book_snapshot_5 is not downloaded; run mdh download first")
    chunks, sources = inputs
    instrument = Instrument.from_definitions(catalog.definitions(date), key)
    aggregator = BookAggregator(date, timeframes)
    snapshots = 0
    for chunk in chunks:
        snapshots += chunk.height
        aggregator.update(chunk)
    frames = {tf: with_ids(frame, instrument, tf) for tf, frame in aggregator.finish().items()}
    failures = {tf: grid_failures(frame, date, tf) for tf, frame in frames.items()}
    return frames, failures, lambda tf, frame: {"snapshots": snapshots, **sources.metadata()}
