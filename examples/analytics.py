"""The seed's analytics and performance examples (tick reads with and without predicate
pushdown, sparse candles, byte ranges, streaming), changed only in import paths and storage
root; `process_chunk`, a placeholder in the seed, counts rows.
Run after `make demo`: `.venv/bin/python examples/analytics.py`
"""

import os
from datetime import datetime, timezone

from mdh_lib import DataClient, TickDataReader

data_client = DataClient(os.environ.get("MDH_DATA_ROOT", "./.mdh/data"))
tick_reader = TickDataReader(data_client)
rows_processed = 0


def process_chunk(chunk):
    global rows_processed
    rows_processed += len(chunk)


# Basic filtering (loads entire file, then filters)
tick_data = tick_reader.get_tick_data(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    start_time=datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc),
    end_time=datetime(2024, 1, 1, 12, 5, 0, tzinfo=timezone.utc),
    date=datetime(2024, 1, 1, tzinfo=timezone.utc)
)

# Optimized filtering (uses predicate pushdown - recommended for sparse data)
tick_data_optimized = tick_reader.get_tick_data_optimized(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    start_time=datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc),
    end_time=datetime(2024, 1, 1, 12, 5, 0, tzinfo=timezone.utc),
    date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    use_predicate_pushdown=True
)
print(f"5-minute window: {len(tick_data)} ticks, optimized read {len(tick_data_optimized)} ticks")

# Get data for specific candle times only (e.g., every 5-20 candles)
candle_times = [
    datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc),
    datetime(2024, 1, 1, 12, 15, 0, tzinfo=timezone.utc),
    datetime(2024, 1, 1, 12, 30, 0, tzinfo=timezone.utc),
]

sparse_data = tick_reader.get_sparse_candles(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    candle_times=candle_times,
    date=datetime(2024, 1, 1, tzinfo=timezone.utc).date(),
    data_types=['trades'],
    buffer_minutes=2  # 2-minute buffer around each candle
)

# Result: Dictionary mapping candle_time -> DataFrame
for candle_time, df in sparse_data.items():
    print(f"Candle {candle_time}: {len(df)} records")

# Get byte ranges for efficient data access
ranges = tick_reader.get_sparse_data_ranges(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    date=datetime(2024, 1, 1, tzinfo=timezone.utc).date(),
    data_types=['trades'],
    time_partition_minutes=1  # 1-minute partitions
)

# Result: Dictionary mapping data_type -> list of (start_time, end_time, byte_start, byte_end)
for data_type, partitions in ranges.items():
    print(f"{data_type}: {len(partitions)} partitions")
    for start_time, end_time, byte_start, byte_end in partitions[:3]:
        print(f"  {start_time.strftime('%H:%M')} - {end_time.strftime('%H:%M')}: {byte_end - byte_start:,} bytes")

# Stream data in chunks to avoid memory issues
for chunk in tick_reader.get_tick_data_streaming(
    instrument_id="BINANCE:SPOT_PAIR:BTC-USDT",
    start_time=datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc),
    end_time=datetime(2024, 1, 1, 13, 0, 0, tzinfo=timezone.utc),
    date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    chunk_size=10000
):
    process_chunk(chunk)
print(f"streamed {rows_processed} ticks")
