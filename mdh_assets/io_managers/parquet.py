"""Parquet IO manager over the storage root: asset key = dataset folder (`mdh_lib.layout`).

Outputs are Arrow tables written atomically (`mdh_lib.storage`); inputs load as Arrow tables.
It serves the daily single-file assets returned as one output (the retention report); the
venue-day assets write a file per instrument through `mdh_assets.io_managers.venue_day`,
with the same metadata.
"""


import dagster as dg
import polars as pl
import pyarrow as pa

from mdh_assets.metadata import file_metadata, preview
from mdh_assets.resources.storage import StorageResource
from mdh_lib.layout import dataset_path


def _partition_path(asset_key: dg.AssetKey, partition_key: str) -> str:
    return dataset_path(asset_key.path, partition_key)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Writes an Arrow table as the partition's Parquet file."""

    storage: StorageResource

    def handle_output(self, context: dg.OutputContext, obj: pa.Table) -> None:
        rel = _partition_path(context.asset_key, context.asset_partition_key)
        info = self.storage.storage.write_parquet(rel, obj, sorting_column="timestamp")
        context.add_output_metadata({**file_metadata(info, obj.schema), "preview": preview(pl.from_arrow(obj))})

    def load_input(self, context: dg.InputContext) -> pa.Table:
        rel = _partition_path(context.asset_key, context.asset_partition_key)
        return self.storage.storage.read_parquet(rel)
