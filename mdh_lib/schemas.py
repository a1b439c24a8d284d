"""Raw tick schemas: Tardis's CSV columns and units, as Arrow types and as Pandera checks.

Raw Parquet keeps Tardis's column names, order and units (timestamps are int64 microseconds
since the epoch, UTC; prices and amounts float64; an empty CSV cell is null).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import polars as pl
import pyarrow as pa

from mdh_lib.frame_checks import Column, FrameSchema, Rule

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


def _positive(c: str) -> Rule:
    return Rule("greater_than(0)", pl.col(c) > 0, c)


def _not_negative(c: str) -> Rule:
    return Rule("greater_than_or_equal_to(0)", pl.col(c) >= 0, c)


def _isin(c: str, allowed: list[str]) -> Rule:
    return Rule(f"isin({allowed})", pl.col(c).is_in(allowed), c)


_POLARS = {pa.large_string(): pl.Utf8, pa.int64(): pl.Int64, pa.float64(): pl.Float64}


def _book_sorted() -> pl.Expr:
    """Asks ascending and bids descending across the 5 levels (missing levels pass)."""
    ok = pl.lit(True)
    for i in range(BOOK_LEVELS - 1):
        ok = ok & (pl.col(f"asks[{i}].price") <= pl.col(f"asks[{i + 1}].price")).fill_null(True)
        ok = ok & (pl.col(f"bids[{i}].price") >= pl.col(f"bids[{i + 1}].price")).fill_null(True)
    return ok


@lru_cache(maxsize=64)
def raw_schema(data_type: str, date: dt.date | None = None) -> FrameSchema:
    """The check of one raw file (a Pandera schema, `mdh_lib.frame_checks`): Tardis's
    columns in order with their types; exchange, symbol, timestamps and the trade columns
    never null; timestamps, prices and strikes positive; amounts not negative; trade side
    buy/sell/unknown; book levels ordered; with ``date``, every local_timestamp (Tardis
    splits files by it) inside that UTC day."""
    fields = RAW_SCHEMAS[data_type]
    required = {"exchange", "symbol", "timestamp", "local_timestamp"}
    rules = [_positive("timestamp"), _positive("local_timestamp")]
    if data_type in ("trades", "liquidations"):
        required |= {"side", "price", "amount"}
        rules += [_isin("side", ["buy", "sell", "unknown"]), _positive("price"), _not_negative("amount")]
    elif data_type == "book_snapshot_5":
        rules += [_positive(c) if c.endswith("price") else _not_negative(c) for c in BOOK_COLUMNS]
        rules.append(Rule("book_levels_sorted", _book_sorted(), error="asks ascending, bids descending"))
    elif data_type == "options_chain":
        required |= {"type", "strike_price", "expiration"}
        rules += [_isin("type", ["call", "put"]), _positive("strike_price"), _positive("expiration")]
    if date is not None:
        lo = int(dt.datetime.combine(date, dt.time(), dt.timezone.utc).timestamp() * 1_000_000)
        rules.append(Rule("local_timestamp_in_day",
                          pl.col("local_timestamp").is_between(lo, lo + 86_400_000_000, closed="left"),
                          error=f"local_timestamp outside {date}"))
    columns = {f.name: Column(_POLARS[f.type], nullable=f.name not in required) for f in fields}
    return FrameSchema(data_type, columns, rules)
