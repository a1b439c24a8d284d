"""Resources, each key defined once; `build_resources` chooses them for the environment."""

from __future__ import annotations

from mdh_assets.resources.storage import StorageResource
from mdh_assets.resources.tardis import TardisResource
from mdh_assets.resources.warehouse import WarehouseResource
from mdh_lib.config import Settings

STORAGE = "storage"
TARDIS = "tardis"
PARQUET_IO_MANAGER = "io_manager"  # the default key: every asset output is Parquet
WAREHOUSE = "warehouse"


def build_resources(settings: Settings) -> dict:
    from mdh_assets.io_managers.parquet import ParquetIOManager

    storage = StorageResource(
        data_root=settings.data_root,
        emulator_host=settings.storage_emulator_host,
        project=settings.gcp_project_id,
    )
    return {
        STORAGE: storage,
        TARDIS: TardisResource(datasets_endpoint=settings.datasets_endpoint, api_endpoint=settings.api_endpoint),
        PARQUET_IO_MANAGER: ParquetIOManager(storage=storage),
        WAREHOUSE: WarehouseResource(url=settings.warehouse),
    }
