"""Candles 15s..24h of every instrument with trades of a (day, venue): one read of an
instrument's ticks feeds every timeframe (a multi-asset, one output per timeframe), checked
before anything of it is written."""

import datetime as dt

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.metadata import CHART_TIMEFRAMES, candle_chart
from mdh_assets.io_managers.venue_day import Scope
from mdh_assets.partitions import every_venue_that_day, neighbour_days
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.candles import Instrument, candles
from mdh_lib.candles.checks import check_candles
from mdh_lib.candles.day_inputs import Sources, candle_inputs
from mdh_lib.catalog import Catalog
from mdh_lib.definitions import instrument_row, options_underlying
from mdh_lib.features.options import options_columns
from mdh_lib.timeframes import TIMEFRAMES

CANDLE_CHECK = "candle_checks"


def candle_key(tf: str) -> dg.AssetKey:
    return dg.AssetKey(["candles", tf])


CANDLE_KEYS = {tf: candle_key(tf) for tf in TIMEFRAMES}


@dg.multi_asset(**per_timeframe(
    CANDLE_KEYS, group="candles", check=CANDLE_CHECK,
    description=lambda tf: f"{tf} candles with HFT, derivative and options columns (SPEC section 6)",
    check_description="types, OHLC and VWAP ranges, taker volumes, full grid, increasing timestamps",
    deps=[*(dg.AssetDep(["raw", t], partition_mapping=neighbour_days())
            for t in ("trades", "derivative_ticker", "liquidations")),
          dg.AssetDep(["features", "options"], partition_mapping=every_venue_that_day())],
    backfill_policy=POLICY,
))
def candle_assets(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, CANDLE_KEYS, CANDLE_CHECK).each(
        "candles", "trades", config, _candle_instrument,
        chart=lambda tf, frame, title: candle_chart(frame, title) if tf in CHART_TIMEFRAMES else None)


def _candle_instrument(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    frames, sources, features = _candles(catalog, date, key, timeframes)
    failures = {tf: check_candles(frame, date, tf) for tf, frame in frames.items()}
    neighbours = Sources.total(sources.values()).metadata()
    return frames, failures, lambda tf, frame: {
        "buckets_with_trades": int((frame["trade_count"] > 0).sum()),
        "trades": int(frame["trade_count"].sum()),
        **neighbours,
        "late_trades_from_next_day": sources["trades"].from_next_day,
        "options_columns": features is not None,
    }


def _candles(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    """(frames per timeframe, neighbour-file sources per data type, options features or None)."""
    definitions = catalog.definitions(date)
    definition = instrument_row(definitions, key) if definitions is not None else None
    if definition is None:
        raise dg.Failure(description=f"candles {date} {key}: not in the instrument definitions of {date}")
    inputs, sources, absent = candle_inputs(catalog, date, key, definition["data_types"])
    if absent:
        raise dg.Failure(description=f"candles {date} {key}: raw/{absent[0]} is not downloaded; run mdh download first")
    underlying = options_underlying(definitions, key.base)
    features = catalog.read(("features", "options"), date, underlying) if underlying else None
    frames = candles(
        inputs["trades"], date, Instrument.from_definitions(definitions, key), timeframes=timeframes,
        ticker=inputs.get("derivative_ticker"), liquidations=inputs.get("liquidations"),
        options={tf: options_columns(features, tf) for tf in timeframes} if features is not None else None,
    )
    return frames, sources, features
