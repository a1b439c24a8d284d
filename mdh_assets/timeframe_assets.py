"""The shape shared by candles, book and MFT assets: one multi-asset per (day, instrument)
with one optional Parquet output and one blocking check per timeframe, whose checks run on
the computed frames before anything is written."""

import datetime as dt
from collections.abc import Callable

import dagster as dg
import polars as pl

from mdh_assets.backfill import Results, run_partitions
from mdh_assets.metadata import file_metadata, preview
from mdh_assets.partitions import by_instrument
from mdh_lib.catalog import Catalog
from mdh_lib.instruments import InstrumentKey
from mdh_lib.layout import dataset_path
from mdh_lib.storage import Storage


def per_timeframe(keys: dict[str, dg.AssetKey], *, group: str, description: Callable[[str], str], check: str,
                  check_description: str, deps: list, **kwargs) -> dict:
    """Arguments for `dg.multi_asset`."""
    return dict(
        outs={key.to_python_identifier(): dg.AssetOut(key=key, group_name=group, kinds={"parquet", "polars"},
                                                      is_required=False, description=description(tf))
              for tf, key in keys.items()},
        check_specs=[dg.AssetCheckSpec(check, asset=key, blocking=True, description=check_description)
                     for key in keys.values()],
        deps=deps, partitions_def=by_instrument, can_subset=True, **kwargs,
    )


def selected(context: dg.AssetExecutionContext, keys: dict[str, dg.AssetKey]) -> list[str]:
    """The timeframes this run materializes."""
    return [tf for tf, key in keys.items() if key in context.selected_asset_keys]


class TimeframeRun(Results):
    """A run of a per-timeframe multi-asset over one or more partitions: each partition is
    written only if every check of its frames passed; the checks report per timeframe over
    the whole run."""

    def __init__(self, context: dg.AssetExecutionContext, keys: dict[str, dg.AssetKey], check: str):
        super().__init__(context)
        self.keys, self.check = keys, check
        self.timeframes = selected(context, keys)
        self.problems: dict[str, list[str]] = {tf: [] for tf in self.timeframes}

    def write(self, storage: Storage, what: str, partition: tuple[str, dt.date, InstrumentKey],
              frames: dict[str, pl.DataFrame], failures: dict[str, list[str]],
              metadata: Callable[[str, pl.DataFrame], dict]) -> None:
        """Check results of one partition (`run_partitions`); its files when they all passed."""
        pk, date, key = partition
        for tf, problems in failures.items():
            self.problems[tf] += [f"{pk}: {p}" for p in problems]
        bad = [tf for tf, problems in failures.items() if problems]
        if bad:
            self.failed(f"{what}: checks failed for {', '.join(bad)}; nothing written")
            return
        for tf, frame in frames.items():
            table = frame.to_arrow()
            info = storage.write_parquet(dataset_path(self.keys[tf].path, date, key), table, sorting_column="timestamp")
            self.materialized(self.keys[tf], pk, {
                **file_metadata(info, table.schema), "preview": preview(frame), **metadata(tf, frame)})

    def each(self, storage: Storage, what: str, compute: Callable):
        """The run's events: for each partition (`run_partitions`), ``compute(catalog, date,
        key, timeframes)`` gives (frames, check failures per timeframe, metadata function), None
        when the day's definitions call for no such data for the instrument (a spot pair
        listed without book snapshots gets no book features, and that is no failure), or
        raises `dg.Failure` for that partition alone; then the checks and `Results.finish`."""
        catalog = Catalog(storage)
        for partition in run_partitions(self.context):
            _, date, key = partition
            try:
                computed = compute(catalog, date, key, self.timeframes)
            except dg.Failure as exc:
                self.failed(exc.description)
                continue
            if computed is None:
                self.skipped += 1
                continue
            frames, failures, metadata = computed
            self.write(storage, f"{what} {date} {key}", partition, frames, failures, metadata)
        for tf, problems in self.problems.items():
            yield dg.AssetCheckResult(asset_key=self.keys[tf], check_name=self.check, passed=not problems,
                                      metadata={"failures": "; ".join(problems)[:1000]} if problems else {})
        yield from super().finish([self.keys[tf] for tf in self.timeframes])
