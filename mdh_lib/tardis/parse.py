"""Tardis CSV.gz files to Arrow tables, with one clear error for any bad file.

A day without data is an empty gzip with no header at all: that is zero rows, not an error.
Anything else that is not exactly Tardis's format (corrupt or truncated gzip, a wrong
header, a value of the wrong type, a failed Pandera check) raises `RawFileError` naming the
file. The result is sorted by exchange ``timestamp`` (stable, so ties keep Tardis's
``local_timestamp`` order).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import zlib

import pandera.errors
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mdh_lib.schemas import RAW_SCHEMAS, header, raw_schema


class RawFileError(ValueError):
    """A downloaded file that is not a valid Tardis dataset file."""


def _first_line(path: str, name: str) -> str | None:
    """The header line, or None for a day without data (empty gzip)."""
    try:
        with gzip.open(path, "rb") as fh:
            line = fh.readline(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        raise RawFileError(f"{name}: corrupt or truncated: not a readable gzip file ({exc})") from None
    if not line:
        return None
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def _check_header(line: str, data_type: str, name: str) -> None:
    got, want = line.split(","), header(data_type)
    if got == want:
        return
    missing = [c for c in want if c not in got]
    extra = [c for c in got if c not in want]
    detail = "; ".join(
        part for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(extra)}" if extra else "",
            "columns out of order" if not missing and not extra else "",
        ) if part
    )
    raise RawFileError(f"{name}: wrong header for {data_type} ({detail})")


def _arrow_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def read_raw_csv(path: str, data_type: str, date: dt.date | None = None, name: str | None = None) -> pa.Table:
    """Parse one Tardis ``.csv.gz`` file of ``data_type``; ``date`` enables the in-day check."""
    name = name or os.path.basename(path)
    schema = RAW_SCHEMAS[data_type]
    line = _first_line(path, name) if os.path.getsize(path) else None
    if line is None:
        return schema.empty_table()
    _check_header(line, data_type, name)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=8 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types=schema, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error) as exc:
        msg = _arrow_message(exc)
        kind = "bad value" if "conversion error" in msg or "CSV parse error" in msg else "corrupt or truncated"
        raise RawFileError(f"{name}: {kind}: {msg}") from None
    table = table.select(schema.names).cast(schema)
    try:
        raw_schema(data_type, date).validate(pl.from_arrow(table), lazy=True)
    except pandera.errors.SchemaErrors as exc:
        failed = sorted({f"{e.get('column') or 'frame'}: {e.get('check')}" for errs in exc.message.get("DATA", {}).values() for e in errs}
                        | {f"{e.get('column') or 'frame'}: {e.get('check')}" for errs in exc.message.get("SCHEMA", {}).values() for e in errs})
        raise RawFileError(f"{name}: failed schema checks: {'; '.join(failed)[:300]}") from None
    if table.num_rows and not _is_sorted(table["timestamp"]):
        table = table.take(pc.sort_indices(table, sort_keys=[("timestamp", "ascending")]))
    return table


def _is_sorted(col: pa.ChunkedArray) -> bool:
    values = col.combine_chunks()
    if len(values) < 2:
        return True
    return bool(pc.all(pc.greater_equal(values[1:], values[:-1])).as_py())
