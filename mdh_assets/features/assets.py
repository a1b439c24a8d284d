"""Options-chain features of each underlying and MFT features 1m..24h of each instrument with
trades, per (day, venue) (`mdh_lib.processing`)."""

import dagster as dg

from mdh_assets.backfill import POLICY
from mdh_assets.candles.assets import candle_key
from mdh_assets.io_managers.venue_day import Scope
from mdh_assets.partitions import neighbour_days
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.processing import instrument_mft, underlying_options
from mdh_lib.timeframes import MFT_TIMEFRAMES

GRID_CHECK = "full_grid"
OPTIONS = dg.AssetKey(["features", "options"])
MFT_KEYS = {tf: dg.AssetKey(["features", "mft", tf]) for tf in MFT_TIMEFRAMES}


@dg.multi_asset(**per_timeframe(
    {"15s": OPTIONS}, group="features", check=GRID_CHECK,
    deps=[dg.AssetDep(["raw", "options_chain"], partition_mapping=neighbour_days())],
    description=lambda tf: "ATM mark IV and 25-delta put/call skew (nearest expiry and 30 days) per 15s of each "
                           "options underlying of the venue (mdh_lib.features.options)",
    check_description="one row per 15s bucket of the day, increasing timestamps", backfill_policy=POLICY,
))
def options_features_asset(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, {"15s": OPTIONS}, GRID_CHECK).each(
        "options features", "options_chain", config,
        lambda catalog, date, underlying, timeframes: underlying_options(catalog, date, underlying))


@dg.multi_asset(**per_timeframe(
    MFT_KEYS, group="features", check=GRID_CHECK, deps=[candle_key(tf) for tf in MFT_TIMEFRAMES],
    description=lambda tf: f"{tf} MFT features from {tf} candles (mdh_lib.features.mft)",
    check_description="one row per bucket of the day, increasing timestamps", backfill_policy=POLICY,
))
def mft_assets(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, MFT_KEYS, GRID_CHECK).each(
        "mft", "trades", config, instrument_mft)
