"""Parquet IO manager over the storage root: asset key = dataset folder (`mdh_lib.layout`).

Outputs are Arrow tables written atomically (`mdh_lib.storage`); inputs load as Arrow tables.
"""


import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from mdh_assets.partitions import DATE, INSTRUMENT
from mdh_assets.resources.storage import StorageResource
from mdh_lib.ingest import RawDay
from mdh_lib.layout import dataset_path


def _partition_path(asset_key: dg.AssetKey, partition_key) -> str:
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        return dataset_path(asset_key.path, dims[DATE], dims[INSTRUMENT])
    return dataset_path(asset_key.path, partition_key)


def _iso(micros: int | None) -> str:
    return "" if micros is None else dt.datetime.fromtimestamp(micros / 1e6, dt.timezone.utc).isoformat()


class ParquetIOManager(dg.ConfigurableIOManager):
    """Writes an Arrow table, or commits a raw day already staged as local Parquet
    (`mdh_lib.ingest.RawDay`, streamed there with bounded memory)."""

    storage: StorageResource

    def handle_output(self, context: dg.OutputContext, obj: pa.Table | RawDay) -> None:
        rel = _partition_path(context.asset_key, context.asset_partition_key)
        if isinstance(obj, RawDay):
            schema = pq.read_schema(obj.file.uri)
            try:
                info = self.storage.storage.commit(obj.file, rel)
            finally:
                obj.discard()
        else:
            schema = obj.schema
            info = self.storage.storage.write_parquet(rel, obj, sorting_column="timestamp")
        context.add_output_metadata({
            "dagster/row_count": info.rows, "uri": dg.MetadataValue.path(info.uri), "bytes": info.bytes,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(f.name, str(f.type)) for f in schema]),
            "row_groups": info.row_groups,
            **({"first_timestamp": _iso(info.first_timestamp), "last_timestamp": _iso(info.last_timestamp)}
               if info.first_timestamp is not None else {}),
        })

    def load_input(self, context: dg.InputContext) -> pa.Table:
        rel = _partition_path(context.asset_key, context.asset_partition_key)
        return self.storage.storage.read_parquet(rel)
