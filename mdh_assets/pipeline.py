"""The seed's batch modes as Dagster runs: instruments, missing-data report, download and
processing, planned by `mdh_assets.planner`.

Used by the CLI (and the demo); each step materializes assets in the persistent instance.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import dagster as dg
import pyarrow as pa

from mdh_assets.definitions import ASSETS
from mdh_assets.features.assets import MFT_KEYS
from mdh_assets.instruments.assets import KEY as INSTRUMENTS
from mdh_assets.partitions import split, venue_day_key
from mdh_assets.planner import Planned, date_spans, raw_runs, step_runs
from mdh_assets.recovery import PoolGate, abandon, in_worker, recover
from mdh_assets.reports.assets import REPORT
from mdh_assets.reports.status import REPORTED, status_table, statuses
from mdh_assets.resources import build_resources
from mdh_assets.runs import RunOutcome, asset_job, instance_for, is_materialized, materialize, pools
from mdh_lib.catalog import Catalog
from mdh_lib.config import Settings, bypass_proxy_for_local
from mdh_lib.definitions import Expected, Filters, expected_partitions, fallback_exchanges, fallback_line
from mdh_lib.layout import missing_report_path
from mdh_lib.retention import Retention
from mdh_lib.storage import Storage
from mdh_lib.tardis.client import refuses_without_key


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

    @cached_property
    def job(self) -> dg.JobDefinition:
        """Every asset with this runtime's resources: the definitions built once per process."""
        return asset_job(ASSETS, self.resources)

    def run(self, selection: list[dg.AssetKey], partition: str, last: str | None = None,
            scope: dict | None = None) -> RunOutcome:
        """One run of ``selection`` for ``partition`` (or the range ``partition``..``last``),
        its venue-day assets narrowed by ``scope`` (`Scope` fields)."""
        def stopped() -> None:
            for name in abandon(self.instance, "interrupted (SIGINT or SIGTERM)"):
                self.say(f"{name} marked failed: interrupted")

        with self.gate.hold(pools(ASSETS, selection)):
            return in_worker(lambda: materialize(ASSETS, selection, partition, instance=self.instance,
                                                 resources=self.resources, last_key=last, command=self.command,
                                                 scope=scope, job=self.job), stopped)

    def run_planned(self, planned: Planned) -> RunOutcome:
        return self.run(list(planned.assets), planned.first_key, planned.last_key, planned.scope)


def _daily_runs(rt: Runtime, asset: dg.AssetKey, dates: list[dt.date]) -> list[RunOutcome]:
    """Runs of a daily asset over ``dates``: one per span of consecutive days."""
    return [rt.run([asset], first.isoformat(), last.isoformat()) for first, last in date_spans(dates)]


def ensure_instruments(rt: Runtime, dates: list[dt.date], force: bool = False) -> list[RunOutcome]:
    """Materialize instrument definitions for the days that lack them (all days with ``force``)."""
    todo = [d for d in dates if force or not is_materialized(rt.instance, INSTRUMENTS, d.isoformat())
            or not rt.catalog.exists(("instruments",), d)]
    return _daily_runs(rt, INSTRUMENTS, todo)


def days_needing_key(settings: Settings, dates: list[dt.date]) -> list[dt.date]:
    """The days the service will not serve without a key: with no TARDIS_API_KEY, and a
    service that refuses ``/v1/instruments`` without one (Tardis's free access), every day but
    the first of a month. Asked (one small request) only when there is such a day and no key."""
    later = [d for d in dates if d.day != 1]
    if str(settings.tardis_api_key) or not later or not settings.universe.exchanges:
        return []
    return later if refuses_without_key(settings.universe.exchanges[0], endpoint=settings.api_endpoint) else []


def spans_text(days: list[dt.date], most: int = 6) -> str:
    """Days as runs of consecutive days, e.g. ``2024-01-02..2024-01-31, 2024-02-02`` (at most
    ``most`` runs, then how many days are left)."""
    spans: list[list[dt.date]] = []
    for day in sorted(set(days)):
        if spans and day - spans[-1][1] == dt.timedelta(days=1):
            spans[-1][1] = day
        else:
            spans.append([day, day])
    text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in spans[:most])
    rest = sum((b - a).days + 1 for a, b in spans[most:])
    return text + (f" and {rest} more days" if rest else "")


def metadata_note(rt: Runtime, dates: list[dt.date]) -> str | None:
    """The one line saying what definitions built from ``/v1/exchanges`` lack, when any of
    these days' definitions were (None otherwise)."""
    exchanges = set().union(*(fallback_exchanges(rt.catalog.definitions(d)) for d in dates))
    return fallback_line(sorted(exchanges)) if exchanges else None


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
        rows = status_table(rt.instance, rt.storage, expected, retention).to_pylist()
        return None if any(r["status"] == "in_progress" for r in rows) else (rows,)

    found = settled() or rt.gate.until(settled, lambda: f"partitions being written by {rt.gate.running()}", poll=2.0)
    return found[0]


def download_targets(rt: Runtime, expected: list[Expected], filters: Filters, force: bool) -> list[Expected]:
    """What `mdh download` fetches: the missing and failed instruments (the report's
    statuses), or with ``force`` every expected one. Venue-days that a live run is writing
    are waited for first: if that run fails they are fetched here."""
    wanted = [e for e in expected if filters.keep(e)]
    if force:
        return wanted
    rows = settled_statuses(rt, wanted, Retention.of(rt.settings))
    todo = {(r["date"], r["data_type"], r["instrument_key"]) for r in rows if r["status"] in REPORTED}
    return [e for e in wanted if (e.date, e.data_type, e.key) in todo]


def scope_of(filters: Filters) -> dict:
    """The run config (`Scope`) of command-line filters (the venue is the partition's)."""
    return {"symbols": list(filters.symbols), "instrument_types": list(filters.instrument_types)}


def download_runs(targets: list[Expected], filters: Filters, force: bool) -> list[Planned]:
    """One run per venue and span of days with something to fetch, for the data types
    that need it; each run fetches only what is not ok (everything with ``force``)."""
    rows = [{"date": e.date, "instrument_key": e.key, "data_type": e.data_type, "status": "missing"} for e in targets]
    return raw_runs(rows, scope_of(filters), force)


def processing_runs(rt: Runtime, dates: list[dt.date], filters: Filters, step: str,
                    timeframes: tuple[str, ...]) -> list[Planned]:
    """Runs for `mdh candle-processing` (options features of the venues' underlyings first,
    then candles where an instrument has trades and book features where it has book
    snapshots), `mdh mft-processing` or `mdh bigquery-upload` (the tables whose Parquet is
    materialized: MFT tables only for venue-days with MFT features)."""
    every = [e for d in dates for e in expected_for(rt, d)]
    expected = [e for e in every if filters.keep(e)]
    scope = scope_of(filters)
    if step == "candle":
        underlyings = [e for e in every if e.data_type == "options_chain"
                       and (not filters.venues or e.exchange in filters.venues)]
        return step_runs("options", underlyings) + step_runs("candles", expected, timeframes, scope)
    if step == "mft":
        return step_runs("mft", expected, timeframes, scope)
    with_mft = _materialized(rt, [MFT_KEYS[tf] for tf in timeframes if tf in MFT_KEYS], expected)
    return step_runs("warehouse", expected, timeframes, scope, wanted=lambda asset, date, venue: (
        "mft_features" not in asset.path[-1] or (asset.path[-1].rsplit("_", 1)[1], date, venue) in with_mft))


def _materialized(rt: Runtime, assets: list[dg.AssetKey], expected: list[Expected]) -> set[tuple[str, dt.date, str]]:
    """(timeframe, date, venue) of the venue-days of these per-timeframe assets that are materialized."""
    keys = sorted({str(venue_day_key(d, v)) for d, v in {(e.date, e.exchange) for e in expected}})
    done = set()
    for asset in assets:
        for pk, status in statuses(rt.instance, asset, keys).items():
            if status == "materialized":
                date, venue = split(pk)
                done.add((asset.path[-1], date, venue))
    return done



def unwritten(rt: Runtime, targets: list[Expected]) -> list[Expected]:
    """The targets that are not materialized once no other run is writing them (so that a
    command never ends successfully with one of them unwritten)."""
    left = {(r["date"], r["data_type"], r["instrument_key"]) for r in settled_statuses(rt, targets)
            if r["status"] != "materialized"}
    return [e for e in targets if (e.date, e.data_type, e.key) in left]
