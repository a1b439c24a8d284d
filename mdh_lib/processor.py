"""The day's pipeline without Dagster, for services and notebooks: definitions, raw ingest,
candles, book, options and MFT features, warehouse loads, one (date, instrument) at a time.

Each step is the function the Dagster assets call (`mdh_lib.processing`, `mdh_lib.ingest`,
`mdh_lib.warehouse.loads`) and writes through the same `Catalog`, so a file made here is
byte-for-byte the file the asset makes. What it does not do is record anything in Dagster:
the missing-data report and the planner count only materializations, so a day filled here
shows as missing there until an asset run covers it (which finds nothing to fetch and
rewrites the same derived files). A step whose input is absent raises `MissingInput`
naming the file and the step that makes it; computed frames that fail their checks raise
`ProcessingError` and write nothing.

    from mdh_lib.processor import Processor
    p = Processor("/data/mdh")                      # or gs://bucket/prefix; None: MDH_DATA_ROOT
    p.instruments(day)                              # definitions from Tardis (or the sample server)
    p.ingest(day, "BINANCE:SPOT_PAIR:BTC-USDT")     # its raw files, through tardis-dev
    frames = p.candles(day, "BINANCE:SPOT_PAIR:BTC-USDT")   # {"15s": polars frame, ...}, written
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterable

import polars as pl
import pyarrow as pa

from mdh_lib import processing
from mdh_lib.catalog import Catalog, MissingInput
from mdh_lib.config import Settings, load_settings
from mdh_lib.definitions import build_definitions, expected_partitions, fallback_line, universe_metadata
from mdh_lib.instruments import InstrumentKey
from mdh_lib.storage import Storage, WriteInfo
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES
from mdh_lib.warehouse import Warehouse, open_warehouse
from mdh_lib.warehouse.loads import FAMILIES, load_slice

__all__ = ["MissingInput", "Processor", "ProcessingError"]


class ProcessingError(RuntimeError):
    """A step failed (a download, a file's content, a check): one line naming what failed."""


def _key(instrument: InstrumentKey | str) -> InstrumentKey:
    return instrument if isinstance(instrument, InstrumentKey) else InstrumentKey.parse(str(instrument))


def _timeframes(chosen: Iterable[str] | None, allowed: Iterable[str]) -> list[str]:
    allowed = list(allowed)
    chosen = allowed if chosen is None else list(chosen)
    bad = [tf for tf in chosen if tf not in allowed]
    if bad or not chosen:
        raise ValueError(f"timeframes {chosen!r}: choose among {', '.join(allowed)}")
    return chosen


class Processor:
    """Steps over one storage root (a folder, ``gs://bucket/prefix``, or a `Storage`)."""

    def __init__(self, root: str | Storage | None = None, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self.storage = root if isinstance(root, Storage) else Storage(
            root or self.settings.data_root, project=self.settings.gcp_project_id or None)
        self.catalog = Catalog(self.storage)

    def __repr__(self) -> str:
        return f"Processor({self.storage.root!r})"

    # -- definitions and raw ticks ------------------------------------------------------------

    def instruments(self, date: dt.date) -> pa.Table:
        """Build and write the day's definitions of the configured universe from Tardis metadata
        (`mdh_lib.definitions`; from ``/v1/exchanges`` where ``/v1/instruments`` is refused,
        with a warning saying what that leaves out); returns them."""
        from mdh_lib.tardis import client

        universe, api = self.settings.universe, self.settings.api_endpoint
        details, records, fallback = universe_metadata(
            universe, lambda ex: client.exchange_details(ex, endpoint=api),
            lambda ex: client.instrument_records(ex, endpoint=api, api_key=str(self.settings.tardis_api_key)))
        if fallback:
            warnings.warn(fallback_line(fallback), stacklevel=2)
        table = build_definitions(date, universe, details, records)
        self.catalog.write(("instruments",), date, None, table)
        self.catalog = Catalog(self.storage)  # read the new definitions, not a cached day
        return table

    def _definitions(self, date: dt.date) -> pa.Table:
        table = self.catalog.definitions(date)
        if table is None:
            raise MissingInput(f"no instrument definitions for {date}; run Processor.instruments or mdh instruments")
        return table

    def ingest(self, date: dt.date, instrument: InstrumentKey | str,
               data_types: Iterable[str] | None = None) -> dict[str, WriteInfo]:
        """Download the day's Tardis files of ``instrument`` (every data type the definitions
        list for it, or ``data_types``) through the official client, check them and write
        them as raw Parquet (`mdh_lib.ingest`); an options underlying key
        (``DERIBIT:OPTION:BTC``) fetches its options chain."""
        from mdh_lib.ingest import RawRequest, fetch_raw_days

        key = _key(instrument)
        listed = [e for e in expected_partitions(self._definitions(date)) if e.key == str(key)]
        if not listed:
            raise MissingInput(f"{key} is not in the instrument definitions of {date}")
        wanted = set(data_types) if data_types is not None else {e.data_type for e in listed}
        unknown = wanted - {e.data_type for e in listed}
        if unknown:
            raise ValueError(f"{key} has no {', '.join(sorted(unknown))} on {date} "
                             f"(its data types: {', '.join(sorted(e.data_type for e in listed))})")
        requests = [RawRequest(e.data_type, date, key, e.exchange, e.source_symbol)
                    for e in listed if e.data_type in wanted]
        written = {}
        for request, got in fetch_raw_days(requests, endpoint=self.settings.datasets_endpoint,
                                           api_key=str(self.settings.tardis_api_key),
                                           staging=self.storage.scratch_base):
            if isinstance(got, Exception):
                raise ProcessingError(f"raw/{request.data_type} {date} {key}: {got}")
            try:
                written[request.data_type] = self.catalog.commit(got.file, ("raw", request.data_type), date, key)
            finally:
                got.discard()
        return written

    # -- derived datasets ---------------------------------------------------------------------

    def _made(self, dataset: tuple[str, ...], computed: processing.Computed, date: dt.date,
              key: InstrumentKey, write: bool, per_tf: bool = True) -> dict[str, pl.DataFrame]:
        problem = computed.problem()
        if problem:
            raise ProcessingError(f"{'/'.join(dataset)} {date} {key}: {problem}")
        if write:
            for tf, frame in computed.frames.items():
                self.catalog.write((*dataset, tf) if per_tf else dataset, date, key, frame)
        return computed.frames

    def candles(self, date: dt.date, instrument: InstrumentKey | str, timeframes: Iterable[str] | None = None,
                *, write: bool = True) -> dict[str, pl.DataFrame]:
        """Candles with their HFT, derivative and options columns per timeframe, checked, and
        written to ``candles/{tf}`` unless ``write=False``."""
        key = _key(instrument)
        computed = processing.instrument_candles(self.catalog, date, key, _timeframes(timeframes, TIMEFRAMES))
        return self._made(("candles",), computed, date, key, write)

    def book(self, date: dt.date, instrument: InstrumentKey | str, timeframes: Iterable[str] | None = None,
             *, write: bool = True) -> dict[str, pl.DataFrame]:
        """Order-book features per timeframe (`mdh_lib.features.book`), written to ``book/{tf}``."""
        key = _key(instrument)
        computed = processing.instrument_book(self.catalog, date, key, _timeframes(timeframes, TIMEFRAMES))
        return self._made(("book",), computed, date, key, write)

    def options(self, date: dt.date, underlying: InstrumentKey | str, *, write: bool = True) -> pl.DataFrame:
        """ATM IV and 25-delta skew per 15 s of an options underlying (``DERIBIT:OPTION:BTC``),
        written to ``features/options``."""
        key = _key(underlying)
        computed = processing.underlying_options(self.catalog, date, key)
        return self._made(("features", "options"), computed, date, key, write, per_tf=False)["15s"]

    def mft(self, date: dt.date, instrument: InstrumentKey | str, timeframes: Iterable[str] | None = None,
            *, write: bool = True) -> dict[str, pl.DataFrame]:
        """MFT features from the stored candles and their history, written to
        ``features/mft/{tf}``."""
        key = _key(instrument)
        computed = processing.instrument_mft(self.catalog, date, key, _timeframes(timeframes, MFT_TIMEFRAMES))
        return self._made(("features", "mft"), computed, date, key, write)

    # -- warehouse ----------------------------------------------------------------------------

    def load_warehouse(self, date: dt.date, instrument: InstrumentKey | str, family: str = "candles",
                       timeframes: Iterable[str] | None = None, *, warehouse: Warehouse | str | None = None,
                       skip: Callable[[str], bool] = lambda table: False) -> dict[str, int]:
        """Replace the instrument's (day) slice of the ``family`` tables (``candles``,
        ``book_features``, ``mft_features``) with the stored files: rows per table. A
        ``warehouse`` URL or object (None: MDH_WAREHOUSE); ``skip(table)`` leaves a table
        out. Loading twice leaves no duplicate rows."""
        if family not in FAMILIES:
            raise ValueError(f"unknown warehouse family {family!r} (one of {', '.join(FAMILIES)})")
        fam, key = FAMILIES[family], _key(instrument)
        chosen = _timeframes(timeframes, fam.timeframes)
        wh = warehouse if isinstance(warehouse, Warehouse) else open_warehouse(warehouse)
        try:
            return {fam.table(tf): load_slice(wh, self.catalog, fam, tf, date, key)[0]
                    for tf in chosen if not skip(fam.table(tf))}
        finally:
            if wh is not warehouse:
                wh.close()

    def instruments_with(self, date: dt.date, data_type: str = "trades") -> list[str]:
        """The instrument keys that the day's definitions give ``data_type``."""
        return sorted({e.key for e in expected_partitions(self._definitions(date)) if e.data_type == data_type})
