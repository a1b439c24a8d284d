"""Partitions: every dataset is daily; raw and derived data are split by venue too.

A partition of a raw, candle, book, options, MFT or warehouse asset is a (day, venue) pair,
the venue being a configured Tardis exchange id. One materialization covers every instrument
that the day's definitions list for that venue and data type and writes one file per
instrument, with a manifest of each instrument's outcome (`mdh_lib.manifest`). So the
partition count of an asset is days x venues: about 8,500 for three venues over the seven
years Tardis serves, far below Dagster's advised 100,000 whatever the number of instruments,
and a new listing changes no partition set.
"""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from mdh_lib.config import load_settings

# MultiToSingleDimensionPartitionMapping is beta; it is the documented way to map a venue-day
# to its day's definitions. Every asset module imports this one.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

DATE = "date"
VENUE = "venue"

_universe = load_settings().universe
daily = dg.DailyPartitionsDefinition(start_date=_universe.start_date.isoformat())
venues = dg.StaticPartitionsDefinition(list(_universe.exchanges))
venue_day = dg.MultiPartitionsDefinition({DATE: daily, VENUE: venues})


def venue_day_key(date: dt.date | str, venue: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE: date if isinstance(date, str) else date.isoformat(), VENUE: venue})


def split(partition_key: str | dg.MultiPartitionKey) -> tuple[dt.date, str]:
    """(date, venue) of a venue-day partition key."""
    if isinstance(partition_key, dg.MultiPartitionKey):
        keys = partition_key.keys_by_dimension
    else:  # "2024-01-01|binance": dimensions in name order (date, venue)
        keys = dict(zip((DATE, VENUE), str(partition_key).split("|")))
    return dt.date.fromisoformat(keys[DATE]), keys[VENUE]


def neighbour_days() -> dg.MultiPartitionMapping:
    """Day D of a venue reads the tail of D-1's raw files, D's and the head of D+1's
    (`mdh_lib.candles.day_inputs`); a day at the start of the data has no D-1."""
    return dg.MultiPartitionMapping({
        DATE: dg.DimensionPartitionMapping(DATE, dg.TimeWindowPartitionMapping(
            start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True)),
        VENUE: dg.DimensionPartitionMapping(VENUE, dg.IdentityPartitionMapping()),
    })


def every_venue_that_day() -> dg.MultiPartitionMapping:
    """A venue's candles read the options features of every venue that day (Deribit's BTC
    chain serves Binance's BTC perpetual)."""
    return dg.MultiPartitionMapping({
        DATE: dg.DimensionPartitionMapping(DATE, dg.IdentityPartitionMapping()),
        VENUE: dg.DimensionPartitionMapping(VENUE, dg.AllPartitionMapping()),
    })


def the_day() -> dg.MultiToSingleDimensionPartitionMapping:
    """A venue-day reads the day's instrument definitions."""
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DATE)
