"""Partitions: every dataset is daily; raw and derived data are also split by instrument.

Three dynamic sets, filled by the instruments asset from each day's definitions, so that a
data type that does not exist for an instrument has no partition at all:
``instruments`` (spot pairs, perpetuals, futures), ``derivative_instruments`` (perpetuals and
futures: derivative_ticker, liquidations) and ``option_underlyings`` (one options chain each).
"""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from mdh_lib.config import load_settings
from mdh_lib.instruments import InstrumentKey

# MultiToSingleDimensionPartitionMapping is beta; it is the documented way to map a
# date x instrument partition to its day's definitions. Every asset module imports this one.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DATE = "date"
INSTRUMENT = "instrument"

daily = dg.DailyPartitionsDefinition(start_date=load_settings().universe.start_date.isoformat())
instruments = dg.DynamicPartitionsDefinition(name="instruments")
derivative_instruments = dg.DynamicPartitionsDefinition(name="derivative_instruments")
option_underlyings = dg.DynamicPartitionsDefinition(name="option_underlyings")

by_instrument = dg.MultiPartitionsDefinition({DATE: daily, INSTRUMENT: instruments})
by_derivative = dg.MultiPartitionsDefinition({DATE: daily, INSTRUMENT: derivative_instruments})
by_underlying = dg.MultiPartitionsDefinition({DATE: daily, INSTRUMENT: option_underlyings})

RAW_PARTITIONS = {
    "trades": by_instrument,
    "book_snapshot_5": by_instrument,
    "derivative_ticker": by_derivative,
    "liquidations": by_derivative,
    "options_chain": by_underlying,
}


def dynamic_sets_for(key: InstrumentKey) -> list[dg.DynamicPartitionsDefinition]:
    """The dynamic partition sets an instrument or underlying key belongs to."""
    if key.type == "OPTION":
        return [option_underlyings]
    return [instruments] + ([derivative_instruments] if key.type in ("PERPETUAL", "FUTURE") else [])


def register_partitions(instance: dg.DagsterInstance, keys: set[str]) -> None:
    """Add instrument and underlying keys to their dynamic sets (idempotent)."""
    by_set: dict[str, list[str]] = {}
    for key in sorted(keys):
        for partitions_def in dynamic_sets_for(InstrumentKey.parse(key)):
            by_set.setdefault(partitions_def.name, []).append(key)
    for name, members in by_set.items():
        instance.add_dynamic_partitions(name, members)


def partition_key(date: dt.date | str, key: str) -> dg.MultiPartitionKey:
    day = date if isinstance(date, str) else date.isoformat()
    return dg.MultiPartitionKey({DATE: day, INSTRUMENT: key})


def split(context_partition_key: str | dg.MultiPartitionKey) -> tuple[dt.date, InstrumentKey]:
    """(date, instrument key) of a run's multi-partition key."""
    keys = context_partition_key.keys_by_dimension if isinstance(context_partition_key, dg.MultiPartitionKey) else dict(
        zip((DATE, INSTRUMENT), str(context_partition_key).split("|"))
    )
    return dt.date.fromisoformat(keys[DATE]), InstrumentKey.parse(keys[INSTRUMENT])
