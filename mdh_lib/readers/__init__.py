"""Readers over the storage root for downstream services (SPEC section 8, seed compatible).

    dc = DataClient("gs://bucket/prefix")          # or a folder; see `DataClient` for the rule
    CandleDataReader(dc).get_candles(instrument_id="BINANCE:SPOT_PAIR:BTC-USDT", timeframe="1m",
                                     start_date=date(2024, 1, 2), end_date=date(2024, 1, 3))  # 1,440 rows

Every time range is half-open [start, end) in UTC (naive datetimes are UTC, dates their
midnight) and may span days; frames carry ``timestamp`` (UTC datetime), ``exchange`` and
``symbol``. A missing partition raises `MissingPartitionError` (a FileNotFoundError) unless
``allow_missing=True``. Plain library: no Dagster import.
"""

from mdh_lib.readers.candles import CandleDataReader
from mdh_lib.readers.data_client import DataClient
from mdh_lib.readers.features import HFTFeaturesReader, MFTFeaturesReader
from mdh_lib.parquet_window import ReadStats
from mdh_lib.readers.ranges import MissingPartitionError
from mdh_lib.readers.ticks import TickDataReader

__all__ = ["CandleDataReader", "DataClient", "HFTFeaturesReader", "MFTFeaturesReader", "MissingPartitionError",
           "ReadStats", "TickDataReader"]
