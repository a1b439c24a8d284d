"""Materialization metadata a person can read in the UI: what was written (rows, bytes, time
coverage, column schema), a preview table of the rows, and for candles a price and volume
chart. Every Parquet materialization gets the same keys, whoever writes the file."""

from __future__ import annotations

import base64
import datetime as dt
import struct
import zlib

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa

from mdh_lib.storage import WriteInfo

PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 12
# A chart of the day at two scales: 1m (intraday detail) and 1h (overview). A 15s chart looks
# like the 1m one, a 24h one has a single point.
CHART_TIMEFRAMES = ("1m", "1h")


def _iso(micros: int | None) -> str:
    return "" if micros is None else dt.datetime.fromtimestamp(micros / 1e6, dt.timezone.utc).isoformat()


def file_metadata(info: WriteInfo, schema: pa.Schema) -> dict:
    """Rows, URI, bytes, row groups, first/last timestamp and `dagster/column_schema`."""
    return {
        "dagster/row_count": info.rows, "uri": dg.MetadataValue.path(info.uri), "bytes": info.bytes,
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema]),
        "row_groups": info.row_groups,
        **({"first_timestamp": _iso(info.first_timestamp), "last_timestamp": _iso(info.last_timestamp)}
           if info.first_timestamp is not None else {}),
    }


def _cell(value) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def preview(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> dg.TableMetadataValue:
    """The first ``rows`` rows (first `PREVIEW_COLUMNS` columns) as a UI table."""
    head = frame.head(rows).select(frame.columns[:PREVIEW_COLUMNS])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in head.iter_rows(named=True)],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, str(t)) for c, t in head.schema.items()]),
    )


# The chart's pixels: 346 x 144 (4.8 x 2 inches at 72 dpi), price over volume (3:1).
CHART_SIZE = (346, 144)
_PRICE_RGB, _VOLUME_RGB, _BACKGROUND_RGB = (0x1F, 0x6F, 0xEB), (0x8B, 0x94, 0x9E), (0xFF, 0xFF, 0xFF)


def _scaled(values: np.ndarray, height: int) -> np.ndarray:
    """Row of each finite value in a panel ``height`` pixels tall (0 at the top), NaN kept."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.full(len(values), np.nan)
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo or 1.0
    return (height - 1) - np.round((values - lo) / span * (height - 1))


def _png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB image (rows x columns x 3) as PNG bytes."""
    height, width, _ = rgb.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def chart_png(close: np.ndarray, volume: np.ndarray, size: tuple[int, int] = CHART_SIZE) -> bytes:
    """Close price as a line (top three quarters) over volume as bars (bottom quarter), one
    column of pixels per slice of the buckets; empty buckets (null close) leave a gap."""
    width, height = size
    price_h = height * 3 // 4 - 2
    volume_h = height - price_h - 4
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _BACKGROUND_RGB
    n = len(close)
    if n:
        column = np.minimum(np.arange(n) * width // n, width - 1)
        close = np.asarray(close, np.float64)
        volume = np.nan_to_num(np.asarray(volume, np.float64))
        # Per pixel column: the last close and the summed volume of its buckets.
        last = np.full(width, np.nan)
        last[column] = close  # later buckets of a column overwrite earlier ones
        per_column = np.bincount(column, weights=volume, minlength=width)
        rows = _scaled(last, price_h)
        top = price_h + 4
        bars = np.round(per_column / (per_column.max() or 1.0) * volume_h).astype(int)
        for x in range(width):
            if bars[x]:
                image[top + volume_h - bars[x]:top + volume_h, x] = _VOLUME_RGB
        previous = None
        for x in range(width):
            if np.isnan(rows[x]):
                previous = None
                continue
            y = int(rows[x])
            a, b = (y, y) if previous is None else (min(previous, y), max(previous, y))
            image[a:b + 1, x] = _PRICE_RGB
            previous = y
    return _png(image)


def candle_chart(frame: pl.DataFrame, title: str) -> dg.MarkdownMetadataValue:
    """Close price (line) over volume (bars) for the day, as an inline PNG (drawn with NumPy:
    no plotting library to import, ~5 ms)."""
    png = chart_png(frame["close"].to_numpy(), frame["volume"].to_numpy())
    data = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"**{title}**: close (top), volume (bottom)\n\n![{title}](data:image/png;base64,{data})")
