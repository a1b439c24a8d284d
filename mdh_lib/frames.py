"""Identity columns shared by every derived per-instrument frame (candles, book, MFT).

Rows carry ``timestamp`` (UTC), ``exchange`` (Tardis id) and ``symbol`` (exchange symbol, as
in the raw files) so the seed's merges on ['timestamp', 'symbol', 'exchange'] work, plus the
``instrument_key`` and ``timeframe``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from mdh_lib.definitions import instrument_row
from mdh_lib.instruments import InstrumentKey

ID_COLUMNS = ["timestamp", "exchange", "symbol", "instrument_key", "timeframe"]


@dataclass(frozen=True)
class Instrument:
    exchange: str  # Tardis exchange id
    symbol: str  # exchange symbol, as in the raw files
    instrument_key: str

    @classmethod
    def from_definitions(cls, definitions: pa.Table | None, key: InstrumentKey) -> "Instrument":
        row = instrument_row(definitions, key) if definitions is not None else None
        if row is None:
            return cls(key.exchange, key.symbol, str(key))
        return cls(row["exchange"], row["exchange_symbol"], str(key))


def with_ids(frame: pl.DataFrame, instrument: Instrument, timeframe: str) -> pl.DataFrame:
    """``frame`` (with ``timestamp``) with the identity columns in front."""
    ids = frame.with_columns(exchange=pl.lit(instrument.exchange), symbol=pl.lit(instrument.symbol),
                             instrument_key=pl.lit(instrument.instrument_key), timeframe=pl.lit(timeframe))
    return ids.select([*ID_COLUMNS, *(c for c in frame.columns if c not in ID_COLUMNS)])
