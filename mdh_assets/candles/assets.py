"""Candles 15s..24h of every instrument with trades of a (day, venue): one read of an
instrument's ticks feeds every timeframe (a multi-asset, one output per timeframe), checked
before anything of it is written (`mdh_lib.processing.instrument_candles`)."""

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.io_managers.venue_day import Scope
from mdh_assets.metadata import CHART_TIMEFRAMES, candle_chart
from mdh_assets.partitions import every_venue_that_day, neighbour_days
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.processing import instrument_candles
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
        "candles", "trades", config, instrument_candles,
        per_frame=lambda tf, frame: {"buckets_with_trades": int((frame["trade_count"] > 0).sum()),
                                     "trades": int(frame["trade_count"].sum())},
        chart=lambda tf, frame, title: candle_chart(frame, title) if tf in CHART_TIMEFRAMES else None)
