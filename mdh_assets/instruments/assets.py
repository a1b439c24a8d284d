"""Daily instrument definitions of every configured venue: what each venue-day partition of
the raw and derived assets covers.

Without a paid key Tardis refuses ``/v1/instruments``: the definitions of such a venue are
then built from the free ``/v1/exchanges`` symbol list (rows with source ``exchanges_api``),
so a user without a subscription still gets the first day of each month end to end.
"""


import datetime as dt
from collections import Counter

import dagster as dg
import polars as pl

from mdh_assets.backfill import POLICY, Results
from mdh_assets.metadata import file_metadata, preview
from mdh_assets.partitions import daily
from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.tardis import TardisResource
from mdh_lib.catalog import Catalog
from mdh_lib.config import load_settings
from mdh_lib.definitions import MISSING_WITHOUT_METADATA, build_definitions, universe_metadata
from mdh_lib.instruments import InstrumentError
from mdh_lib.tardis.client import TardisError


KEY = dg.AssetKey(["instruments"])


@dg.asset(
    key=KEY,
    partitions_def=daily,
    backfill_policy=POLICY,
    group_name="instruments",
    kinds={"parquet", "tardis"},
    description="Instrument definitions of the configured universe for the day (SPEC section 4).",
)
def instruments(context: dg.AssetExecutionContext, tardis: TardisResource, storage: StorageResource):
    """One run may cover many days (`mdh_assets.backfill`): the venues' instrument lists are
    fetched once, then each day's definitions are built and written."""
    dates = [dt.date.fromisoformat(pk) for pk in context.partition_keys]
    span = f"instruments {dates[0]}" + (f"..{dates[-1]}" if len(dates) > 1 else "")
    universe = load_settings().universe
    try:
        details, records, fallback = universe_metadata(universe, tardis.exchange_details, tardis.instrument_records)
    except TardisError as exc:
        raise dg.Failure(description=f"{span}: {exc}") from None
    if fallback:  # once per run, however many days it covers
        context.log.warning(f"{span}: /v1/instruments refused, definitions of {', '.join(fallback)} built from "
                            f"/v1/exchanges: {MISSING_WITHOUT_METADATA}")
    results = Results(context)
    for pk, date in zip(context.partition_keys, dates):
        try:
            table = build_definitions(date, universe, details, records)
        except InstrumentError as exc:
            results.failed(f"instruments {date}: {exc} (check the universe in mdh.toml)")
            continue
        info = Catalog(storage.storage).write(tuple(KEY.path), date, None, table)
        by_type = Counter(table["instrument_type"].to_pylist())
        results.materialized(KEY, pk, {
            **file_metadata(info, table.schema),
            **{f"count_{t.lower()}": n for t, n in sorted(by_type.items())},
            "venues": ", ".join(universe.exchanges),
            "source": ", ".join(f"{ex}: {'exchanges_api' if ex in fallback else 'instruments_api'}"
                                for ex in universe.exchanges),
            "preview": preview(pl.from_arrow(table.select(
                ["instrument_key", "exchange_symbol", "tick_size", "available_since"])), rows=20),
        })
    yield from results.finish([KEY])

