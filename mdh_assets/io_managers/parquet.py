"""Parquet IO manager over the storage root: asset key = dataset folder (`mdh_lib.layout`).

Outputs are Arrow tables written atomically (`mdh_lib.storage`); inputs load as Arrow tables.
"""


import dagster as dg
import pyarrow as pa

from mdh_assets.partitions import DATE, INSTRUMENT
from mdh_assets.resources.storage import StorageResource
from mdh_lib.layout import dataset_path


def _partition_path(asset_key: dg.AssetKey, partition_key) -> str:
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        return dataset_path(asset_key.path, dims[DATE], dims[INSTRUMENT])
    return dataset_path(asset_key.path, partition_key)


class ParquetIOManager(dg.ConfigurableIOManager):
    storage: StorageResource

    def handle_output(self, context: dg.OutputContext, obj: pa.Table) -> None:
        rel = _partition_path(context.asset_key, context.asset_partition_key)
        info = self.storage.storage.write_parquet(rel, obj, sorting_column="timestamp")
        context.add_output_metadata(
            {"uri": dg.MetadataValue.path(info.uri), "bytes": info.bytes, "row_groups": info.row_groups}
        )

    def load_input(self, context: dg.InputContext) -> pa.Table:
        rel = _partition_path(context.asset_key, context.asset_partition_key)
        return self.storage.storage.read_parquet(rel)
