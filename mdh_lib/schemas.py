"""Raw tick schemas: Tardis's CSV columns and units, as Arrow types and as Pandera checks.

Raw Parquet keeps Tardis's column names, order and units (timestamps are int64 microseconds
since the epoch, UTC; prices and amounts float64; an empty CSV cell is null).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

if TYPE_CHECKING:  # pandera (and the pandas it imports) loads when a check is built
    import pandera.polars as pdp

_HEAD = [("exchange", pa.large_string()), ("symbol", pa.large_string()), ("timestamp", pa.int64()), ("local_timestamp", pa.int64())]
_TRADE = _HEAD + [("id", pa.large_string()), ("side", pa.large_string()), ("price", pa.float64()), ("amount", pa.float64())]
BOOK_LEVELS = 5
BOOK_COLUMNS = [
    f"{side}[{i}].{field}" for i in range(BOOK_LEVELS) for side in ("asks", "bids") for field in ("price", "amount")
]
# The same levels in derived datasets, as plain identifiers (BigQuery and SQL friendly):
# ``asks[0].price`` -> ``ask_price_0``.
LEVEL_NAMES = {c: f"{c[:3]}_{c.split('.')[1]}_{c[5]}" for c in BOOK_COLUMNS}

RAW_SCHEMAS: dict[str, pa.Schema] = {
    "trades": pa.schema(_TRADE),
    "liquidations": pa.schema(_TRADE),
    "book_snapshot_5": pa.schema(_HEAD + [(c, pa.float64()) for c in BOOK_COLUMNS]),
    "quotes": pa.schema(
        _HEAD + [(c, pa.float64()) for c in ("ask_amount", "ask_price", "bid_price", "bid_amount")]
    ),
    "derivative_ticker": pa.schema(
        _HEAD
        + [("funding_timestamp", pa.int64())]
        + [(c, pa.float64()) for c in (
            "funding_rate", "predicted_funding_rate", "open_interest", "last_price", "index_price", "mark_price")]
    ),
    "options_chain": pa.schema(
        _HEAD
        + [("type", pa.large_string()), ("strike_price", pa.float64()), ("expiration", pa.int64())]
        + [(c, pa.float64()) for c in (
            "open_interest", "last_price", "bid_price", "bid_amount", "bid_iv", "ask_price", "ask_amount",
            "ask_iv", "mark_price", "mark_iv")]
        + [("underlying_index", pa.large_string()), ("underlying_price", pa.float64())]
        + [(c, pa.float64()) for c in ("delta", "gamma", "vega", "theta", "rho")]
    ),
}


def header(data_type: str) -> list[str]:
    return RAW_SCHEMAS[data_type].names


def _col(dtype, nullable: bool = False, **checks) -> pdp.Column:
    import pandera.polars as pdp

    built = [getattr(pdp.Check, name)(*(v if isinstance(v, tuple) else (v,))) for name, v in checks.items()]
    return pdp.Column(dtype, checks=built, nullable=nullable)


def _columns(data_type: str) -> dict[str, pdp.Column]:
    cols = {
        "exchange": _col(pl.Utf8), "symbol": _col(pl.Utf8),
        "timestamp": _col(pl.Int64, greater_than=0), "local_timestamp": _col(pl.Int64, greater_than=0),
    }
    if data_type in ("trades", "liquidations"):
        cols.update(
            id=_col(pl.Utf8, nullable=True),
            side=_col(pl.Utf8, isin=(["buy", "sell", "unknown"],)),
            price=_col(pl.Float64, greater_than=0),
            amount=_col(pl.Float64, greater_than_or_equal_to=0),
        )
    elif data_type == "book_snapshot_5":
        for c in BOOK_COLUMNS:
            cols[c] = _col(pl.Float64, nullable=True, **({"greater_than": 0} if c.endswith("price") else {"greater_than_or_equal_to": 0}))
    elif data_type == "options_chain":
        for name, dtype in zip(RAW_SCHEMAS[data_type].names[4:], RAW_SCHEMAS[data_type].types[4:]):
            cols[name] = _col(pl.Utf8 if dtype == pa.large_string() else pl.Int64 if dtype == pa.int64() else pl.Float64, nullable=True)
        cols["type"] = _col(pl.Utf8, isin=(["call", "put"],))
        cols["strike_price"] = _col(pl.Float64, greater_than=0)
        cols["expiration"] = _col(pl.Int64, greater_than=0)
    else:
        for name, dtype in zip(RAW_SCHEMAS[data_type].names[4:], RAW_SCHEMAS[data_type].types[4:]):
            cols[name] = _col(pl.Int64 if dtype == pa.int64() else pl.Float64, nullable=True)
    return cols


def _book_sorted(data) -> pl.LazyFrame:
    """Asks ascending and bids descending across the 5 levels (missing levels pass)."""
    ok = pl.lit(True)
    for i in range(BOOK_LEVELS - 1):
        ok = ok & (pl.col(f"asks[{i}].price") <= pl.col(f"asks[{i + 1}].price")).fill_null(True)
        ok = ok & (pl.col(f"bids[{i}].price") >= pl.col(f"bids[{i + 1}].price")).fill_null(True)
    return data.lazyframe.select(ok.alias("ok"))


def raw_schema(data_type: str, date: dt.date | None = None) -> pdp.DataFrameSchema:
    """The Pandera check of one raw file; with ``date``, every local_timestamp (Tardis splits
    files by it) must fall inside that UTC day."""
    import pandera.polars as pdp

    checks = []
    if data_type == "book_snapshot_5":
        checks.append(pdp.Check(_book_sorted, name="book_levels_sorted", error="asks ascending, bids descending"))
    if date is not None:
        lo = int(dt.datetime.combine(date, dt.time(), dt.timezone.utc).timestamp() * 1_000_000)
        hi = lo + 86_400_000_000
        checks.append(
            pdp.Check(
                lambda d: d.lazyframe.select(pl.col("local_timestamp").is_between(lo, hi, closed="left")),
                name="local_timestamp_in_day", error=f"local_timestamp outside {date}",
            )
        )
    return pdp.DataFrameSchema(_columns(data_type), checks=checks, strict=True, ordered=True, name=data_type)
