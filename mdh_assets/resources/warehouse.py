"""The warehouse (DuckDB embedded by default, BigQuery in the cloud) as a Dagster resource."""

import dagster as dg

from mdh_lib.warehouse import Warehouse, open_warehouse


class WarehouseResource(dg.ConfigurableResource):
    """``url``: ``duckdb:///path/file.duckdb`` or ``bigquery://PROJECT/DATASET`` (MDH_WAREHOUSE)."""

    url: str

    def open(self) -> Warehouse:
        return open_warehouse(self.url)
