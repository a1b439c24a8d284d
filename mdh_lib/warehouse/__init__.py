"""Warehouse tables behind one interface, chosen by a URL (MDH_WAREHOUSE):

- ``duckdb:///path/file.duckdb``: embedded, the default (``duckdb:///./.mdh/warehouse.duckdb``);
- ``bigquery://PROJECT/DATASET``: Google BigQuery (or its emulator, BIGQUERY_EMULATOR_HOST).

Each backend module is imported only when its URL is opened, so a DuckDB user never pays for
importing the BigQuery client.
"""

from __future__ import annotations

from urllib.parse import urlparse

from mdh_lib.config import load_settings
from mdh_lib.warehouse.base import Warehouse

__all__ = ["Warehouse", "open_warehouse"]


def open_warehouse(url: str | None = None) -> Warehouse:
    """The warehouse at ``url``; None means MDH_WAREHOUSE (environment, then mdh.toml), else
    the default DuckDB file."""
    url = url or load_settings().warehouse
    if url.startswith("duckdb:///"):
        from mdh_lib.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(url.removeprefix("duckdb:///"))
    parsed = urlparse(url)
    project, dataset = parsed.netloc, parsed.path.strip("/")
    if parsed.scheme == "bigquery" and project and dataset and "/" not in dataset:
        from mdh_lib.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse(project, dataset)
    raise ValueError(f"unsupported warehouse URL {url!r}: use duckdb:///path/file.duckdb or bigquery://PROJECT/DATASET")
