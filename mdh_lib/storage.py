"""One storage root, a local folder or ``gs://bucket/prefix``, with atomic Parquet writes.

Atomicity: locally a file is written under a hidden temporary name in the same folder and
renamed over the target (``os.replace``); on GCS an object only becomes visible once its
upload completes, so the upload of a finished local file is the commit. Either way a reader
never sees a partial file and a failed write leaves the previous good file in place.

With ``STORAGE_EMULATOR_HOST`` set, gs:// goes to that endpoint with anonymous credentials.
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

# A day is cut into this many row groups at least, so a 5-minute window of a day sorted by
# timestamp touches one or two of them (about 1-2% of the file); tiny days get one group.
ROW_GROUPS_PER_DAY = 96
MIN_ROW_GROUP = 8_192
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True, write_page_index=True)


@dataclass(frozen=True)
class WriteInfo:
    uri: str
    rows: int
    bytes: int
    row_groups: int


def row_group_size(rows: int) -> int:
    return max(MIN_ROW_GROUP, math.ceil(rows / ROW_GROUPS_PER_DAY))


class Storage:
    """A storage root: paths given to it are relative (see `mdh_lib.layout`)."""

    def __init__(self, root: str, *, emulator_host: str | None = None, project: str | None = None):
        self.root = root.rstrip("/")
        self.is_gcs = self.root.startswith("gs://")
        if self.is_gcs:
            emulator_host = emulator_host if emulator_host is not None else os.environ.get("STORAGE_EMULATOR_HOST", "")
            options: dict = {"project": project or os.environ.get("GCP_PROJECT_ID") or ("mdh-local" if emulator_host else None)}
            if emulator_host:
                # gcsfs 2026.x probes bucket types over gRPC first, which an emulator cannot answer.
                os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
                endpoint = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
                options.update(endpoint_url=endpoint, token="anon")
            self.fs = fsspec.filesystem("gcs", **options)
            self.base = self.root[len("gs://"):]
        else:
            self.fs = fsspec.filesystem("file")
            self.base = os.path.abspath(self.root)

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel`` (no scheme), for pyarrow/fsspec calls."""
        return f"{self.base}/{rel}"

    def uri(self, rel: str) -> str:
        return f"gs://{self.path(rel)}" if self.is_gcs else self.path(rel)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel))

    def list(self, prefix: str) -> list[str]:
        """Relative paths of the files under ``prefix`` (recursive), sorted."""
        full = self.path(prefix)
        if not self.fs.exists(full):
            return []
        return sorted(p[len(self.base) + 1:] for p in self.fs.find(full))

    def write_parquet(self, rel: str, table: pa.Table, sorting_column: str | None = None) -> WriteInfo:
        """Write ``table`` atomically; row groups sized by `row_group_size`."""
        options = dict(PARQUET_OPTIONS)
        if sorting_column and sorting_column in table.column_names:
            options["sorting_columns"] = [pq.SortingColumn(table.column_names.index(sorting_column))]
        target = self.path(rel)
        parent = os.path.dirname(target)
        if self.is_gcs:
            tmp_dir = tempfile.mkdtemp(prefix="mdh-upload-")
            tmp = os.path.join(tmp_dir, "part.parquet")
        else:
            os.makedirs(parent, exist_ok=True)
            tmp = os.path.join(parent, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, tmp, row_group_size=row_group_size(table.num_rows), **options)
            meta = pq.read_metadata(tmp)
            nbytes = os.path.getsize(tmp)
            if self.is_gcs:
                self.fs.put_file(tmp, target)
                self.fs.invalidate_cache(parent)
            else:
                os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
            if self.is_gcs:
                os.rmdir(tmp_dir)
        return WriteInfo(self.uri(rel), table.num_rows, nbytes, meta.num_row_groups)

    def parquet_file(self, rel: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open(self.path(rel), "rb"))

    def read_parquet(self, rel: str, columns: list[str] | None = None, filters=None) -> pa.Table:
        return pq.read_table(self.path(rel), filesystem=self.fs, columns=columns, filters=filters)
