"""The one planner: which runs bring days up to date, as plain functions of the day's
definitions (expected partitions), the raw status (`mdh_assets.reports.status`) and the
Dagster status of the derived venue-days. The CLI and the gap-filling sensor both use it.

A run is one venue over a span of consecutive days (at most `MAX_PARTITIONS_PER_RUN`) for
one set of assets, narrowed by a `Scope` (symbols, instrument types, force). So a daily
cycle is a handful of runs per venue, whatever the number of instruments: raw, options
features, candles and book, MFT, warehouse.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dagster as dg

from mdh_assets.backfill import MAX_PARTITIONS_PER_RUN
from mdh_assets.book.assets import BOOK_KEYS
from mdh_assets.candles.assets import CANDLE_KEYS
from mdh_assets.features.assets import MFT_KEYS, OPTIONS
from mdh_assets.partitions import venue_day_key
from mdh_assets.raw.assets import raw_key
from mdh_assets.reports.status import REPORTED
from mdh_assets.warehouse.assets import table_key
from mdh_lib.definitions import Expected
from mdh_lib.instruments import InstrumentKey
from mdh_lib.timeframes import TIMEFRAMES


@dataclass(frozen=True)
class Planned:
    """One run: ``assets`` of ``venue`` for the days ``first``..``last``."""

    step: str  # raw, options, candles, mft, warehouse
    venue: str
    first: dt.date
    last: dt.date
    assets: tuple[dg.AssetKey, ...]
    scope: dict = field(default_factory=dict, hash=False, compare=False)  # `Scope` fields

    @property
    def first_key(self) -> str:
        return str(venue_day_key(self.first, self.venue))

    @property
    def last_key(self) -> str:
        return str(venue_day_key(self.last, self.venue))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def date_spans(dates: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Runs of consecutive days, at most `MAX_PARTITIONS_PER_RUN` days each."""
    spans: list[list[dt.date]] = []
    for date in sorted(set(dates)):
        if spans and date - spans[-1][1] == dt.timedelta(days=1) and \
                (date - spans[-1][0]).days < MAX_PARTITIONS_PER_RUN:
            spans[-1][1] = date
        else:
            spans.append([date, date])
    return [(first, last) for first, last in spans]


def _runs(step: str, wanted: dict[tuple[str, tuple[dg.AssetKey, ...]], set[dt.date]], scope: dict) -> list[Planned]:
    """Spans of consecutive days of each (venue, assets)."""
    runs = [Planned(step, venue, first, last, assets, scope)
            for (venue, assets), days in wanted.items() for first, last in date_spans(days)]
    return sorted(runs, key=lambda r: (r.first, r.venue, [k.to_user_string() for k in r.assets]))


def _venue(row: dict) -> str:
    return InstrumentKey.parse(row["instrument_key"]).exchange


def raw_runs(rows: list[dict], scope: dict, force: bool = False) -> list[Planned]:
    """Downloads: per venue, the days where an expected instrument is missing or failed in
    the raw status ``rows`` (every day with ``force``), with the data types that need it."""
    need: dict[tuple[str, dt.date], set[str]] = defaultdict(set)
    for r in rows:
        if force or r["status"] in REPORTED:
            need[_venue(r), r["date"]].add(r["data_type"])
    wanted: dict = defaultdict(set)
    for (venue, date), types in need.items():
        wanted[venue, tuple(raw_key(t) for t in sorted(types))].add(date)
    return _runs("raw", wanted, {**scope, "force": force})


def _feeds(step: str, timeframes: Iterable[str]) -> dict[str, list[dg.AssetKey]]:
    """Raw data type an instrument needs -> the assets of ``step`` it feeds."""
    tfs = [tf for tf in TIMEFRAMES if tf in set(timeframes)]
    if step == "options":
        return {"options_chain": [OPTIONS]}
    if step == "candles":
        return {"trades": [CANDLE_KEYS[tf] for tf in tfs], "book_snapshot_5": [BOOK_KEYS[tf] for tf in tfs]}
    if step == "mft":
        return {"trades": [MFT_KEYS[tf] for tf in tfs if tf in MFT_KEYS]}
    if step == "warehouse":
        return {"trades": [table_key("candles", tf) for tf in tfs]
                + [table_key("mft_features", tf) for tf in tfs if tf in MFT_KEYS],
                "book_snapshot_5": [table_key("book_features", tf) for tf in tfs]}
    raise ValueError(f"unknown step {step!r}")


def step_runs(step: str, expected: Iterable[Expected], timeframes: Iterable[str] = TIMEFRAMES, scope: dict | None = None,
              wanted: Callable[[dg.AssetKey, dt.date, str], bool] = lambda asset, date, venue: True) -> list[Planned]:
    """Runs of a derived ``step`` (options, candles, mft, warehouse) for the venue-days that
    ``expected`` lists an input of, with the assets that ``wanted(asset, date, venue)``
    keeps (the sensor asks for what is not materialized yet; the CLI for everything)."""
    feeds, need = _feeds(step, timeframes), defaultdict(set)
    for e in expected:
        for asset in feeds.get(e.data_type, ()):
            need[e.exchange, e.date].add(asset)
    runs: dict = defaultdict(set)
    for (venue, date), assets in need.items():
        kept = tuple(sorted((a for a in assets if wanted(a, date, venue)), key=lambda k: k.to_user_string()))
        if kept:
            runs[venue, kept].add(date)
    return _runs(step, runs, scope or {})
