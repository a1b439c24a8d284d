"""What a warehouse table is loaded from, and the load of one (table, day, instrument) slice:
the one implementation the warehouse assets and `mdh_lib.processor` share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mdh_lib.catalog import Catalog, MissingInput
from mdh_lib.instruments import InstrumentKey
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES
from mdh_lib.warehouse.base import Warehouse


@dataclass(frozen=True)
class Family:
    """Warehouse tables ``{name}_{tf}`` loaded from the Parquet dataset ``(*source, tf)``; an
    instrument has them when the day's definitions give it the raw data type ``needs``."""

    name: str
    source: tuple[str, ...]
    timeframes: tuple[str, ...]
    needs: str
    made_by: str  # the command that writes the source files

    def table(self, tf: str) -> str:
        return f"{self.name}_{tf}"


FAMILIES = {f.name: f for f in (
    Family("candles", ("candles",), tuple(TIMEFRAMES), "trades", "mdh candle-processing"),
    Family("book_features", ("book",), tuple(TIMEFRAMES), "book_snapshot_5", "mdh candle-processing"),
    Family("mft_features", ("features", "mft"), tuple(MFT_TIMEFRAMES), "trades",
           "mdh candle-processing and mdh mft-processing"),
)}


def load_slice(warehouse: Warehouse, catalog: Catalog, family: Family, tf: str, date: dt.date,
               key: InstrumentKey | str) -> tuple[int, str]:
    """Replace the (day, instrument) slice of ``family``'s ``tf`` table with the stored file;
    returns (rows, the file's URI). `MissingInput` when the file is not written."""
    dataset = (*family.source, tf)
    if not catalog.exists(dataset, date, key):
        raise MissingInput(f"{'/'.join(dataset)} {date} {key} is not materialized; run {family.made_by} first")
    rel = catalog.path(dataset, date, key)
    rows = warehouse.replace_slice(family.table(tf), catalog.storage.read_parquet(rel), date=date,
                                   instrument_key=str(key))
    return rows, catalog.storage.uri(rel)
