"""`CandleDataReader`: stored candles (``candles/{tf}``) over any range.

The stored rows hold both the bar (OHLCV, vwap, trade_count) and the HFT columns. The
reader splits them so that the seed's
``pd.merge(candles, hft_features, on=['timestamp', 'symbol', 'exchange'])`` has each column
once: `get_candles` returns the bar part by default (``columns=`` picks any stored columns,
e.g. `mdh_lib.candles.build.CANDLE_COLUMNS` for everything in one read) and
`HFTFeaturesReader` the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mdh_lib.candles.build import CANDLE_COLUMNS
from mdh_lib.frames import ID_COLUMNS
from mdh_lib.instruments import InstrumentKey
from mdh_lib.readers.data_client import DataClient
from mdh_lib.readers.ranges import TimeLike
from mdh_lib.timeframes import width_us

OHLCV_COLUMNS = ["open", "high", "low", "close", "volume", "vwap", "trade_count"]
HFT_COLUMNS = [c for c in CANDLE_COLUMNS if c not in ID_COLUMNS and c not in OHLCV_COLUMNS]


class CandleDataReader:
    def __init__(self, data_client: DataClient):
        self.client = data_client

    def get_candles(self, instrument_id: InstrumentKey | str, timeframe: str, start_date: TimeLike, end_date: TimeLike,
                    allow_missing: bool = False, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Candles with bucket start in [start_date, end_date), one row per bucket (the full
        grid, so a day of 1m is 1,440 rows): ``timestamp, exchange, symbol, instrument_key,
        timeframe`` and OHLCV, vwap, trade_count unless ``columns`` says otherwise (the keys
        timestamp, exchange, symbol always come first)."""
        width_us(timeframe)  # an unknown timeframe is a ValueError before any read
        return self.client.read_range(("candles", timeframe), instrument_id, start_date, end_date,
                                      columns=ID_COLUMNS + OHLCV_COLUMNS if columns is None else columns,
                                      allow_missing=allow_missing)
