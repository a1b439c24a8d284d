"""The BigQuery warehouse: ``bigquery://PROJECT/DATASET``.

Tables are created explicitly (so both BigQuery and the local emulator get the same
definition): partitioned by DAY on ``timestamp`` when it is a TIMESTAMP column, clustered by
``exchange, symbol`` when the frame has both (ticks tables with int64 microsecond timestamps
are clustered only).

A slice replace is a Parquet LOAD JOB (streaming inserts serve only live micro-batches,
`stream_rows`) into a fresh staging table (``_mdh_staging_*``, expiring after a day in case
the process dies), then ONE ``MERGE`` statement that deletes the slice and inserts the
staged rows::

    MERGE target T USING staging S ON FALSE
    WHEN NOT MATCHED BY SOURCE AND <T in slice> THEN DELETE
    WHEN NOT MATCHED THEN INSERT (cols) VALUES (cols)

A single DML statement is atomic in BigQuery, so readers see the old slice or the new one,
never neither or both; it needs no multi-statement transaction (which the emulator runs
without query parameters). Concurrent DML on overlapping partitions of one table can fail in
BigQuery with "could not serialize access ... due to concurrent update": the MERGE is then
retried with back-off; each load has its own staging table, so loads never conflict.

A dataset that does not exist is created on the first write, in ``MDH_BQ_LOCATION``
(default ``US``); an existing dataset is used as it is (its location is never changed).

With ``BIGQUERY_EMULATOR_HOST`` set (``http://host:port`` or ``host:port``) the client talks
to that endpoint with anonymous credentials; results are always read over REST
(``create_bqstorage_client=False``), since the Storage API would go to the real host.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from functools import cached_property
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPICallError, NotFound
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from mdh_lib.config import load_settings
from mdh_lib.warehouse.base import Warehouse
from mdh_lib.warehouse.frames import added_columns, table_name

STAGING_PREFIX = "_mdh_staging_"
STREAM_CHUNK = 500  # rows per insertAll request (BigQuery's recommended maximum)
CLUSTERING = ["exchange", "symbol"]
_retry_concurrent = Retry(
    predicate=lambda e: isinstance(e, GoogleAPICallError) and "concurrent update" in str(e).lower(),
    initial=0.5, maximum=30.0, timeout=600.0,
)


def bigquery_client(project: str, emulator_host: str | None = None) -> bigquery.Client:
    """A client for ``project``: the emulator at ``emulator_host`` (default
    BIGQUERY_EMULATOR_HOST) with anonymous credentials, else Google's default credentials."""
    host = emulator_host if emulator_host is not None else load_settings().bigquery_emulator_host
    if not host:
        return bigquery.Client(project=project)
    host = host if "://" in host else f"http://{host}"
    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=host))


def _bq_type(t: pa.DataType) -> str:
    checks = [(pa.types.is_timestamp, "TIMESTAMP"), (pa.types.is_date, "DATE"), (pa.types.is_boolean, "BOOL"),
              (pa.types.is_integer, "INT64"), (pa.types.is_floating, "FLOAT64"), (pa.types.is_string, "STRING"),
              (pa.types.is_binary, "BYTES"), (pa.types.is_decimal, "BIGNUMERIC")]
    for check, name in checks:
        if check(t):
            return name
    raise ValueError(f"no BigQuery column type for Arrow type {t}")


def bq_schema(schema: pa.Schema) -> list[bigquery.SchemaField]:
    """The BigQuery columns of a normalised frame (`mdh_lib.warehouse.frames.as_arrow`)."""
    return [bigquery.SchemaField(f.name, _bq_type(f.type)) for f in schema]


def _parameter(name: str, value: Any):
    if isinstance(value, (list, tuple)):
        kind = _scalar_kind(value[0]) if value else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, list(value))
    return bigquery.ScalarQueryParameter(name, _scalar_kind(value), value)


def _scalar_kind(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo else "DATETIME"
    kinds = [(bool, "BOOL"), (int, "INT64"), (float, "FLOAT64"), (str, "STRING"), (bytes, "BYTES"), (dt.date, "DATE")]
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    raise TypeError(f"unsupported query parameter value {value!r}")


class BigQueryWarehouse(Warehouse):
    def __init__(self, project: str, dataset: str):
        self.project, self.dataset = project, dataset
        self.url = f"bigquery://{project}/{dataset}"

    @cached_property
    def client(self) -> bigquery.Client:
        """Made on first use: opening a warehouse looks up no credentials."""
        return bigquery_client(self.project)

    def _id(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"

    @cached_property
    def _ready_dataset(self) -> bigquery.Dataset:
        """The dataset, created in MDH_BQ_LOCATION (default US) when it does not exist. Looked
        up first, so a caller allowed to write tables but not to create datasets works."""
        ref = f"{self.project}.{self.dataset}"
        try:
            return self.client.get_dataset(ref)
        except NotFound:
            dataset = bigquery.Dataset(ref)
            dataset.location = load_settings().bq_location or "US"
            return self.client.create_dataset(dataset, exists_ok=True)

    def _ensure_table(self, table: str, frame: pa.Table) -> bigquery.Table:
        """The existing table (with the columns ``frame`` adds, `added_columns`) or a new one
        made for it."""
        self._ready_dataset  # noqa: B018 (created once per warehouse object)
        try:
            existing = self.client.get_table(self._id(table))
        except NotFound:
            new = bigquery.Table(self._id(table), schema=bq_schema(frame.schema))
            if "timestamp" in frame.column_names and pa.types.is_timestamp(frame.schema.field("timestamp").type):
                new.time_partitioning = bigquery.TimePartitioning(bigquery.TimePartitioningType.DAY, field="timestamp")
            if set(CLUSTERING) <= set(frame.column_names):
                new.clustering_fields = CLUSTERING
            return self.client.create_table(new, exists_ok=True)
        added = added_columns(table, [f.name for f in existing.schema], frame)
        if added:  # DDL (not a schema patch): BigQuery and its emulator both apply it
            types = {f.name: f.field_type for f in bq_schema(frame.schema)}
            self._run(f"ALTER TABLE {self.table_ref(table)} "
                      + ", ".join(f"ADD COLUMN `{c}` {types[c]}" for c in added))
            existing = self.client.get_table(self._id(table))
        return existing

    def _load_job(self, frame: pa.Table, destination: bigquery.TableReference, disposition: str) -> None:
        """One Parquet load job from a local temporary file."""
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, write_disposition=disposition)
        with tempfile.TemporaryFile() as fh:
            pq.write_table(frame, fh)
            self.client.load_table_from_file(fh, destination, job_config=config, rewind=True).result()

    def _replace(self, table, frame, start, end, instrument_key) -> None:
        self._ensure_table(table, frame)
        staging = bigquery.Table(self._id(f"{STAGING_PREFIX}{table}_{uuid.uuid4().hex}"), schema=bq_schema(frame.schema))
        staging.expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        self.client.create_table(staging)
        try:
            self._load_job(frame, staging.reference, bigquery.WriteDisposition.WRITE_APPEND)
            cols = ", ".join(f"`{c}`" for c in frame.column_names)
            self._run(
                f"MERGE {self.table_ref(table)} T USING `{self._id(staging.table_id)}` S ON FALSE "
                "WHEN NOT MATCHED BY SOURCE AND T.`timestamp` >= @start AND T.`timestamp` < @end "
                "AND T.instrument_key = @instrument_key THEN DELETE "
                f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({cols})",
                {"start": start, "end": end, "instrument_key": instrument_key},
            )
        finally:
            self.client.delete_table(staging, not_found_ok=True)

    def _append(self, table, frame) -> None:
        existing = self._ensure_table(table, frame)
        ordered = frame.select([f.name for f in existing.schema])  # the emulator loads Parquet by position
        self._load_job(ordered, existing.reference, bigquery.WriteDisposition.WRITE_APPEND)

    def _stream(self, table, frame) -> None:
        """Streaming inserts (tabledata.insertAll), ``STREAM_CHUNK`` rows per request: live
        micro-batches would exhaust the daily load-job quota of a table."""
        existing = self._ensure_table(table, frame)
        rows = frame.select([f.name for f in existing.schema]).to_pylist()
        for i in range(0, len(rows), STREAM_CHUNK):
            errors = self.client.insert_rows(existing, rows[i:i + STREAM_CHUNK])
            if errors:
                raise RuntimeError(f"streaming insert into {table} rejected {len(errors)} row(s): {errors[0]}")

    @_retry_concurrent
    def _run(self, sql: str, params: dict[str, Any] | None = None) -> bigquery.table.RowIterator:
        config = bigquery.QueryJobConfig(query_parameters=[_parameter(k, v) for k, v in (params or {}).items()])
        return self.client.query(sql, job_config=config).result()

    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        return pl.from_arrow(self._run(sql, params).to_arrow(create_bqstorage_client=False))

    def table_ref(self, name: str) -> str:
        return f"`{self._id(table_name(name))}`"

    def param(self, name: str) -> str:
        return f"@{name}"

    def tables(self) -> list[str]:
        """The tables (none while the dataset does not exist yet)."""
        try:
            names = [t.table_id for t in self.client.list_tables(f"{self.project}.{self.dataset}")]
        except NotFound:
            return []
        return sorted(n for n in names if not n.startswith(STAGING_PREFIX))

    def describe(self, table: str) -> dict[str, Any]:
        try:
            meta = self.client.get_table(self._id(table_name(table)))
        except NotFound:
            raise LookupError(f"no table {table} in {self.url}") from None
        tp = meta.time_partitioning
        rows = next(iter(self._run(f"SELECT COUNT(*) FROM {self.table_ref(table)}")))[0]
        return {"partitioning": f"{tp.type_}({tp.field or '_PARTITIONTIME'})" if tp else None,
                "clustering": list(meta.clustering_fields) if meta.clustering_fields else None,
                "rows": rows}

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
