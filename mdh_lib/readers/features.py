"""Feature readers: HFT features (candle microstructure columns joined with the book
features of the same timeframe) and MFT features, over any range.

`HFTFeaturesReader` returns ``timestamp, exchange, symbol`` plus only columns that
`CandleDataReader.get_candles` does not return by default, so the seed's
``pd.merge(candles, hft, on=['timestamp', 'symbol', 'exchange'], how='left')`` gives one row
per candle and no ``_x``/``_y`` suffixes.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mdh_lib.frames import ID_COLUMNS
from mdh_lib.instruments import InstrumentKey
from mdh_lib.readers.candles import HFT_COLUMNS
from mdh_lib.readers.data_client import KEY_COLUMNS, DataClient
from mdh_lib.readers.ranges import TimeLike
from mdh_lib.timeframes import MFT_TIMEFRAMES, width_us


class HFTFeaturesReader:
    def __init__(self, data_client: DataClient):
        self.client = data_client

    def get_hft_features(self, instrument_id: InstrumentKey | str, timeframe: str, start_date: TimeLike,
                         end_date: TimeLike, allow_missing: bool = False) -> pd.DataFrame:
        """Per bucket in [start_date, end_date): taker buy/sell volume, size, delays,
        liquidations, funding/mark/index/open interest, options columns (from ``candles/{tf}``)
        and the book features (``book/{tf}``, `mdh_lib.features.book`)."""
        width_us(timeframe)  # an unknown timeframe is a ValueError before any read
        args = (instrument_id, start_date, end_date)
        candles = self.client.read_range(("candles", timeframe), *args, columns=HFT_COLUMNS,
                                         allow_missing=allow_missing)
        book = self.client.read_range(("book", timeframe), *args, allow_missing=allow_missing)
        book = book.drop(columns=[c for c in ID_COLUMNS if c not in KEY_COLUMNS and c in book.columns])
        return candles.merge(book, on=KEY_COLUMNS, how="left", validate="one_to_one")


class MFTFeaturesReader:
    def __init__(self, data_client: DataClient):
        self.client = data_client

    def get_mft_features(self, instrument_id: InstrumentKey | str, timeframe: str, start_date: TimeLike,
                         end_date: TimeLike, allow_missing: bool = False, *,
                         columns: Sequence[str] | None = None) -> pd.DataFrame:
        """MFT features (`mdh_lib.features.mft`) per bucket in [start_date, end_date)."""
        if timeframe not in MFT_TIMEFRAMES:
            raise ValueError(f"MFT features exist for {', '.join(MFT_TIMEFRAMES)}, not {timeframe!r}")
        return self.client.read_range(("features", "mft", timeframe), instrument_id, start_date, end_date,
                                      columns=columns, allow_missing=allow_missing)
