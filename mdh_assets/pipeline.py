"""The seed's batch modes as Dagster runs: instruments, missing-data report, download.

Used by the CLI (and the demo); each step materializes assets in the persistent instance.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa

from mdh_assets.backfill import MAX_PARTITIONS_PER_RUN
from mdh_assets.definitions import ASSETS
from mdh_assets.instruments.assets import KEY as INSTRUMENTS
from mdh_assets.partitions import RAW_PARTITIONS, partition_key
from mdh_assets.reports.assets import REPORT
from mdh_assets.reports.status import REPORTED, status_table
from mdh_assets.recovery import PoolGate, abandon, in_worker, recover
from mdh_assets.resources import build_resources
from mdh_assets.runs import RunOutcome, instance_for, is_materialized, materialize, pools
from mdh_lib.config import Settings, bypass_proxy_for_local
from mdh_lib.definitions import Expected, expected_partitions
from mdh_lib.instruments import InstrumentKey
from mdh_lib.catalog import Catalog
from mdh_lib.layout import missing_report_path
from mdh_lib.retention import Retention
from mdh_lib.storage import Storage



@dataclass(frozen=True)
class Filters:
    """Command-line filters; empty means everything in the configured universe."""

    venues: tuple[str, ...] = ()
    instrument_types: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    data_types: tuple[str, ...] = ()

    def keep(self, e: Expected) -> bool:
        return (
            (not self.venues or e.exchange in self.venues)
            and (not self.instrument_types or InstrumentKey.parse(e.key).type in self.instrument_types)
            and (not self.data_types or e.data_type in self.data_types)
            and (not self.symbols or bool(_names(e) & set(self.symbols)))
        )

    def unmatched(self, universe_exchanges: tuple[str, ...], expected: list[Expected]) -> str | None:
        """Why a venue or symbol filter can match nothing (an unknown name), else None."""
        unknown = [v for v in self.venues if v not in universe_exchanges]
        if unknown:
            return f"venue {unknown[0]!r} is not in the configured universe ({', '.join(universe_exchanges)})"
        known = set().union(*(_names(e) for e in expected)) if expected else set()
        unknown = [s for s in self.symbols if s not in known]
        if unknown:
            return f"no instrument of the universe matches symbol {unknown[0]!r} on these days"
        return None


def _names(e: Expected) -> set[str]:
    """What --symbols may call an expected partition: key, exchange symbol, key symbol, base."""
    key = InstrumentKey.parse(e.key)
    return {e.key, e.source_symbol.upper(), key.symbol, key.base}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Runtime:
    """What a batch command works with. Opening it first recovers what crashed runs left
    (`mdh_assets.recovery.recover`; the lines are in ``recovered``); every run then waits
    for its pools' slots (`PoolGate`)."""

    settings: Settings
    command: str = "cli"
    say: Callable[[str], None] = _stderr
    instance: dg.DagsterInstance = field(init=False)
    resources: dict = field(init=False)
    storage: Storage = field(init=False)
    catalog: Catalog = field(init=False)
    gate: PoolGate = field(init=False)
    recovered: list[str] = field(init=False)

    def __post_init__(self) -> None:
        bypass_proxy_for_local(self.settings.datasets_endpoint, self.settings.api_endpoint)
        self.instance = instance_for(self.settings)
        self.resources = build_resources(self.settings)
        self.storage = self.resources["storage"].storage
        self.catalog = Catalog(self.storage)
        self.recovered = recover(self.instance, self.storage)
        self.gate = PoolGate(self.instance, self.settings.dagster_home, self.settings.slot_wait, self.say)

    def run(self, selection: list[dg.AssetKey], partition: str, last: str | None = None) -> RunOutcome:
        """One run of ``selection`` for ``partition`` (or the range ``partition``..``last``)."""
        def stopped() -> None:
            for name in abandon(self.instance, "interrupted (SIGINT or SIGTERM)"):
                self.say(f"{name} marked failed: interrupted")

        with self.gate.hold(pools(ASSETS, selection)):
            return in_worker(lambda: materialize(ASSETS, selection, partition, instance=self.instance,
                                                 resources=self.resources, last_key=last, command=self.command),
                             stopped)


def _daily_runs(rt: Runtime, asset: dg.AssetKey, dates: list[dt.date]) -> list[RunOutcome]:
    """Runs of a daily asset over ``dates``: one per span of consecutive days."""
    return [rt.run([asset], first.isoformat(), last.isoformat()) for first, last in date_spans(dates)]


def ensure_instruments(rt: Runtime, dates: list[dt.date], force: bool = False) -> list[RunOutcome]:
    """Materialize instrument definitions for the days that lack them (all days with ``force``)."""
    todo = [d for d in dates if force or not is_materialized(rt.instance, INSTRUMENTS, d.isoformat())
            or not rt.catalog.exists(("instruments",), d)]
    return _daily_runs(rt, INSTRUMENTS, todo)


def expected_for(rt: Runtime, date: dt.date) -> list[Expected]:
    definitions = rt.catalog.definitions(date)
    return expected_partitions(definitions) if definitions is not None else []


def refresh_reports(rt: Runtime, dates: list[dt.date]) -> tuple[pa.Table | None, list[RunOutcome]]:
    """Materialize each day's missing-data report and return those written, concatenated
    (a day that fails leaves its previous report unread)."""
    outcomes = _daily_runs(rt, REPORT, dates)
    written = {partition for o in outcomes for (asset, partition) in o.metadata if asset == "reports/missing"}
    tables = [rt.storage.read_parquet(missing_report_path(d)) for d in dates if d.isoformat() in written]
    return (pa.concat_tables(tables) if tables else None), [o for o in outcomes if not o.success]


def settled_statuses(rt: Runtime, expected: list[Expected], retention: Retention | None = None) -> list[dict]:
    """The status rows of ``expected`` once no other live run is writing any of them (waited
    for with `PoolGate.until`: recovered orphans are no longer in progress)."""
    def settled() -> tuple[list[dict]] | None:
        rows = status_table(rt.instance, expected, retention).to_pylist()
        return None if any(r["status"] == "in_progress" for r in rows) else (rows,)

    found = settled() or rt.gate.until(settled, lambda: f"partitions being written by {rt.gate.running()}", poll=2.0)
    return found[0]


def download_targets(rt: Runtime, expected: list[Expected], filters: Filters, force: bool) -> list[Expected]:
    """What `mdh download` fetches: the missing and failed partitions (the report's
    statuses, read from the instance), or with ``force`` every expected partition. Partitions
    that a live run is writing are waited for first: if that run fails they are fetched here."""
    wanted = [e for e in expected if filters.keep(e)]
    if force:
        return wanted
    rows = settled_statuses(rt, wanted, Retention.of(rt.settings))
    todo = {(r["date"], r["data_type"], r["instrument_key"]) for r in rows if r["status"] in REPORTED}
    return [e for e in wanted if (e.date, e.data_type, e.key) in todo]


def unwritten(rt: Runtime, targets: list[Expected]) -> list[Expected]:
    """The targets that are not materialized once no other run is writing them (so that a
    command never ends successfully with one of them unwritten)."""
    left = {(r["date"], r["data_type"], r["instrument_key"]) for r in settled_statuses(rt, targets)
            if r["status"] != "materialized"}
    return [e for e in targets if (e.date, e.data_type, e.key) in left]


Group = tuple[str, str, list[dg.AssetKey]]  # (first partition, last partition, assets): one run


def date_spans(dates: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Runs of consecutive days, at most `MAX_PARTITIONS_PER_RUN` days each."""
    spans: list[list[dt.date]] = []
    for date in sorted(set(dates)):
        if spans and date - spans[-1][1] == dt.timedelta(days=1) and \
                (date - spans[-1][0]).days < MAX_PARTITIONS_PER_RUN:
            spans[-1][1] = date
        else:
            spans.append([date, date])
    return [(first, last) for first, last in spans]


def _ranges(days: dict[tuple, list[dt.date]], keys_of) -> list[Group]:
    """One group per span of consecutive days of each (instrument, ...) entry."""
    groups = [(str(partition_key(first, entry[0])), str(partition_key(last, entry[0])), keys_of(entry))
              for entry, dates in days.items() for first, last in date_spans(dates)]
    return sorted(groups, key=lambda g: (g[0].split("|")[0], g[0]))


def run_groups(targets: list[Expected]) -> list[Group]:
    """Download runs: per instrument and set of missing data types (of one partitions
    definition), a range of consecutive days."""
    by_day: dict[tuple, set[str]] = {}
    for e in targets:
        by_day.setdefault((e.key, id(RAW_PARTITIONS[e.data_type]), e.date), set()).add(e.data_type)
    days: dict[tuple, list[dt.date]] = {}
    for (key, _, date), types in by_day.items():
        days.setdefault((key, tuple(sorted(types))), []).append(date)
    return _ranges(days, lambda entry: [dg.AssetKey(["raw", t]) for t in entry[1]])


def processing_groups(rt: Runtime, dates: list[dt.date], filters: Filters, step: str,
                      timeframes: tuple[str, ...]) -> list[Group]:
    """Runs for `mdh candle-processing` (options features of the underlyings first, one run
    per partition, then per instrument over ranges of days: candles where it has trades, book
    features where it has book snapshots) or `mdh mft-processing` (MFT per instrument with
    trades, over ranges of days)."""
    from mdh_lib.timeframes import MFT_TIMEFRAMES

    # data type an instrument needs -> the assets it feeds
    feeds = {"trades": [dg.AssetKey(["features", "mft", tf]) for tf in timeframes if tf in MFT_TIMEFRAMES]} \
        if step == "mft" else {"trades": [dg.AssetKey(["candles", tf]) for tf in timeframes],
                               "book_snapshot_5": [dg.AssetKey(["book", tf]) for tf in timeframes]}
    first, days = [], {}
    for date in dates:
        expected = [e for e in expected_for(rt, date) if filters.keep(e)]
        has: dict[str, set[str]] = {}
        for e in expected:
            if e.data_type in feeds:
                has.setdefault(e.key, set()).add(e.data_type)
        for key, types in has.items():
            days.setdefault((key, tuple(sorted(types))), []).append(date)
        instruments = sorted(k for k, types in has.items() if "trades" in types)
        if step == "mft":
            continue
        bases = {InstrumentKey.parse(k).base for k in instruments}
        underlyings = sorted({e.key for e in expected_for(rt, date)
                              if e.data_type == "options_chain" and InstrumentKey.parse(e.key).symbol in bases
                              and (not filters.venues or e.exchange in filters.venues)})
        first += [(pk, pk, [dg.AssetKey(["features", "options"])]) for pk in (str(partition_key(date, u)) for u in underlyings)]
    groups = _ranges(days, lambda entry: [k for t in entry[1] for k in feeds[t]])
    return first + [g for g in groups if g[2]]


def upload_groups(rt: Runtime, dates: list[dt.date], filters: Filters, timeframes: tuple[str, ...]) -> list[Group]:
    """Runs for `mdh bigquery-upload`: per (day, instrument), the candle tables of the chosen
    timeframes (required), plus the book and MFT feature tables whose Parquet exists (the
    seed's daily order uploads before the MFT step)."""
    from mdh_assets.warehouse.assets import FAMILIES, table_key

    groups = []
    for date in dates:
        for key in sorted({e.key for e in expected_for(rt, date) if e.data_type == "trades" and filters.keep(e)}):
            keys = [
                table_key(family, tf)
                for family, (source, family_tfs) in FAMILIES.items() for tf in timeframes
                if tf in family_tfs and (family == "candles" or rt.catalog.exists((*source, tf), date, key))
            ]
            pk = str(partition_key(date, key))
            groups.append((pk, pk, keys))
    return groups
