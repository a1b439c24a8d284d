"""Seed-compatible reader of warehouse candles: ``BigQueryClient(project_id).get_candles(...)``.

Despite the seed's name it reads whichever warehouse is configured, so services written
against BigQuery run unchanged on the embedded DuckDB file (and in tests).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

from mdh_lib.config import DEFAULT_WAREHOUSE, load_settings
from mdh_lib.timeframes import width_us
from mdh_lib.warehouse import Warehouse, open_warehouse

DEFAULT_DATASET = "market_data"


def _utc(value: dt.date) -> dt.datetime:
    """A date as its UTC midnight; a naive datetime as UTC; an aware one converted to UTC."""
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), dt.timezone.utc)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def resolve_warehouse(project_id: str | None = None, dataset: str | None = None) -> str:
    """The warehouse that the seed's BigQuery names mean, first match wins: MDH_WAREHOUSE
    (environment or mdh.toml) when configured; ``bigquery://{project_id}/{dataset or
    "market_data"}`` when ``project_id`` is given; the default DuckDB file. So services written
    against BigQuery run unchanged on the embedded DuckDB file (and in tests)."""
    configured = load_settings().warehouse
    if configured != DEFAULT_WAREHOUSE or not project_id:
        return configured
    return f"bigquery://{project_id}/{dataset or DEFAULT_DATASET}"


class BigQueryClient:
    """Candles from the warehouse tables ``candles_{timeframe}``: ``warehouse_url`` when given,
    else the warehouse of `resolve_warehouse` (the seed's ``BigQueryClient(config.gcp.project_id)``).
    """

    def __init__(self, project_id: str | None = None, dataset: str | None = None, warehouse_url: str | None = None):
        self.project_id = project_id
        self.warehouse: Warehouse = open_warehouse(warehouse_url or resolve_warehouse(project_id, dataset))

    def get_candles(self, instrument_id: str, timeframe: str, start_date: dt.datetime,
                    end_date: dt.datetime) -> pd.DataFrame:
        """Candles of instrument key ``instrument_id`` (``BINANCE:SPOT_PAIR:BTC-USDT``) with
        ``start_date <= timestamp < end_date`` (UTC; naive means UTC), sorted by timestamp;
        ``timestamp`` is a tz-aware UTC column, next to ``exchange`` and ``symbol``."""
        width_us(timeframe)  # ValueError naming the valid timeframes
        table = f"candles_{timeframe}"
        if table not in self.warehouse.tables():
            raise LookupError(f"no table {table} in {self.warehouse.url}: load candles into the warehouse first")
        wh = self.warehouse
        frame = wh.query(
            f"SELECT * FROM {wh.table_ref(table)} WHERE instrument_key = {wh.param('key')} "
            f"AND timestamp >= {wh.param('start')} AND timestamp < {wh.param('end')} ORDER BY timestamp",
            {"key": instrument_id, "start": _utc(start_date), "end": _utc(end_date)},
        )
        # Nullable integers stay integers (pandas Int64), as google-cloud-bigquery returns them.
        return frame.to_arrow().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)

    def close(self) -> None:
        self.warehouse.close()
