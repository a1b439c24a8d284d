"""Order-book features 15s..24h for each (day, instrument), streamed from the day's
book_snapshot_5 Parquet one row group at a time (bounded memory on 10M-snapshot days)."""

import dagster as dg

from mdh_assets.partitions import by_instrument, split
from mdh_assets.resources.storage import StorageResource
from mdh_lib.catalog import Catalog
from mdh_lib.features.book import BookAggregator
from mdh_lib.frames import Instrument, with_ids
from mdh_lib.timeframes import TIMEFRAMES, grid_failures

GRID_CHECK = "full_grid"


def book_key(tf: str) -> dg.AssetKey:
    return dg.AssetKey(["book", tf])


@dg.multi_asset(
    outs={book_key(tf).to_python_identifier(): dg.AssetOut(
        key=book_key(tf), group_name="book", kinds={"parquet", "polars"}, is_required=False,
        description=f"{tf} order-book features from book_snapshot_5 (mdh_lib.features.book)")
        for tf in TIMEFRAMES},
    deps=[["raw", "book_snapshot_5"]],
    check_specs=[dg.AssetCheckSpec(GRID_CHECK, asset=book_key(tf), blocking=True,
                                   description="one row per bucket of the day, increasing timestamps")
                 for tf in TIMEFRAMES],
    partitions_def=by_instrument,
    can_subset=True,
)
def book_assets(context: dg.AssetExecutionContext, storage: StorageResource):
    date, key = split(context.partition_key)
    catalog = Catalog(storage.storage)
    instrument = Instrument.from_definitions(catalog.definitions(date), key)
    if not catalog.exists(("raw", "book_snapshot_5"), date, key):
        raise dg.Failure(description=f"book {date} {key}: raw/book_snapshot_5 is not downloaded; run mdh download first")
    aggregator = BookAggregator(date, [tf for tf in TIMEFRAMES if book_key(tf) in context.selected_asset_keys])
    snapshots = 0
    for chunk in catalog.batches(("raw", "book_snapshot_5"), date, key):
        snapshots += chunk.height
        aggregator.update(chunk)
    frames = {tf: with_ids(frame, instrument, tf) for tf, frame in aggregator.finish().items()}
    failures = {tf: grid_failures(frame, date, tf) for tf, frame in frames.items()}
    for tf, problems in failures.items():
        yield dg.AssetCheckResult(asset_key=book_key(tf), check_name=GRID_CHECK, passed=not problems,
                                  metadata={"failures": "; ".join(problems)} if problems else {})
    if any(failures.values()):
        raise dg.Failure(description=f"book {date} {key}: grid checks failed; nothing written")
    for tf, frame in frames.items():
        yield dg.Output(frame.to_arrow(), output_name=book_key(tf).to_python_identifier(),
                        metadata={"snapshots": snapshots})
