"""Materialization metadata a person can read in the UI: what was written (rows, bytes, time
coverage, column schema), a preview table of the rows, and for candles a price and volume
chart. Every Parquet materialization gets the same keys, whoever writes the file."""

from __future__ import annotations

import base64
import datetime as dt
import io

import dagster as dg
import polars as pl
import pyarrow as pa

from mdh_lib.storage import WriteInfo

PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 12
# A chart of the day at two scales: 1m (intraday detail) and 1h (overview). A 15s chart looks
# like the 1m one, a 24h one has a single point, and each chart costs ~35 ms to draw.
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


def candle_chart(frame: pl.DataFrame, title: str) -> dg.MarkdownMetadataValue:
    """Close price (line) over volume (area) for the day, as an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    x = frame["timestamp"].to_list()
    fig = Figure(figsize=(4.8, 2.0), dpi=72)
    price, volume = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    price.plot(x, frame["close"].to_numpy(), lw=0.8, color="#1f6feb")
    volume.fill_between(x, frame["volume"].to_numpy(), step="post", lw=0, color="#8b949e")
    for axis in (price, volume):
        axis.set_xticks([])
        axis.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.13, right=0.99, top=0.97, bottom=0.04)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"**{title}**: close (top), volume (bottom)\n\n![{title}](data:image/png;base64,{data})")
