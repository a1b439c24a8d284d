"""Order-book snapshot features per bucket (SPEC section 6, ``book/{tf}``).

Each row of a timeframe describes bucket [start, end) (labelled ``timestamp`` = start, UTC,
full daily grid) through the LAST book_snapshot_5 with exchange ``timestamp`` < end. A bucket
without snapshots carries the previous state; buckets before the first snapshot are null.
Input rows stamped before the day start (Tardis files are split by ``local_timestamp``, so
day D's file may begin with them) only set that initial state and the first OFI predecessor;
rows at or after the next day's start are ignored. Snapshots with equal timestamps keep
their input order, so "last" means last in the input.

Notation for the chosen snapshot: ask level i (i = 0..4, 0 = best) has price ``a_i`` and
amount ``A_i`` (raw ``asks[i].price`` / ``asks[i].amount``), bid level i ``b_i`` / ``B_i``.
Prices are in quote currency, amounts in the instrument's amount unit as Tardis gives it.
Columns, in order:

- ``timestamp``: bucket start, ``Datetime("us", "UTC")``.
- ``ask_price_0``, ``ask_amount_0``, ``bid_price_0``, ``bid_amount_0`` ... ``bid_amount_4``: the 20 raw
  level columns (``asks[i].price`` ...) of the chosen snapshot, renamed to plain identifiers.
- ``mid`` = (a_0 + b_0) / 2; ``spread`` = a_0 - b_0 (price units);
  ``spread_bps`` = spread / mid * 1e4.
- ``microprice`` = (a_0 B_0 + b_0 A_0) / (B_0 + A_0), the level-1 size-weighted price;
  ``microprice_dev_bps`` = (microprice - mid) / mid * 1e4.
- ``imbalance_1`` = (B_0 - A_0) / (B_0 + A_0), in [-1, 1];
  ``imbalance_5`` = (bid_depth_5 - ask_depth_5) / (bid_depth_5 + ask_depth_5).
- ``bid_depth_5`` = B_0 + ... + B_4, ``ask_depth_5`` = A_0 + ... + A_4.
- ``bid_cum_depth_k`` / ``ask_cum_depth_k``, k = 1..4: amount on the best k levels of the
  side (k = 5 is ``*_depth_5``).
- ``ask_dist_bps_i`` = (a_i - mid) / mid * 1e4 and ``bid_dist_bps_i`` = (mid - b_i) / mid * 1e4,
  i = 0..4: distance d_i of each level from mid, >= 0 in an uncrossed book.
- ``bid_slope`` / ``ask_slope``: OLS slope (with intercept) of the side's cumulative depth
  Q_k (through level k) on its distance d_k over the five levels,
  sum((d - mean d)(Q - mean Q)) / sum((d - mean d)^2), in amount per bp: the liquidity
  added per bp walked into the book (high = steep, deep book).
- ``bid_wdist_bps`` = sum(B_i d_i) / sum(B_i), ``ask_wdist_bps`` alike: depth-weighted mean
  distance of the side's visible amount from mid, bps (low = liquidity close to mid).
- ``bid_vwap_5`` = sum(b_i B_i) / sum(B_i), ``ask_vwap_5`` = sum(a_i A_i) / sum(A_i): the
  average price of the visible depth.
- ``weighted_mid_5`` = (ask_vwap_5 bid_depth_5 + bid_vwap_5 ask_depth_5)
  / (bid_depth_5 + ask_depth_5): the microprice over 5 levels.
- ``ofi``: order-flow imbalance of Cont, Kukanov & Stoikov (2014) on level 1, amount units:
  the sum over consecutive snapshot pairs n-1 -> n whose later snapshot n lies in the bucket
  of e_n = 1{b_0,n >= b_0,n-1} B_0,n - 1{b_0,n <= b_0,n-1} B_0,n-1 -
  1{a_0,n <= a_0,n-1} A_0,n + 1{a_0,n >= a_0,n-1} A_0,n-1; 0 for a bucket without
  snapshots. The first input snapshot has no predecessor; the last pre-day snapshot is the
  predecessor of the first in-day one.
- ``snapshot_count``: snapshots with timestamp in the bucket (Int64).
- ``staleness_ms``: bucket end minus the chosen snapshot's timestamp, milliseconds (float).

Missing values: a feature is null when any input it reads is null (a missing level, or no
snapshot yet), so e.g. the 5-level sums of a side showing fewer than 5 levels are null while
its shallower cumulative depths are not; a division by zero gives null, as does a slope
over equal distances. A pair with a missing level-1 value adds nothing to ``ofi``.

Memory: `BookAggregator` keeps per-15s-bucket partials (at most 5,761 rows: the grid plus
one pre-day row), the rows of the bucket still open at the chunk's end and the last folded
row; every timeframe is rebuilt exactly from the 15s partials because each timeframe is a
multiple of 15s aligned to the day. Each 15s bucket is folded from all its rows at once and
sums run left to right, so the results are bit-identical whatever the chunking.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence

import polars as pl

from mdh_lib.features.sums import ordered_sum
from mdh_lib.schemas import BOOK_COLUMNS, BOOK_LEVELS, LEVEL_NAMES
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, bucket_start, day_start_us, grid, to_datetime, width_us

BASE = TIMEFRAMES["15s"]
_STATE = ["ts", *BOOK_COLUMNS]
_PART_SCHEMA = {"b": pl.Int64, "snapshot_count": pl.Int64, "ofi": pl.Float64, "ts": pl.Int64} | {
    c: pl.Float64 for c in BOOK_COLUMNS
}


def _level(side: str, field: str) -> list[pl.Expr]:
    return [pl.col(f"{side}[{i}].{field}") for i in range(BOOK_LEVELS)]


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null where den is 0 or null."""
    return pl.when(den != 0).then(num / den)


def _dot(x: list[pl.Expr], y: list[pl.Expr]) -> pl.Expr:
    return sum((a * b for a, b in zip(x, y, strict=True)), pl.lit(0.0))


def _ofi() -> pl.Expr:
    """CKS e_n of each row against the previous row (null for the first row, or when a
    level-1 value is missing: the comparisons are cast to 0/1 so nulls propagate)."""
    pb, qb, pa, qa = (pl.col(c) for c in ("bids[0].price", "bids[0].amount", "asks[0].price", "asks[0].amount"))

    def ind(cond: pl.Expr) -> pl.Expr:
        return cond.cast(pl.Float64)

    return (
        ind(pb >= pb.shift()) * qb - ind(pb <= pb.shift()) * qb.shift()
        - ind(pa <= pa.shift()) * qa + ind(pa >= pa.shift()) * qa.shift()
    )


def _slope(dist: list[pl.Expr], cum: list[pl.Expr]) -> pl.Expr:
    """OLS slope of cumulative depth on distance over the levels (null on any missing level)."""
    n = len(dist)
    d_mean, q_mean = sum(dist) / n, sum(cum) / n
    dd = [d - d_mean for d in dist]
    return _div(_dot(dd, [q - q_mean for q in cum]), _dot(dd, dd))


def _features(frame: pl.LazyFrame, width: int) -> pl.LazyFrame:
    """Derived features of each row's chosen snapshot, in the documented column order."""
    ap, aq = _level("asks", "price"), _level("asks", "amount")
    bp, bq = _level("bids", "price"), _level("bids", "amount")
    ask_cum, bid_cum = list(itertools.accumulate(aq)), list(itertools.accumulate(bq))
    mid = pl.col("mid")
    ask_dist = [_div((p - mid) * 1e4, mid) for p in ap]
    bid_dist = [_div((mid - p) * 1e4, mid) for p in bp]
    ask_depth, bid_depth = pl.col("ask_depth_5"), pl.col("bid_depth_5")
    ask_vwap, bid_vwap = pl.col("ask_vwap_5"), pl.col("bid_vwap_5")
    derived = [
        "mid", "spread", "spread_bps", "microprice", "microprice_dev_bps", "imbalance_1", "imbalance_5",
        "bid_depth_5", "ask_depth_5",
        *[f"{s}_cum_depth_{k}" for s in ("bid", "ask") for k in range(1, BOOK_LEVELS)],
        *[f"{s}_dist_bps_{i}" for s in ("ask", "bid") for i in range(BOOK_LEVELS)],
        "bid_slope", "ask_slope", "bid_wdist_bps", "ask_wdist_bps", "bid_vwap_5", "ask_vwap_5", "weighted_mid_5",
        "ofi", "snapshot_count", "staleness_ms",
    ]
    return (
        frame.with_columns(
            mid=(ap[0] + bp[0]) / 2,
            spread=ap[0] - bp[0],
            microprice=_div(ap[0] * bq[0] + bp[0] * aq[0], bq[0] + aq[0]),
            imbalance_1=_div(bq[0] - aq[0], bq[0] + aq[0]),
            bid_depth_5=bid_cum[-1],
            ask_depth_5=ask_cum[-1],
            bid_vwap_5=_div(_dot(bp, bq), bid_cum[-1]),
            ask_vwap_5=_div(_dot(ap, aq), ask_cum[-1]),
            staleness_ms=(pl.col("bucket") + width - pl.col("ts")) / 1_000,
            **{f"bid_cum_depth_{k}": bid_cum[k - 1] for k in range(1, BOOK_LEVELS)},
            **{f"ask_cum_depth_{k}": ask_cum[k - 1] for k in range(1, BOOK_LEVELS)},
        )
        .with_columns(
            spread_bps=_div(pl.col("spread") * 1e4, mid),
            microprice_dev_bps=_div((pl.col("microprice") - mid) * 1e4, mid),
            imbalance_5=_div(bid_depth - ask_depth, bid_depth + ask_depth),
            bid_slope=_slope(bid_dist, bid_cum),
            ask_slope=_slope(ask_dist, ask_cum),
            bid_wdist_bps=_div(_dot(bq, bid_dist), bid_depth),
            ask_wdist_bps=_div(_dot(aq, ask_dist), ask_depth),
            weighted_mid_5=_div(ask_vwap * bid_depth + bid_vwap * ask_depth, bid_depth + ask_depth),
            **{f"ask_dist_bps_{i}": d for i, d in enumerate(ask_dist)},
            **{f"bid_dist_bps_{i}": d for i, d in enumerate(bid_dist)},
        )
        .select(to_datetime("bucket", "timestamp"), *(pl.col(c).alias(LEVEL_NAMES[c]) for c in BOOK_COLUMNS), *derived)
    )


class BookAggregator:
    """Incremental: feed chunks sorted by timestamp; identical results whatever the chunking.

    Between chunks only the 15s partials, the open bucket's rows and one predecessor row are
    kept, so memory stays bounded by one chunk plus a few thousand rows.
    """

    def __init__(self, date: dt.date, timeframes: Sequence[str] = tuple(TIMEFRAMES)):
        for tf in timeframes:
            width_us(tf)
        self._date, self._timeframes = date, tuple(timeframes)
        self._start = day_start_us(date)
        self._last_ts: int | None = None
        self._prev = pl.DataFrame(schema=_PART_SCHEMA).select("b", *_STATE)
        self._pending = self._prev.clear()
        self._parts: list[pl.DataFrame] = []

    def update(self, chunk: pl.DataFrame) -> None:
        """Fold the chunk's complete 15s buckets; keep the still-open last bucket pending."""
        rows = chunk.select(pl.col("timestamp").cast(pl.Int64).alias("ts"), pl.col(BOOK_COLUMNS).cast(pl.Float64))
        if rows.is_empty():
            return
        ts = rows["ts"]
        if ts.null_count() or not ts.is_sorted() or (self._last_ts is not None and ts[0] < self._last_ts):
            raise ValueError("book snapshots must come sorted by timestamp, without nulls")
        self._last_ts = ts[-1]
        rows = rows.head(ts.search_sorted(self._start + DAY_US, side="left"))  # the next day is ignored
        # Pre-day rows share one bucket just before the day: they only give the initial state.
        bucket = pl.max_horizontal(bucket_start("ts", "15s"), pl.lit(self._start - BASE))
        rows = pl.concat([self._pending, rows.select(bucket.alias("b"), *_STATE)])
        if rows.is_empty():
            return
        split = rows["b"].search_sorted(rows["b"][-1], side="left")
        self._fold(rows.head(split))
        self._pending = _compact(rows.slice(split))

    def finish(self) -> dict[str, pl.DataFrame]:
        """Timeframe -> full-grid frame (see the module docstring for the columns)."""
        self._fold(self._pending)
        self._pending = self._pending.clear()
        parts = pl.concat([pl.DataFrame(schema=_PART_SCHEMA), *self._parts]).set_sorted("b")
        return {tf: self._timeframe(parts, tf) for tf in self._timeframes}

    def _fold(self, rows: pl.DataFrame) -> None:
        """Append the 15s partials of complete buckets: last row, count and OFI sum."""
        if rows.is_empty():
            return
        part = (
            pl.concat([self._prev, rows])
            .lazy()
            .set_sorted("b")  # the timestamps were checked sorted: lets the group-by slice
            .with_columns(ofi=_ofi())
            .slice(self._prev.height)
            .group_by("b", maintain_order=True)
            .agg(
                pl.len().cast(pl.Int64).alias("snapshot_count"),
                ordered_sum(pl.col("ofi")),
                pl.col(_STATE).last(),
            )
            .collect()
        )
        self._parts.append(part)
        self._prev = _compact(rows.tail(1))

    def _timeframe(self, parts: pl.DataFrame, tf: str) -> pl.DataFrame:
        """One timeframe from the 15s partials: the state of the last 15s partial ending at or
        before each bucket end (as-of join), counts and OFI summed over the bucket's partials."""
        width = width_us(tf)
        flows = (
            parts.lazy()
            .filter(pl.col("b") >= self._start)
            .group_by(bucket_start("b", tf).alias("bucket"))
            .agg(pl.col("snapshot_count").sum(), ordered_sum(pl.col("ofi")))
        )
        return (
            grid(self._date, tf)
            .lazy()
            .with_columns(last_b=pl.col("bucket") + (width - BASE))
            .join_asof(parts.lazy().select("b", *_STATE), left_on="last_b", right_on="b", strategy="backward")
            .join(flows, on="bucket", how="left", maintain_order="left")
            .with_columns(pl.col("snapshot_count", "ofi").fill_null(0))
            .pipe(_features, width)
            .collect()
        )


def _compact(rows: pl.DataFrame) -> pl.DataFrame:
    """A copy of a few rows that no longer pins the whole chunk's buffers in memory."""
    return rows.select(pl.all().gather(pl.int_range(pl.len())))


def book_features(
    chunks: Iterable[pl.DataFrame], date: dt.date, timeframes: Sequence[str] = tuple(TIMEFRAMES)
) -> dict[str, pl.DataFrame]:
    """Book features of ``date`` for each timeframe from book_snapshot_5 chunks sorted by timestamp."""
    agg = BookAggregator(date, timeframes)
    for chunk in chunks:
        agg.update(chunk)
    return agg.finish()
