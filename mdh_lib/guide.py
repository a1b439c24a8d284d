"""The original package's processing names (its usage guide, ``../shared/seed/``) as thin
wrappers over `mdh_lib.processor`, with the guide's signatures, so its services and
notebooks move over by changing their import lines to ``from mdh_lib import ...``:

- ``get_config()``: ``.gcp.bucket`` and ``.gcp.project_id`` (plus ``.data_root``), from the
  same settings as everything else (`mdh_lib.config`). ``.gcp.bucket`` is the bucket of a
  ``gs://`` root, or the folder of a local root, so ``DataClient(config.gcp.bucket, config)``
  opens the configured root either way (prefix included).
- ``HistoricalCandleProcessor(data_client, ProcessingConfig(...))``: ``await
  process_day(instrument_id, date)`` builds and writes the day's candles (all their HFT,
  derivative and options columns) and, with ``enable_book_snapshots``, the book features of
  the chosen timeframes, from the raw ticks already in the root.
- ``AggregatedCandleProcessor(data_client, AggregationConfig(...))``: the same for the higher
  timeframes. Decision: they are computed from the day's ticks, not summed from 1m candles,
  because medians and delays do not aggregate; the files are the ones candle-processing writes.
- ``CandleUploader(data_client, UploadConfig(...))``: ``await upload_day(date, overwrite)``
  loads every instrument's candles of the day into the warehouse tables ``candles_{tf}``;
  ``upload_days`` adds the guide's ``OrchestrationConfig`` (days and timeframes at once,
  one retry of a failed day).

Which warehouse a `CandleUploader` loads: MDH_WAREHOUSE when it is configured, else BigQuery
``project_id``/``dataset_id`` of the `UploadConfig`, else the embedded DuckDB file: the
rule of `mdh_lib.bigquery_client.resolve_warehouse`, so the reader and the uploader agree.

The ``process_*`` and ``upload_*`` calls are coroutines as in the guide; the work runs in a
worker thread, so an event loop stays responsive. Results carry pandas frames, as the
original returned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from mdh_lib.catalog import MissingInput
from mdh_lib.config import load_settings
from mdh_lib.instruments import RAW_DATA_TYPES
from mdh_lib.processor import Processor
from mdh_lib.readers.candles import HFT_COLUMNS
from mdh_lib.readers.data_client import DataClient
from mdh_lib.readers.ranges import as_date
from mdh_lib.timeframes import TIMEFRAMES
from mdh_lib.warehouse.loads import FAMILIES

__all__ = ["AggregatedCandleProcessor", "AggregationConfig", "CandleUploader", "Config", "GCPConfig",
           "HistoricalCandleProcessor", "OrchestrationConfig", "ProcessingConfig", "ProcessingResult",
           "UploadConfig", "UploadResult", "get_config"]


@dataclass(frozen=True)
class GCPConfig:
    bucket: str
    project_id: str | None


@dataclass(frozen=True)
class Config:
    gcp: GCPConfig
    data_root: str
    warehouse: str


def get_config() -> Config:
    """The guide's configuration object, from MDH_DATA_ROOT (or GCS_BUCKET), GCP_PROJECT_ID
    (or the project of a ``bigquery://`` warehouse) and MDH_WAREHOUSE."""
    settings = load_settings()
    root = settings.data_root
    bucket = root.removeprefix("gs://").split("/", 1)[0] if root.startswith("gs://") else os.path.abspath(root)
    project = settings.gcp_project_id or (settings.warehouse.removeprefix("bigquery://").split("/", 1)[0]
                                          if settings.warehouse.startswith("bigquery://") else None)
    return Config(GCPConfig(bucket, project or None), root if root.startswith("gs://") else bucket, settings.warehouse)


def _client(data_client: DataClient) -> DataClient:
    if not isinstance(data_client, DataClient):
        raise TypeError(f"data_client must be a DataClient (DataClient(config.gcp.bucket, config)), "
                        f"not {type(data_client).__name__}")
    return data_client


def _day(date: dt.date | dt.datetime) -> dt.date:
    if not isinstance(date, (dt.date, dt.datetime, str)):
        raise TypeError(f"date must be a date or datetime, not {type(date).__name__}")
    return as_date(date)


def _known_timeframes(timeframes: list[str]) -> list[str]:
    bad = [tf for tf in timeframes if tf not in TIMEFRAMES]
    if bad or not timeframes:
        raise ValueError(f"timeframes {timeframes!r}: choose among {', '.join(TIMEFRAMES)}")
    return list(timeframes)


def _pandas(frames: dict, hft: bool) -> dict[str, pd.DataFrame]:
    out = {tf: frame.to_pandas() for tf, frame in frames.items()}
    return out if hft else {tf: f.drop(columns=[c for c in HFT_COLUMNS if c in f.columns]) for tf, f in out.items()}


@dataclass
class ProcessingConfig:
    """``timeframes`` to build; ``enable_hft_features=False`` leaves the HFT columns out of the
    returned frames (the written files always hold every column, one schema per dataset);
    ``enable_book_snapshots`` with ``book_snapshot_5`` in ``data_types`` also builds the book
    features; ``write=False`` computes without writing."""

    timeframes: list[str] = field(default_factory=lambda: list(TIMEFRAMES))
    enable_hft_features: bool = True
    enable_book_snapshots: bool = True
    data_types: list[str] = field(default_factory=lambda: ["trades", "book_snapshot_5", "derivative_ticker",
                                                           "liquidations"])
    write: bool = True

    def __post_init__(self):
        self.timeframes = _known_timeframes(list(self.timeframes))
        bad = [t for t in self.data_types if t not in RAW_DATA_TYPES]
        if bad:
            raise ValueError(f"unknown data type {bad[0]!r} (one of {', '.join(RAW_DATA_TYPES)})")
        if "trades" not in self.data_types:
            raise ValueError("data_types must include 'trades': candles are built from trades")


@dataclass
class AggregationConfig:
    timeframes: list[str] = field(default_factory=lambda: ["5m", "15m", "1h", "4h", "24h"])
    enable_hft_features: bool = True
    write: bool = True

    def __post_init__(self):
        self.timeframes = _known_timeframes(list(self.timeframes))


@dataclass
class ProcessingResult:
    instrument_id: str
    date: dt.date
    candles: dict[str, pd.DataFrame]
    book: dict[str, pd.DataFrame]
    written: list[str]  # URIs of the files written

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.candles.values())


class HistoricalCandleProcessor:
    def __init__(self, data_client: DataClient, config: ProcessingConfig | None = None):
        self.client, self.config = _client(data_client), config or ProcessingConfig()
        self.processor = Processor(self.client.storage)

    def process(self, instrument_id: str, date: dt.date | dt.datetime) -> ProcessingResult:
        """`process_day`, synchronously."""
        day, cfg, p = _day(date), self.config, self.processor
        candles = p.candles(day, instrument_id, cfg.timeframes, write=cfg.write)
        written = [p.storage.uri(p.catalog.path(("candles", tf), day, instrument_id)) for tf in candles]
        book = {}
        if cfg.enable_book_snapshots and "book_snapshot_5" in cfg.data_types and \
                instrument_id in p.instruments_with(day, "book_snapshot_5"):
            book = p.book(day, instrument_id, cfg.timeframes, write=cfg.write)
            written += [p.storage.uri(p.catalog.path(("book", tf), day, instrument_id)) for tf in book]
        return ProcessingResult(instrument_id, day, _pandas(candles, cfg.enable_hft_features),
                                _pandas(book, True), written if cfg.write else [])

    async def process_day(self, instrument_id: str, date: dt.date | dt.datetime) -> ProcessingResult:
        """Build (and write) the day's candles and book features of ``instrument_id``."""
        return await asyncio.to_thread(self.process, instrument_id, date)


class AggregatedCandleProcessor(HistoricalCandleProcessor):
    def __init__(self, data_client: DataClient, config: AggregationConfig | None = None):
        config = config or AggregationConfig()
        super().__init__(data_client, ProcessingConfig(timeframes=config.timeframes,
                                                       enable_hft_features=config.enable_hft_features,
                                                       enable_book_snapshots=False, write=config.write))


@dataclass
class UploadConfig:
    project_id: str | None = None
    dataset_id: str | None = None
    timeframes: list[str] = field(default_factory=lambda: list(TIMEFRAMES))
    family: str = "candles"  # or book_features, mft_features

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r} (one of {', '.join(FAMILIES)})")
        allowed = FAMILIES[self.family].timeframes
        bad = [tf for tf in self.timeframes if tf not in allowed]
        if bad or not self.timeframes:
            raise ValueError(f"timeframes {self.timeframes!r}: {self.family} has {', '.join(allowed)}")


@dataclass
class OrchestrationConfig:
    max_concurrent_days: int = 1
    max_concurrent_timeframes: int = 1
    retry_failed_days: bool = True


@dataclass
class UploadResult:
    date: dt.date
    rows: dict[str, int]  # per table
    skipped: list[str]  # "table instrument" slices left alone (overwrite=False, already loaded)
    failed: list[str]  # one line per instrument whose file was not there

    @property
    def success(self) -> bool:
        return not self.failed


class CandleUploader:
    def __init__(self, data_client: DataClient, config: UploadConfig | None = None,
                 orchestration: OrchestrationConfig | None = None):
        from mdh_lib.bigquery_client import resolve_warehouse

        self.client, self.config = _client(data_client), config or UploadConfig()
        self.orchestration = orchestration or OrchestrationConfig()
        self.processor = Processor(self.client.storage)
        self.warehouse_url = resolve_warehouse(self.config.project_id, self.config.dataset_id)

    def upload(self, date: dt.date | dt.datetime, overwrite: bool = False) -> UploadResult:
        """`upload_day`, synchronously; timeframes ``max_concurrent_timeframes`` at a time."""
        from mdh_lib.warehouse import open_warehouse

        day, cfg = _day(date), self.config
        keys = self.processor.instruments_with(day, FAMILIES[cfg.family].needs)
        result = UploadResult(day, {}, [], [])
        if not overwrite:
            with open_warehouse(self.warehouse_url) as wh:
                loaded = self._loaded(wh, day)
        else:
            loaded = {}

        def one(tf: str) -> None:  # a connection of its own: none is shared between threads
            table = FAMILIES[cfg.family].table(tf)
            with open_warehouse(self.warehouse_url) as wh:
                for key in keys:
                    if key in loaded.get(table, ()):
                        result.skipped.append(f"{table} {key}")
                        continue
                    try:
                        rows = self.processor.load_warehouse(day, key, cfg.family, [tf], warehouse=wh)
                    except MissingInput as exc:
                        result.failed.append(str(exc))
                        continue
                    result.rows[table] = result.rows.get(table, 0) + rows[table]

        with ThreadPoolExecutor(max(1, self.orchestration.max_concurrent_timeframes)) as pool:
            list(pool.map(one, cfg.timeframes))
        return result

    def _loaded(self, wh, day: dt.date) -> dict[str, set[str]]:
        """Instrument keys that already have rows of ``day`` in each table."""
        out = {}
        start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
        for tf in self.config.timeframes:
            table = FAMILIES[self.config.family].table(tf)
            if table in wh.tables():
                keys = wh.query(f"SELECT DISTINCT instrument_key FROM {wh.table_ref(table)} WHERE timestamp >= "
                                f"{wh.param('start')} AND timestamp < {wh.param('end')}",
                                {"start": start, "end": start + dt.timedelta(days=1)})
                out[table] = set(keys["instrument_key"].to_list())
        return out

    async def upload_day(self, date: dt.date | dt.datetime, overwrite: bool = False) -> UploadResult:
        """Load the day's files of every instrument into the warehouse tables; with
        ``overwrite=False`` slices that already hold rows are left alone, with ``True`` they
        are replaced (never duplicated either way)."""
        return await asyncio.to_thread(self.upload, date, overwrite)

    async def upload_days(self, start_date: dt.date | dt.datetime, end_date: dt.date | dt.datetime,
                          overwrite: bool = False) -> list[UploadResult]:
        """Every day in [start_date, end_date), ``max_concurrent_days`` at a time; a day that
        fails is retried once with ``retry_failed_days``."""
        first, last = _day(start_date), _day(end_date)
        days = [first + dt.timedelta(days=i) for i in range((last - first).days)]
        gate = asyncio.Semaphore(max(1, self.orchestration.max_concurrent_days))

        async def one(day: dt.date) -> UploadResult:
            async with gate:
                result = await self.upload_day(day, overwrite)
                if not result.success and self.orchestration.retry_failed_days:
                    result = await self.upload_day(day, overwrite)
                return result

        return list(await asyncio.gather(*(one(d) for d in days)))
