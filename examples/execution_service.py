"""The seed's execution deployment (15s candles + HFT features), changed only in import
paths and storage root. Run after `make demo`: `.venv/bin/python examples/execution_service.py`
"""

import os
from datetime import datetime, timezone

import pandas as pd

from mdh_lib import CandleDataReader, DataClient, HFTFeaturesReader

# Initialize
data_client = DataClient(os.environ.get("MDH_DATA_ROOT", "./.mdh/data"))
candle_reader = CandleDataReader(data_client)
hft_reader = HFTFeaturesReader(data_client)

# Get 15s candles
candles_15s = candle_reader.get_candles(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    timeframe="15s",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
)

# Get HFT features
hft_features = hft_reader.get_hft_features(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    timeframe="15s",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
)

# Merge data
merged_data = pd.merge(candles_15s, hft_features, on=['timestamp', 'symbol', 'exchange'], how='left')

# Use for execution
print(f"{len(merged_data)} merged 15s rows")
print(f"Average delay: {merged_data['delay_median'].mean():.2f}ms")
print(f"Total liquidations: {merged_data['liquidation_count'].sum()}")
