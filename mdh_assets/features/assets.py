"""Options-chain features per (day, underlying) and MFT features 1m..24h per (day, instrument)."""

import datetime as dt
import math

import dagster as dg
import polars as pl

from mdh_assets.candles.assets import candle_key, neighbour_days
from mdh_assets.backfill import POLICY
from mdh_assets.partitions import by_underlying, split
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


@dg.asset(
    key=OPTIONS,
    partitions_def=by_underlying,
    deps=[dg.AssetDep(["raw", "options_chain"], partition_mapping=neighbour_days())],
    group_name="features",
    kinds={"parquet", "polars"},
    check_specs=[dg.AssetCheckSpec(GRID_CHECK, asset=OPTIONS, blocking=True,
                                   description="one row per 15s bucket of the day, increasing timestamps")],
    description="ATM mark IV and 25-delta put/call skew (nearest expiry and 30 days) per 15s (mdh_lib.features.options)",
)
def options_features_asset(context: dg.AssetExecutionContext, storage: StorageResource):
    date, underlying = split(context.partition_key)
    inputs = day_as_of(Catalog(storage.storage), "options_chain", date, underlying)
    if inputs is None:
        raise dg.Failure(description=f"options features {date} {underlying}: raw/options_chain is not downloaded; run mdh download first")
    chain, sources = inputs
    frame = options_features(chain, date)
    problems = grid_failures(frame, date, "15s")
    yield dg.AssetCheckResult(check_name=GRID_CHECK, passed=not problems,
                              metadata={"failures": "; ".join(problems)} if problems else {})
    if problems:
        raise dg.Failure(description=f"options features {date} {underlying}: {'; '.join(problems)}")
    yield dg.Output(frame.to_arrow(), metadata={
        "chain_rows": chain.height, **sources.metadata(),
        "atm_mark_iv_last": _last(frame, "atm_mark_iv"), "skew_25d_put_call_ratio_last": _last(frame, "skew_25d_put_call_ratio"),
    })


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
def mft_assets(context: dg.AssetExecutionContext, storage: StorageResource):
    yield from TimeframeRun(context, MFT_KEYS, GRID_CHECK).each(storage.storage, "mft", _mft_partition)


def _mft_partition(catalog: Catalog, date: dt.date, key, timeframes: list[str]):
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
