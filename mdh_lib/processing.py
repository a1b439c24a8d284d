"""A day's derived datasets of one instrument (or options underlying), computed from what the
storage root holds: the functions the Dagster assets call for each instrument of a venue-day,
and that a service or notebook calls without Dagster.

Each reads its inputs through a `Catalog` (the day's files, the neighbour days' rows by the
midnight rules of `mdh_lib.candles.day_inputs`, the candle history MFT windows need) and
raises `MissingInput`, naming the file and the command that makes it, when an input is not
there; nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import polars as pl

from mdh_lib.candles import candles
from mdh_lib.candles.checks import check_candles
from mdh_lib.candles.day_inputs import Sources, candle_inputs, day_as_of, day_book
from mdh_lib.catalog import Catalog, MissingInput
from mdh_lib.definitions import instrument_row, options_underlying
from mdh_lib.features.book import BookAggregator
from mdh_lib.features.mft import history_bars, mft_features
from mdh_lib.features.options import options_columns, options_features
from mdh_lib.frames import Instrument, with_ids
from mdh_lib.instruments import InstrumentKey
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, grid_failures, width_us


@dataclass(frozen=True)
class Computed:
    """Frames per timeframe, the check failures of each, and what to tell about them."""

    frames: dict[str, pl.DataFrame]
    failures: dict[str, list[str]]
    facts: dict  # numbers and flags about the inputs (rows read, neighbour days, ...)

    def problem(self) -> str | None:
        """Why nothing of it may be written (a timeframe failed its checks), else None."""
        bad = [tf for tf, problems in self.failures.items() if problems]
        return f"checks failed for {', '.join(bad)} ({self.failures[bad[0]][0]}); nothing written" if bad else None


def _definition(catalog: Catalog, date: dt.date, key: InstrumentKey, what: str):
    definitions = catalog.definitions(date)
    row = instrument_row(definitions, key) if definitions is not None else None
    if row is None:
        raise MissingInput(f"{what} {date} {key}: not in the instrument definitions of {date}; run mdh instruments")
    return definitions, row


def instrument_candles(catalog: Catalog, date: dt.date, key: InstrumentKey,
                       timeframes: list[str] = list(TIMEFRAMES)) -> Computed:
    """Candles with the HFT, derivative and options columns (`mdh_lib.candles`), checked."""
    definitions, row = _definition(catalog, date, key, "candles")
    inputs, sources, absent = candle_inputs(catalog, date, key, row["data_types"])
    if absent:
        raise MissingInput(f"candles {date} {key}: raw/{absent[0]} is not downloaded; run mdh download first")
    underlying = options_underlying(definitions, key.base)
    features = catalog.read(("features", "options"), date, underlying) if underlying else None
    frames = candles(
        inputs["trades"], date, Instrument.from_definitions(definitions, key), timeframes=timeframes,
        ticker=inputs.get("derivative_ticker"), liquidations=inputs.get("liquidations"),
        options={tf: options_columns(features, tf) for tf in timeframes} if features is not None else None,
    )
    return Computed(frames, {tf: check_candles(frame, date, tf) for tf, frame in frames.items()}, {
        **Sources.total(sources.values()).metadata(), "late_trades_from_next_day": sources["trades"].from_next_day,
        "options_columns": features is not None})


def instrument_book(catalog: Catalog, date: dt.date, key: InstrumentKey,
                    timeframes: list[str] = list(TIMEFRAMES)) -> Computed:
    """Order-book features (`mdh_lib.features.book`), one row group of snapshots in memory."""
    definitions, _ = _definition(catalog, date, key, "book")
    inputs = day_book(catalog, date, key)
    if inputs is None:
        raise MissingInput(f"book {date} {key}: raw/book_snapshot_5 is not downloaded; run mdh download first")
    chunks, sources = inputs
    aggregator, snapshots = BookAggregator(date, timeframes), 0
    for chunk in chunks:
        snapshots += chunk.height
        aggregator.update(chunk)
    instrument = Instrument.from_definitions(definitions, key)
    frames = {tf: with_ids(frame, instrument, tf) for tf, frame in aggregator.finish().items()}
    return Computed(frames, {tf: grid_failures(frame, date, tf) for tf, frame in frames.items()},
                    {"snapshots": snapshots, **sources.metadata()})


def underlying_options(catalog: Catalog, date: dt.date, underlying: InstrumentKey) -> Computed:
    """ATM IV and 25-delta skew per 15s of an options underlying (`mdh_lib.features.options`)."""
    inputs = day_as_of(catalog, "options_chain", date, underlying)
    if inputs is None:
        raise MissingInput(f"options features {date} {underlying}: raw/options_chain is not downloaded; "
                           "run mdh download first")
    chain, sources = inputs
    frame = options_features(chain, date)
    return Computed({"15s": frame}, {"15s": grid_failures(frame, date, "15s")}, {
        "chain_rows": chain.height, **sources.metadata(),
        f"{underlying.symbol}_atm_mark_iv_last": _last(frame, "atm_mark_iv"),
        f"{underlying.symbol}_skew_25d_put_call_ratio_last": _last(frame, "skew_25d_put_call_ratio")})


def _last(frame: pl.DataFrame, col: str) -> float:
    values = frame[col].drop_nulls()
    return float(values[-1]) if len(values) else float("nan")


def candle_history(catalog: Catalog, date: dt.date, key: InstrumentKey, tf: str) -> pl.DataFrame | None:
    """The candles just before ``date`` that the longest MFT window needs: the unbroken run
    of earlier days that exist (windows never span a missing day)."""
    frames = []
    for n in range(1, math.ceil(history_bars(tf) * width_us(tf) / DAY_US) + 1):
        frame = catalog.read(("candles", tf), date - dt.timedelta(days=n), key)
        if frame is None:
            break
        frames.insert(0, frame)
    return pl.concat(frames).tail(history_bars(tf)) if frames else None


def instrument_mft(catalog: Catalog, date: dt.date, key: InstrumentKey, timeframes: list[str]) -> Computed:
    """MFT features (`mdh_lib.features.mft`) from the day's candles and their history."""
    definitions, _ = _definition(catalog, date, key, "mft")
    instrument = Instrument.from_definitions(definitions, key)
    frames, facts = {}, {}
    for tf in timeframes:
        day = catalog.read(("candles", tf), date, key)
        if day is None:
            raise MissingInput(f"mft {date} {key}: candles/{tf} is not materialized; run mdh candle-processing first")
        history = candle_history(catalog, date, key, tf)
        facts[f"history_bars_{tf}"] = 0 if history is None else history.height
        frames[tf] = with_ids(mft_features(day, history, tf), instrument, tf)
    return Computed(frames, {tf: grid_failures(frame, date, tf) for tf, frame in frames.items()}, facts)
