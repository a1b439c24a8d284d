"""The shape shared by candles, book and MFT assets: one multi-asset per (day, venue) with
one optional Parquet output and one check per timeframe. Each instrument's frames are checked
before anything of it is written; one that fails writes nothing, is named in the manifest and
in the check, and the other instruments go on. So the frames' checks and the `complete` check
(every instrument written) are one asset check, named for the frames' checks: two would say
the same thing twice, and each check costs three events in the instance per run."""

import datetime as dt
from collections.abc import Callable

import dagster as dg

from mdh_assets.io_managers.venue_day import Scope, VenueDayRun, complete_check
from mdh_assets.partitions import venue_day
from mdh_lib.instruments import InstrumentKey
from mdh_lib.catalog import MissingInput
from mdh_lib.storage import Storage


def per_timeframe(keys: dict[str, dg.AssetKey], *, group: str, description: Callable[[str], str], check: str,
                  check_description: str, deps: list, **kwargs) -> dict:
    """Arguments for `dg.multi_asset`."""
    return dict(
        outs={key.to_python_identifier(): dg.AssetOut(key=key, group_name=group, kinds={"parquet", "polars"},
                                                      is_required=False, description=description(tf))
              for tf, key in keys.items()},
        check_specs=complete_check(keys.values(), check, check_description),
        deps=deps, partitions_def=venue_day, can_subset=True, **kwargs,
    )


def selected(context: dg.AssetExecutionContext, keys: dict[str, dg.AssetKey]) -> list[str]:
    """The timeframes this run materializes."""
    return [tf for tf, key in keys.items() if key in context.selected_asset_keys]


def _summed(total: dict, more: dict) -> None:
    """Per-instrument metadata folded into the venue-day's: numbers add up, flags count the
    instruments where they hold, anything else (a chart) is the first instrument's."""
    for name, value in more.items():
        if isinstance(value, bool):
            total[name] = total.get(name, 0) + int(value)
        elif isinstance(value, (int, float)):
            total[name] = total.get(name, 0) + value
        else:
            total.setdefault(name, value)


class TimeframeRun(VenueDayRun):
    """A run of a per-timeframe multi-asset over its venue-days."""

    def __init__(self, context: dg.AssetExecutionContext, storage: Storage, keys: dict[str, dg.AssetKey], check: str):
        self.timeframes = selected(context, keys)
        super().__init__(context, storage, [keys[tf] for tf in self.timeframes], check)
        self.keys = keys
        self.problems: dict[dg.AssetKey, list[str]] = {keys[tf]: [] for tf in self.timeframes}

    def each(self, what: str, needs: str, scope: Scope, compute: Callable, per_frame: Callable | None = None,
             chart: Callable | None = None):
        """The run's events: for each venue-day, each instrument that has the data type
        ``needs`` (within ``scope``): ``compute(catalog, date, key, timeframes)`` gives a
        `mdh_lib.processing.Computed` or raises `MissingInput` for that instrument alone;
        ``per_frame(tf, frame)`` adds metadata of each frame, ``chart(tf, frame, title)``
        draws the first instrument's day (or gives None); then the checks and
        `VenueDayRun.end`."""
        self.per_frame, self.chart = per_frame, chart
        for pk, date, venue, expected in self.partitions(what):
            writers = {tf: self.writer(self.keys[tf], date, venue) for tf in self.timeframes}
            extras: dict[str, dict] = {tf: {} for tf in self.timeframes}
            for key in sorted({e.key for e in expected if e.data_type == needs and scope.keep(e)}):
                self._instrument(date, key, writers, extras, compute)
            for tf, writer in writers.items():
                self.close(pk, writer, **extras[tf])
        yield from self.end()

    def check_metadata(self, asset_key: dg.AssetKey) -> dict:
        """What the timeframe's frames failed, each instrument's problems (the failed
        instruments name only the first)."""
        problems = self.problems[asset_key]
        return {"check_failures": "; ".join(problems)[:1000]} if problems else {}

    def _instrument(self, date: dt.date, key: str, writers: dict, extras: dict, compute: Callable) -> None:
        try:
            computed = compute(self.catalog, date, InstrumentKey.parse(key), self.timeframes)
        except MissingInput as exc:
            for writer in writers.values():
                writer.failed(key, str(exc))
            return
        frames, failures = computed.frames, computed.failures
        for tf, problems in failures.items():
            self.problems[self.keys[tf]] += [f"{date} {key}: {p}" for p in problems]
        problem = computed.problem()
        if problem:
            for writer in writers.values():
                writer.failed(key, problem)
            return
        for tf, frame in frames.items():
            writers[tf].write(key, frame)
            _summed(extras[tf], {**computed.facts, **(self.per_frame(tf, frame) if self.per_frame else {})})
            if self.chart and "chart" not in extras[tf]:
                drawn = self.chart(tf, frame, f"{key} {tf} {date}")
                if drawn is not None:
                    extras[tf]["chart"] = drawn
