"""Daily instrument definitions; materializing a day registers its instruments as partitions."""


import datetime as dt
from collections import Counter

import dagster as dg
import pyarrow as pa

from mdh_assets.partitions import daily, register_partitions
from mdh_assets.resources.tardis import TardisResource
from mdh_lib.config import load_settings
from mdh_lib.definitions import build_definitions, expected_partitions
from mdh_lib.instruments import InstrumentError
from mdh_lib.tardis.client import TardisError


@dg.asset(
    key=["instruments"],
    partitions_def=daily,
    group_name="instruments",
    kinds={"parquet", "tardis"},
    description="Instrument definitions of the configured universe for the day (SPEC section 4).",
)
def instruments(context: dg.AssetExecutionContext, tardis: TardisResource) -> dg.Output[pa.Table]:
    date = dt.date.fromisoformat(context.partition_key)
    universe = load_settings().universe
    try:
        details = {ex: tardis.exchange_details(ex) for ex in universe.exchanges}
        records = {ex: tardis.instrument_records(ex) for ex in universe.exchanges}
    except TardisError as exc:
        raise dg.Failure(description=f"instruments {date}: {exc}") from None
    try:
        table = build_definitions(date, universe, details, records)
    except InstrumentError as exc:
        raise dg.Failure(description=f"instruments {date}: {exc} (check the universe in mdh.toml)") from None
    register_partitions(context.instance, {e.key for e in expected_partitions(table)})
    by_type = Counter(table["instrument_type"].to_pylist())
    return dg.Output(
        table,
        metadata={
            "rows": table.num_rows,
            **{f"count_{t.lower()}": n for t, n in sorted(by_type.items())},
            "venues": ", ".join(universe.exchanges),
            "preview": dg.MetadataValue.md(
                table.select(["instrument_key", "exchange_symbol", "tick_size", "available_since"])
                .slice(0, 20).to_pandas().to_markdown(index=False)
            ),
        },
    )
