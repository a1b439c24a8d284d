"""The daily instrument-definitions table: the configured universe resolved against Tardis metadata.

For each configured venue: the listed exchange symbols (all symbols when the list is empty),
narrowed to the configured instrument types, plus every option on the configured
underlyings, keeping only instruments whose availability window covers the day. Each row
says which raw data types exist for it (SPEC section 4, narrowed to what Tardis lists for the
symbol). The options chain is one grouped file per venue (``OPTIONS``), filtered per underlying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, fields

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from mdh_lib.config import Universe
from mdh_lib.instruments import (
    DEFINITION_COLUMNS, EXCHANGES_API, INSTRUMENTS_API, OPTIONS_DATA_TYPE, OPTIONS_GROUP_SYMBOL, InstrumentError,
    InstrumentKey, available_on, definition_row, symbol_record,
)

DEFINITIONS_SCHEMA = pa.schema([
    ("date", pa.date32()), ("instrument_key", pa.string()), ("venue", pa.string()), ("instrument_type", pa.string()),
    ("symbol", pa.string()), ("exchange", pa.string()), ("exchange_symbol", pa.string()), ("dataset_symbol", pa.string()),
    ("base", pa.string()), ("quote", pa.string()), ("settlement", pa.string()), ("tick_size", pa.float64()),
    ("amount_increment", pa.float64()), ("min_trade_amount", pa.float64()), ("contract_multiplier", pa.float64()),
    ("inverse", pa.bool_()), ("expiry", pa.timestamp("us", tz="UTC")), ("strike", pa.float64()),
    ("option_type", pa.string()), ("underlying", pa.string()), ("underlying_index", pa.string()),
    ("maker_fee", pa.float64()), ("taker_fee", pa.float64()),
    ("available_since", pa.timestamp("us", tz="UTC")), ("available_to", pa.timestamp("us", tz="UTC")),
    ("data_types", pa.list_(pa.string())), ("source", pa.string()),
])
assert tuple(DEFINITIONS_SCHEMA.names) == DEFINITION_COLUMNS


def _dataset_types(details: dict) -> dict[str, tuple[str, ...]]:
    """Data types per dataset symbol, upper-cased (symbol lists differ in case between APIs)."""
    return {s["id"].upper(): tuple(s.get("dataTypes", ())) for s in details.get("datasets", {}).get("symbols", [])}


MISSING_WITHOUT_METADATA = (
    "no tick size, amount increment, min trade amount, contract multiplier, inverse, settlement currency, "
    "fees or underlying index (left null); base, quote, expiry day (00:00 UTC) and strike are read from the "
    "symbol; downloads, candles and book features do not use the missing fields"
)


def fallback_line(exchanges: list[str]) -> str:
    """The one line a command prints when some definitions come from ``/v1/exchanges``."""
    return (f"note: instrument definitions of {', '.join(sorted(exchanges))} built from /v1/exchanges "
            f"(source {EXCHANGES_API}) because Tardis refused /v1/instruments, which needs a paid "
            f"TARDIS_API_KEY: {MISSING_WITHOUT_METADATA}")


def universe_metadata(universe: Universe, exchange_details: Callable[[str], dict],
                      instrument_records: Callable[[str], list[dict]]) -> tuple[dict, dict, list[str]]:
    """Every configured venue's ``/v1/exchanges`` answer and ``/v1/instruments`` records (None
    where Tardis refuses them: no paid key), and the venues refused; `build_definitions`
    then falls back to the exchanges answer for those."""
    from mdh_lib.tardis.client import TardisError

    details = {ex: exchange_details(ex) for ex in universe.exchanges}
    records: dict[str, list[dict] | None] = {}
    for ex in universe.exchanges:
        try:
            records[ex] = instrument_records(ex)
        except TardisError as exc:
            if not exc.refused:
                raise
            records[ex] = None
    return details, records, sorted(ex for ex, recs in records.items() if recs is None)


def build_definitions(
    date: dt.date, universe: Universe, details: dict[str, dict], records: dict[str, list[dict] | None]
) -> pa.Table:
    """``details``/``records``: per exchange, ``/v1/exchanges`` and ``/v1/instruments`` answers;
    records None (``/v1/instruments`` refused) builds the exchange's rows from the
    ``availableSymbols`` of its details instead (`symbol_record`, source ``exchanges_api``)."""
    rows = []
    for venue in universe.venues:
        ex_details = details.get(venue.exchange, {})
        listed = _dataset_types(ex_details)
        recs, source = records.get(venue.exchange), INSTRUMENTS_API
        if recs is None:
            source = EXCHANGES_API
            # the datasets' spelling of a symbol (the files' names) when the two lists differ in case
            spelled = {d["id"].upper(): d["id"] for d in ex_details.get("datasets", {}).get("symbols", [])}
            entries = [dict(e, id=spelled.get(e["id"].upper(), e["id"])) for e in ex_details.get("availableSymbols", [])]
            recs = [r for r in (symbol_record(venue.exchange, e) for e in entries) if r]
        wanted = {s.upper() for s in venue.symbols}
        unknown = wanted - {r["id"].upper() for r in recs}
        if unknown:
            raise InstrumentError(f"{venue.exchange}: Tardis lists no symbol {', '.join(sorted(unknown))}")
        for rec in recs:
            is_option = rec.get("type") == "option"
            if is_option:
                if (rec.get("baseCurrency") or "").upper() not in venue.option_underlyings:
                    continue
            elif wanted and rec["id"].upper() not in wanted:
                continue
            try:
                row = definition_row(rec, date, listed.get((rec.get("datasetId") or rec["id"]).upper()), source)
            except InstrumentError:
                continue  # combos and other types outside SPEC section 4
            if venue.instrument_types and row["instrument_type"] not in venue.instrument_types and not is_option:
                continue
            if available_on(row["available_since"], row["available_to"], date):
                rows.append(row)
    rows.sort(key=lambda r: r["instrument_key"])
    return pa.Table.from_pylist(rows, schema=DEFINITIONS_SCHEMA)


def fallback_exchanges(definitions: pa.Table | None) -> set[str]:
    """The exchanges whose rows in a day's table came from ``/v1/exchanges`` (tables written
    before the ``source`` column existed came from ``/v1/instruments``)."""
    if definitions is None or "source" not in definitions.column_names:
        return set()
    return {ex for ex, src in zip(definitions["exchange"].to_pylist(), definitions["source"].to_pylist())
            if src == EXCHANGES_API}


@dataclass(frozen=True)
class Expected:
    """One raw partition that should exist: (date, data type, instrument or underlying key)."""

    date: dt.date
    data_type: str
    key: str
    exchange: str
    source_symbol: str  # the symbol of the Tardis file to download


EXPECTED_COLUMNS = tuple(f.name for f in fields(Expected))


def expected_frame(definitions: pa.Table) -> pl.DataFrame:
    """`expected_partitions` as a frame (the columns of `Expected`), built column-wise: a
    month of a venue lists ~100,000 of them."""
    days = pl.from_arrow(definitions.select(["date", "instrument_type", "underlying", "exchange", "data_types",
                                             "instrument_key", "dataset_symbol"]))
    plain = days.filter(pl.col("instrument_type") != "OPTION").explode("data_types").filter(
        pl.col("data_types").is_not_null()).select(
        "date", pl.col("data_types").alias("data_type"), pl.col("instrument_key").alias("key"), "exchange",
        pl.col("dataset_symbol").alias("source_symbol"))
    chains = days.filter(pl.col("instrument_type") == "OPTION").group_by("underlying").agg(
        pl.col("exchange").last(), pl.col("date").first()).sort("underlying").select(
        "date", pl.lit(OPTIONS_DATA_TYPE).alias("data_type"), pl.col("underlying").alias("key"), "exchange",
        pl.lit(OPTIONS_GROUP_SYMBOL).alias("source_symbol"))
    return pl.concat([plain, chains.cast(plain.schema)])


def expected_partitions(definitions: pa.Table) -> list[Expected]:
    """Every raw partition that the day's definitions call for; options chains are one per
    underlying (filtered from the venue's grouped ``OPTIONS`` file)."""
    return [Expected(*row) for row in expected_frame(definitions).iter_rows()]


def instrument_row(definitions: pa.Table, key: InstrumentKey | str) -> dict | None:
    """The definition row of ``key`` in a day's table, or None when the day does not list it."""
    rows = definitions.filter(pc.equal(definitions["instrument_key"], str(key))).to_pylist()
    return rows[0] if rows else None


def options_underlying(definitions: pa.Table, base: str) -> str | None:
    """The options underlying listed that day for a base coin (e.g. ``DERIBIT:OPTION:BTC``)."""
    found = {u for u in definitions["underlying"].to_pylist() if u and InstrumentKey.parse(u).symbol == base}
    return min(found) if found else None


@dataclass(frozen=True)
class Filters:
    """Command-line filters; empty means everything in the configured universe."""

    venues: tuple[str, ...] = ()
    instrument_types: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    data_types: tuple[str, ...] = ()

    def keep(self, e: Expected) -> bool:
        return (
            (not self.venues or e.exchange in self.venues)
            and (not self.instrument_types or InstrumentKey.parse(e.key).type in self.instrument_types)
            and (not self.data_types or e.data_type in self.data_types)
            and (not self.symbols or bool(_names(e) & set(self.symbols)))
        )

    def unmatched(self, universe_exchanges: tuple[str, ...], expected: list[Expected]) -> str | None:
        """Why a venue or symbol filter can match nothing (an unknown name), else None."""
        unknown = [v for v in self.venues if v not in universe_exchanges]
        if unknown:
            return f"venue {unknown[0]!r} is not in the configured universe ({', '.join(universe_exchanges)})"
        known = set().union(*(_names(e) for e in expected)) if expected else set()
        unknown = [s for s in self.symbols if s not in known]
        if unknown:
            return f"no instrument of the universe matches symbol {unknown[0]!r} on these days"
        return None


def _names(e: Expected) -> set[str]:
    """What --symbols may call an expected partition: key, exchange symbol, key symbol, base."""
    key = InstrumentKey.parse(e.key)
    return {e.key, e.source_symbol.upper(), key.symbol, key.base}
