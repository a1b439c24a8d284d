"""Options-chain features of each underlying and MFT features 1m..24h of each instrument with
trades, per (day, venue)."""

import datetime as dt
import math

import dagster as dg
import polars as pl

from mdh_assets.backfill import POLICY
from mdh_assets.candles.assets import candle_key
from mdh_assets.io_managers.venue_day import Scope
from mdh_assets.partitions import neighbour_days
from mdh_assets.resources.storage import StorageResource
from mdh_assets.timeframe_assets import TimeframeRun, per_timeframe
from mdh_lib.candles.day_inputs import day_as_of
from mdh_lib.catalog import Catalog
from mdh_lib.features.mft import history_bars, mft_features
from mdh_lib.features.options import options_features
from mdh_lib.frames import Instrument, with_ids
from mdh_lib.timeframes import DAY_US, MFT_TIMEFRAMES, grid_failures, width_us

GRID_CHECK = "full_grid"
OPTIONS = dg.AssetKey(["features", "options"])


@dg.multi_asset(**per_timeframe(
    {"15s": OPTIONS}, group="features", check=GRID_CHECK,
    deps=[dg.AssetDep(["raw", "options_chain"], partition_mapping=neighbour_days())],
    description=lambda tf: "ATM mark IV and 25-delta put/call skew (nearest expiry and 30 days) per 15s of each "
                           "options underlying of the venue (mdh_lib.features.options)",
    check_description="one row per 15s bucket of the day, increasing timestamps", backfill_policy=POLICY,
))
def options_features_asset(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, {"15s": OPTIONS}, GRID_CHECK).each(
        "options features", "options_chain", config, _options_underlying)


def _options_underlying(catalog: Catalog, date: dt.date, underlying, timeframes: list[str]):
    inputs = day_as_of(catalog, "options_chain", date, underlying)
    if inputs is None:
        raise dg.Failure(description=f"options features {date} {underlying}: raw/options_chain is not downloaded; "
                                     "run mdh download first")
    chain, sources = inputs
    frame = options_features(chain, date)
    return {"15s": frame}, {"15s": grid_failures(frame, date, "15s")}, lambda tf, frame: {
        "chain_rows": chain.height, **sources.metadata(),
        f"{underlying.symbol}_atm_mark_iv_last": _last(frame, "atm_mark_iv"),
        f"{underlying.symbol}_skew_25d_put_call_ratio_last": _last(frame, "skew_25d_put_call_ratio"),
    }


def _last(frame: pl.DataFrame, col: str) -> float:
    values = frame[col].drop_nulls()
    return float(values[-1]) if len(values) else float("nan")


MFT_KEYS = {tf: dg.AssetKey(["features", "mft", tf]) for tf in MFT_TIMEFRAMES}


def _history(catalog: Catalog, date: dt.date, key, tf: str) -> pl.DataFrame | None:
    """The candles just before ``date`` that the longest window needs: the unbroken run of
    earlier days that exist (windows never span a missing day)."""
    frames = []
    for n in range(1, math.ceil(history_bars(tf) * width_us(tf) / DAY_US) + 1):
        frame = catalog.read(candle_key(tf).path, date - dt.timedelta(days=n), key)
        if frame is None:
            break
        frames.insert(0, frame)
    return pl.concat(frames).tail(history_bars(tf)) if frames else None


@dg.multi_asset(**per_timeframe(
    MFT_KEYS, group="features", check=GRID_CHECK, deps=[candle_key(tf) for tf in MFT_TIMEFRAMES],
    description=lambda tf: f"{tf} MFT features from {tf} candles (mdh_lib.features.mft)",
    check_description="one row per bucket of the day, increasing timestamps", backfill_policy=POLICY,
))
def mft_assets(context: dg.AssetExecutionContext, config: Scope, storage: StorageResource):
    yield from TimeframeRun(context, storage.storage, MFT_KEYS, GRID_CHECK).each("mft", "trades", config, _mft_instrument)


def _mft_instrument(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
    instrument = Instrument.from_definitions(catalog.definitions(date), key)
    frames, history_rows = {}, {}
    for tf in timeframes:
        day = catalog.read(candle_key(tf).path, date, key)
        if day is None:
            raise dg.Failure(description=f"mft {date} {key}: candles/{tf} is not materialized; run mdh candle-processing first")
        history = _history(catalog, date, key, tf)
        history_rows[tf] = 0 if history is None else history.height
        frames[tf] = with_ids(mft_features(day, history, tf), instrument, tf)
    failures = {tf: grid_failures(frame, date, tf) for tf, frame in frames.items()}
    return frames, failures, lambda tf, frame: {
        "history_bars": history_rows[tf], "history_bars_wanted": history_bars(tf)}
