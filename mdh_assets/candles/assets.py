"""Candles 15s..24h for each (day, instrument): one read of the day's ticks feeds every
timeframe (a multi-asset, one output per timeframe), checked before anything is written."""

import datetime as dt

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.metadata import CHART_TIMEFRAMES, candle_chart
from mdh_assets.partitions import DATE, INSTRUMENT
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.candles import Instrument, candles, day_rows
from mdh_lib.candles.checks import check_candles
from mdh_lib.candles.trades import TRADE_COLUMNS
from mdh_lib.catalog import Catalog
from mdh_lib.definitions import instrument_row, options_underlying
from mdh_lib.features.options import options_columns
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, day_start_us

CANDLE_CHECK = "candle_checks"


def candle_key(tf: str) -> dg.AssetKey:
    return dg.AssetKey(["candles", tf])


CANDLE_KEYS = {tf: candle_key(tf) for tf in TIMEFRAMES}


def _same_and_next_day() -> dg.MultiPartitionMapping:
    """Day D's candles read day D's file and the late arrivals at the head of D+1's file."""
    return dg.MultiPartitionMapping({
        DATE: dg.DimensionPartitionMapping(DATE, dg.TimeWindowPartitionMapping(
            start_offset=0, end_offset=1, allow_nonexistent_upstream_partitions=True)),
        INSTRUMENT: dg.DimensionPartitionMapping(INSTRUMENT, dg.IdentityPartitionMapping()),
    })


def _required(catalog: Catalog, data_type: str, date: dt.date, key, definition: dict, columns=None):
    """A raw frame the day's definitions call for (None when they do not); its absence
    fails the partition."""
    if data_type not in definition["data_types"]:
        return None
    frame = catalog.read(("raw", data_type), date, key, columns=columns)
    if frame is None:
        raise dg.Failure(description=f"candles {date} {key}: raw/{data_type} is not downloaded; run mdh download first")
    return frame


def _day_ticks(catalog: Catalog, data_type: str, date: dt.date, key, definition: dict, columns: list[str]):
    """(rows stamped in ``date``, rows taken from the next day's file or None when that file
    is not there yet); see `mdh_lib.candles.day_rows` for the policy."""
    today = _required(catalog, data_type, date, key, definition, columns)
    if today is None:
        return None, None
    late = catalog.read(("raw", data_type), date + dt.timedelta(days=1), key, columns=columns,
                        filters=[("timestamp", "<", day_start_us(date) + DAY_US)])
    return day_rows(today, late, date), late


@dg.multi_asset(**per_timeframe(
    CANDLE_KEYS, group="candles", check=CANDLE_CHECK,
    description=lambda tf: f"{tf} candles with HFT, derivative and options columns (SPEC section 6)",
    check_description="types, OHLC and VWAP ranges, taker volumes, full grid, increasing timestamps",
    deps=[dg.AssetDep(["raw", "trades"], partition_mapping=_same_and_next_day()),
          ["raw", "derivative_ticker"], ["raw", "liquidations"], ["features", "options"]],
    backfill_policy=POLICY,
))
def candle_assets(context: dg.AssetExecutionContext, storage: StorageResource):
    yield from TimeframeRun(context, CANDLE_KEYS, CANDLE_CHECK).each(storage.storage, "candles", _candle_partition)


def _candle_partition(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    frames, late, features = _candles(catalog, date, key, timeframes)
    failures = {tf: check_candles(frame, date, tf) for tf, frame in frames.items()}
    return frames, failures, lambda tf, frame: {
        "buckets_with_trades": int((frame["trade_count"] > 0).sum()),
        "trades": int(frame["trade_count"].sum()),
        "next_day_included": late is not None,
        "late_trades_from_next_day": 0 if late is None else late.height,
        "options_columns": features is not None,
        **({"chart": candle_chart(frame, f"{key} {tf} {date}")} if tf in CHART_TIMEFRAMES else {}),
    }


def _candles(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    """(frames per timeframe, next-day late trades or None, options features or None)."""
    definitions = catalog.definitions(date)
    definition = instrument_row(definitions, key) if definitions is not None else None
    if definition is None:
        raise dg.Failure(description=f"candles {date} {key}: not in the instrument definitions of {date}")
    trades, late = _day_ticks(catalog, "trades", date, key, definition, TRADE_COLUMNS)
    if trades is None:
        raise dg.Failure(description=f"candles {date} {key}: no trades data type for this instrument")
    liquidations, _ = _day_ticks(catalog, "liquidations", date, key, definition, ["timestamp", "side", "amount"])
    underlying = options_underlying(definitions, key.base)
    features = catalog.read(("features", "options"), date, underlying) if underlying else None
    frames = candles(
        trades, date, Instrument.from_definitions(definitions, key), timeframes=timeframes,
        ticker=_required(catalog, "derivative_ticker", date, key, definition), liquidations=liquidations,
        options={tf: options_columns(features, tf) for tf in timeframes} if features is not None else None,
    )
    return frames, late, features
