"""The seed's features service, changed only in import paths and storage root (and a real
body for its placeholder `_calculate_mft_features`). Reads 1m candles from the warehouse
(`mdh bigquery-upload` loads them; DuckDB by default) and pushes features to storage.

Run after `make demo`: `.venv/bin/python examples/features_service.py`
"""

import os
from datetime import datetime, timezone

from mdh_lib import BigQueryClient, CandleDataReader, DataClient


class FeaturesService:
    def __init__(self):
        # Initialize market data package clients
        self.data_client = DataClient(os.environ.get("MDH_DATA_ROOT", "./.mdh/data"))
        self.candle_reader = CandleDataReader(self.data_client)
        self.bq_client = BigQueryClient(os.environ.get("GCP_PROJECT_ID"))

    def process_hft_features(self, instrument_id: str, start_date: datetime, end_date: datetime):
        """Process HFT features using market data package"""

        # 1. Query instruments from GCS
        instruments = self.data_client.get_instrument_definitions(
            start_date=start_date,
            end_date=end_date
        )

        # 2. Get candle data from BigQuery (already has HFT features)
        candles = self.bq_client.get_candles(
            instrument_id=instrument_id,
            timeframe="1m",
            start_date=start_date,
            end_date=end_date
        )

        # 3. Process additional MFT features
        mft_features = self._calculate_mft_features(candles)

        # 4. Push features to GCS for backtesting
        uri = self.data_client.upload_features(
            features=mft_features,
            path=f"features/{instrument_id.replace(':', '_')}/1m/{start_date.strftime('%Y-%m-%d')}"
        )
        print(f"{len(instruments)} instrument definitions, {len(candles)} candles, features -> {uri}")
        return mft_features

    def _calculate_mft_features(self, candles):
        """Calculate medium-frequency trading features (the seed's own use-case example)."""
        features = candles[["timestamp", "symbol", "exchange", "close", "volume"]].copy()
        features["price_change_pct"] = (candles["close"] - candles["open"]) / candles["open"] * 100
        features["volume_ma"] = candles["volume"].rolling(window=20).mean()
        return features


if __name__ == "__main__":
    FeaturesService().process_hft_features(
        "BINANCE:SPOT_PAIR:BTC-USDT",
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        datetime(2024, 1, 2, tzinfo=timezone.utc),
    )
