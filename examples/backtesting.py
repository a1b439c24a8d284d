"""The seed's backtesting examples (tick data, HFT features, MFT features), changed only
in import paths and storage root; `run_backtest` and friends, placeholders in the seed,
print what they were given. Run after `make demo`: `.venv/bin/python examples/backtesting.py`
"""

import os
from datetime import datetime, timezone

import pandas as pd

from mdh_lib import DataClient, HFTFeaturesReader, MFTFeaturesReader, TickDataReader


def run_backtest(tick_data):
    print(f"tick backtest: {len(tick_data)} ticks")


def run_execution_backtest(hft_15s, hft_1m):
    print(f"execution backtest: {len(hft_15s)} 15s rows, {len(hft_1m)} 1m rows")


def run_features_backtest(mft_features):
    print(f"features backtest: {len(mft_features)} 1h rows")


# Initialize
data_client = DataClient(os.environ.get("MDH_DATA_ROOT", "./.mdh/data"))
tick_reader = TickDataReader(data_client)

# Define trading windows
trading_windows = [
    (datetime(2024, 1, 1, 8, 0, 0, tzinfo=timezone.utc), datetime(2024, 1, 1, 8, 5, 0, tzinfo=timezone.utc)),
    (datetime(2024, 1, 1, 14, 0, 0, tzinfo=timezone.utc), datetime(2024, 1, 1, 14, 5, 0, tzinfo=timezone.utc))
]

# Load tick data for backtesting
all_tick_data = []
for start_time, end_time in trading_windows:
    for chunk in tick_reader.get_tick_data_streaming(
        instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
        start_time=start_time,
        end_time=end_time,
        date=datetime(2024, 1, 1, tzinfo=timezone.utc)
    ):
        all_tick_data.append(chunk)

# Combine and use for backtesting
tick_data = pd.concat(all_tick_data, ignore_index=True)
run_backtest(tick_data)

hft_reader = HFTFeaturesReader(data_client)

# Get HFT features for backtesting period
hft_15s = hft_reader.get_hft_features(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    timeframe="15s",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2024, 1, 3, tzinfo=timezone.utc)
)

hft_1m = hft_reader.get_hft_features(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    timeframe="1m",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2024, 1, 3, tzinfo=timezone.utc)
)

# Use for backtesting
run_execution_backtest(hft_15s, hft_1m)

mft_reader = MFTFeaturesReader(data_client)
mft_features = mft_reader.get_mft_features(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    timeframe="1h",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2024, 1, 3, tzinfo=timezone.utc)
)

# Use for backtesting
run_features_backtest(mft_features)
