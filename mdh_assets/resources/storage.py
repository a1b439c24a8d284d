"""The storage root (local folder or gs://) as a Dagster resource."""


from functools import cached_property

import dagster as dg

from mdh_lib.storage import Storage


class StorageResource(dg.ConfigurableResource):
    """Where every dataset lives; paths come from `mdh_lib.layout`."""

    data_root: str
    emulator_host: str = ""
    project: str = ""

    @cached_property
    def storage(self) -> Storage:
        return Storage(self.data_root, emulator_host=self.emulator_host or None, project=self.project or None)
