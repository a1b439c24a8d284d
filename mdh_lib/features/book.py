"""Order-book snapshot features per bucket (SPEC section 6, ``book/{tf}``).

Each row of a timeframe describes bucket [start, end) (labelled ``timestamp`` = start, UTC,
full daily grid). "State" columns describe the LAST book_snapshot_5 with exchange
``timestamp`` < end (the chosen snapshot): a bucket without snapshots carries the previous
state; buckets before the first snapshot are null. "Flow" columns (``ofi``,
``snapshot_count``, ``mid_realized_vol_bps``) add up over the snapshots stamped in the bucket
and are 0 for a bucket without any. "Within-bucket statistics" (``*_mean``, ``*_std``,
``*_min``, ``*_max``, ``mid_log_return_in_bucket``) describe the snapshots stamped in the
bucket, each snapshot counting once (not time-weighted), and are null for a bucket without
any. Input rows stamped before the day start (Tardis files are split by ``local_timestamp``,
so day D's file may begin with them) only set the initial state, the first OFI and return
predecessor and the state at the start of the first bucket; rows at or after the next day's
start are ignored. Snapshots with equal timestamps keep their input order, so "last" means
last in the input and "first" first in the input.

Notation for a snapshot: ask level i (i = 0..4, 0 = best) has price ``a_i`` and amount
``A_i`` (raw ``asks[i].price`` / ``asks[i].amount``), bid level i ``b_i`` / ``B_i``; the
side's cumulative depth through its best k levels is ``BQ_k`` = B_0 + ... + B_(k-1) and
``AQ_k`` likewise (k = 1..5); m = (a_0 + b_0) / 2 is its mid. Prices are in quote currency,
amounts in the instrument's amount unit as Tardis gives it. Columns, in order
(`FEATURE_COLUMNS`):

- ``timestamp``: bucket start, ``Datetime("us", "UTC")``.
- ``ask_price_0``, ``ask_amount_0``, ``bid_price_0``, ``bid_amount_0`` ... ``bid_amount_4``: the 20 raw
  level columns (``asks[i].price`` ...) of the chosen snapshot, renamed to plain identifiers
  (`LEVEL_COLUMNS`).

Then the 53 derived columns (`DERIVED_COLUMNS`), all Float64 except ``snapshot_count``
(Int64). State of the chosen snapshot (42):

- ``mid`` = m = (a_0 + b_0) / 2; ``spread`` = a_0 - b_0 (price units);
  ``spread_bps`` = spread / mid * 1e4.
- ``microprice`` = (a_0 B_0 + b_0 A_0) / (B_0 + A_0), the level-1 size-weighted price;
  ``microprice_dev_bps`` = (microprice - mid) / mid * 1e4.
- ``imbalance_k``, k = 1..5: depth imbalance of the best k levels,
  (BQ_k - AQ_k) / (BQ_k + AQ_k), in [-1, 1] (``imbalance_1`` is the level-1 imbalance
  (B_0 - A_0) / (B_0 + A_0), ``imbalance_5`` uses the whole visible depth).
- ``level_imbalance_i``, i = 1..4 (level index, as in ``ask_price_i``; level 0 is
  ``imbalance_1``): the imbalance of level i alone, (B_i - A_i) / (B_i + A_i), in [-1, 1].
- ``bid_depth_5`` = BQ_5, ``ask_depth_5`` = AQ_5.
- ``bid_cum_depth_k`` = BQ_k, ``ask_cum_depth_k`` = AQ_k, k = 1..4 (k = 5 is ``*_depth_5``).
- ``ask_dist_bps_i`` = (a_i - mid) / mid * 1e4 and ``bid_dist_bps_i`` = (mid - b_i) / mid * 1e4,
  i = 0..4: distance d_i of each level from mid, >= 0 in an uncrossed book.
- ``bid_slope`` / ``ask_slope``: OLS slope (with intercept) of the side's cumulative depth
  Q_k (through level k) on its distance d_k over the five levels,
  sum((d - mean d)(Q - mean Q)) / sum((d - mean d)^2), in amount per bp: the liquidity
  added per bp walked into the book (high = steep, deep book).
- ``bid_wdist_bps`` = sum(B_i d_i) / sum(B_i), ``ask_wdist_bps`` alike: depth-weighted mean
  distance of the side's visible amount from mid, bps (low = liquidity close to mid); their
  sum is the depth-weighted spread in bps.
- ``bid_vwap_5`` = sum(b_i B_i) / sum(B_i), ``ask_vwap_5`` = sum(a_i A_i) / sum(A_i): the
  average price of the visible depth.
- ``weighted_mid_5`` = (ask_vwap_5 bid_depth_5 + bid_vwap_5 ask_depth_5)
  / (bid_depth_5 + ask_depth_5): the microprice over 5 levels.
- ``staleness_ms``: bucket end minus the chosen snapshot's timestamp, milliseconds.

Flows over the bucket (4):

- ``ofi``: order-flow imbalance of Cont, Kukanov & Stoikov (2014) on level 1, amount units:
  the sum over consecutive snapshot pairs n-1 -> n whose later snapshot n lies in the bucket
  of e_n = 1{b_0,n >= b_0,n-1} B_0,n - 1{b_0,n <= b_0,n-1} B_0,n-1 -
  1{a_0,n <= a_0,n-1} A_0,n + 1{a_0,n >= a_0,n-1} A_0,n-1. The first input snapshot has no
  predecessor; the last pre-day snapshot is the predecessor of the first in-day one.
- ``snapshot_count``: snapshots with timestamp in the bucket.
- ``mid_realized_vol_bps`` = 1e4 sqrt(sum r_n^2) over the same pairs as ``ofi``, with
  r_n = ln(m_n / m_n-1): the realized volatility of the mid inside the bucket, including the
  move from the previous bucket's last snapshot to this bucket's first. Its square adds up
  over buckets: the 1m value is the root of the sum of its four 15s values squared.
- ``mid_log_return`` = ln(m_end / m_start), m_end the chosen snapshot's mid and m_start the
  mid of the state at the bucket start (the previous bucket's chosen snapshot; for the day's
  first bucket the last pre-day snapshot): the close-to-close mid return, 0 for a bucket
  without snapshots (the state did not change), null while either state is missing. The
  returns of consecutive buckets add up to the return over their span.

Within-bucket statistics (7), over the n snapshots stamped in the bucket whose value is
not null (x_1..x_n):

- ``mid_log_return_in_bucket`` = ln(m_last / m_first), the first and last snapshot stamped
  in the bucket (input order on equal timestamps): the return while the bucket saw updates,
  without the jump from the previous state; 0 with one snapshot, null with none.
- ``spread_bps_mean`` = sum(x) / n and ``spread_bps_std`` = sqrt(sum((x - mean)^2) / n) of
  the snapshots' ``spread_bps``: the POPULATION standard deviation (ddof 0), so 0 for n = 1
  and null for n = 0; ``spread_bps_min`` / ``spread_bps_max`` the extremes.
- ``imbalance_1_mean`` / ``imbalance_1_std`` alike over the snapshots' ``imbalance_1``.

Derived count: 53 = 42 state + 4 flows + 7 within-bucket statistics (the guide's "40+";
51 without the bookkeeping ``snapshot_count`` and ``staleness_ms``).

Edge cases: a NaN price or amount is read as missing (null). A feature is null when any
input it reads is null (a missing level, or no snapshot yet), so e.g. the 5-level sums of a
side showing fewer than 5 levels are null while its shallower cumulative depths are not; a
division by zero gives null (zero depth makes the imbalances, microprice, VWAPs and depth-
weighted distances null; a slope over equal distances is null); a logarithm of a
non-positive price ratio is null. A crossed or locked book is used as it is: spread and
spread_bps are then <= 0 and some distances negative (nothing is dropped or clipped). A pair
with a missing level-1 value adds nothing to ``ofi``; a pair with a missing or non-positive
mid adds nothing to ``mid_realized_vol_bps``; a snapshot with a null spread_bps (or
imbalance_1) is left out of that value's n, mean, std, min and max.

Memory: `BookAggregator` keeps per-15s-bucket partials (at most 5,761 rows: the grid plus
one pre-day row), the rows of the bucket still open at the chunk's end and the last folded
row; every timeframe is rebuilt exactly from the 15s partials because each timeframe is a
multiple of 15s aligned to the day. A partial holds the bucket's last row, its count, its
OFI and squared-return sums, its first mid, and for spread_bps and imbalance_1 the count,
sum, sum of squared deviations from the partial's own mean, min and max; a timeframe bucket
combines its partials exactly (Chan et al.'s pairwise update: M2 = sum M2_j +
sum n_j (mean_j - mean)^2). Each 15s bucket is folded from all its rows at once and sums run
left to right, so the results are bit-identical whatever the chunking.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from mdh_lib.schemas import BOOK_COLUMNS, BOOK_LEVELS, LEVEL_NAMES
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, bucket_start, day_start_us, grid, to_datetime, width_us

LEVELS = range(BOOK_LEVELS)
LEVEL_COLUMNS = [LEVEL_NAMES[c] for c in BOOK_COLUMNS]
_STATE_FEATURES = [
    "mid", "spread", "spread_bps", "microprice", "microprice_dev_bps",
    *[f"imbalance_{k}" for k in range(1, BOOK_LEVELS + 1)],
    *[f"level_imbalance_{i}" for i in range(1, BOOK_LEVELS)],
    "bid_depth_5", "ask_depth_5",
    *[f"{s}_cum_depth_{k}" for s in ("bid", "ask") for k in range(1, BOOK_LEVELS)],
    *[f"{s}_dist_bps_{i}" for s in ("ask", "bid") for i in LEVELS],
    "bid_slope", "ask_slope", "bid_wdist_bps", "ask_wdist_bps", "bid_vwap_5", "ask_vwap_5", "weighted_mid_5",
    "staleness_ms",
]
_FLOW_FEATURES = ["ofi", "snapshot_count", "mid_realized_vol_bps", "mid_log_return"]
_BUCKET_FEATURES = [
    "mid_log_return_in_bucket", "spread_bps_mean", "spread_bps_std", "spread_bps_min", "spread_bps_max",
    "imbalance_1_mean", "imbalance_1_std",
]
# The 53 derived columns, then every column of a ``book/{tf}`` frame in order.
DERIVED_COLUMNS = _STATE_FEATURES + _FLOW_FEATURES + _BUCKET_FEATURES
FEATURE_COLUMNS = ["timestamp", *LEVEL_COLUMNS, *DERIVED_COLUMNS]

BASE = TIMEFRAMES["15s"]
_STATE = ["ts", *BOOK_COLUMNS]
_STATS = ("spread_bps", "imbalance_1")  # per-snapshot values with a within-bucket mean and std
# A 15s partial: the bucket's flows, first mid and per statistic x the count ``x_n``, sum
# ``x_s`` and squared deviations from the partial's own mean ``x_m2`` of its non-null values,
# the min and max spread_bps; then the bucket's last row (_STATE).
_SUMS = {"b": pl.Int64, "snapshot_count": pl.Int64, "ofi": pl.Float64, "rv": pl.Float64, "mid_first": pl.Float64,
         **{f"{x}_{a}": pl.Int64 if a == "n" else pl.Float64 for x in _STATS for a in ("n", "s", "m2")},
         "spread_bps_min": pl.Float64, "spread_bps_max": pl.Float64}
_PART_SCHEMA = _SUMS | {"ts": pl.Int64} | {c: pl.Float64 for c in BOOK_COLUMNS}


def _div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null where den is 0 or null."""
    return pl.when(den != 0).then(num / den)


def _log_ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """ln(num / den), null unless both are > 0."""
    return pl.when((num > 0) & (den > 0)).then((num / den).log())


def _total(exprs: Iterable[pl.Expr]) -> pl.Expr:
    return pl.sum_horizontal(*exprs, ignore_nulls=False)


def _per_snapshot(book: pl.DataFrame, has_prev: bool) -> dict[str, np.ndarray]:
    """Per snapshot of ``book`` (after its first row when ``has_prev``, which is only the
    predecessor): mid, spread_bps, imbalance_1, the CKS e_n and r_n^2 against the previous row.
    A missing value is NaN; a pair with one adds 0 to the sums (so does the first row without
    predecessor). Plain NumPy, element by element."""
    a, b, qa, qb = (book[c].to_numpy() for c in ("asks[0].price", "bids[0].price", "asks[0].amount", "bids[0].amount"))
    with np.errstate(divide="ignore", invalid="ignore"):
        mid = (a + b) / 2
        depth = qb + qa
        spread_bps = np.where(mid != 0, (a - b) * 1e4 / mid, np.nan)
        imbalance = np.where(depth != 0, (qb - qa) / depth, np.nan)
        e = ((b[1:] >= b[:-1]) * qb[1:] - (b[1:] <= b[:-1]) * qb[:-1]
             - (a[1:] <= a[:-1]) * qa[1:] + (a[1:] >= a[:-1]) * qa[:-1])
        r = np.log(mid[1:] / mid[:-1])
        r2 = np.where((mid[1:] > 0) & (mid[:-1] > 0), r * r, 0.0)
    e = np.where(np.isnan(e) | np.isnan(a[1:] + a[:-1] + b[1:] + b[:-1]), 0.0, e)  # NaN prices compare False
    first = [] if has_prev else [0.0]
    skip = 1 if has_prev else 0
    return {"_mid": mid[skip:], "spread_bps": spread_bps[skip:], "imbalance_1": imbalance[skip:],
            "ofi": np.concatenate([first, e]), "rv": np.concatenate([first, r2])}


def _features(frame: pl.LazyFrame, width: int) -> pl.LazyFrame:
    """Derived features of each row's chosen snapshot and the bucket's combined partials, in
    `FEATURE_COLUMNS` order. Built in stages that name their intermediate columns, so each
    expression stays small (polars plans a deep expression tree slowly)."""
    sides, depths = ("ask", "bid"), range(1, BOOK_LEVELS + 1)
    mid, spread = pl.col("mid"), pl.col("spread")

    def lv(s: str, field: str, i: int) -> pl.Expr:  # level column, e.g. ask_price_0
        return pl.col(f"{s}_{field}_{i}")

    def cum_name(s: str, k: int) -> str:  # cumulative depth of the best k levels
        return f"{s}_depth_5" if k == BOOK_LEVELS else f"{s}_cum_depth_{k}"

    def cum(s: str, k: int) -> pl.Expr:
        return pl.col(cum_name(s, k))

    def dist(s: str, i: int) -> pl.Expr:
        return pl.col(f"{s}_dist_bps_{i}")

    def dev(s: str, i: int) -> pl.Expr:  # the level's distance minus the side's mean distance
        return pl.col(f"_{s}_dd{i}")

    def imbalance(bid: pl.Expr, ask: pl.Expr) -> pl.Expr:
        return _div(bid - ask, bid + ask)

    def mean(x: str) -> pl.Expr:
        return _div(pl.col(f"{x}_s"), pl.col(f"{x}_n"))

    def std(x: str) -> pl.Expr:  # population
        return _div(pl.col(f"{x}_m2"), pl.col(f"{x}_n")).sqrt()

    a0, b0, qa0, qb0 = lv("ask", "price", 0), lv("bid", "price", 0), lv("ask", "amount", 0), lv("bid", "amount", 0)
    return (
        frame.with_columns(to_datetime("bucket", "timestamp"), *(pl.col(c).alias(n) for c, n in LEVEL_NAMES.items()))
        .with_columns(
            mid=(a0 + b0) / 2,
            spread=a0 - b0,
            microprice=_div(a0 * qb0 + b0 * qa0, qb0 + qa0),
            staleness_ms=(pl.col("bucket") + width - pl.col("ts")) / 1_000,
            **{cum_name(s, k): _total(lv(s, "amount", i) for i in range(k)) for s in sides for k in depths},
            **{f"_{s}_pq": _total(lv(s, "price", i) * lv(s, "amount", i) for i in LEVELS) for s in sides},
        )
        .with_columns(
            spread_bps=_div(spread * 1e4, mid),
            microprice_dev_bps=_div((pl.col("microprice") - mid) * 1e4, mid),
            **{f"imbalance_{k}": imbalance(cum("bid", k), cum("ask", k)) for k in depths},
            **{f"level_imbalance_{i}": imbalance(lv("bid", "amount", i), lv("ask", "amount", i))
               for i in range(1, BOOK_LEVELS)},
            **{f"ask_dist_bps_{i}": _div((lv("ask", "price", i) - mid) * 1e4, mid) for i in LEVELS},
            **{f"bid_dist_bps_{i}": _div((mid - lv("bid", "price", i)) * 1e4, mid) for i in LEVELS},
            **{f"{s}_vwap_5": _div(pl.col(f"_{s}_pq"), cum(s, BOOK_LEVELS)) for s in sides},
        )
        .with_columns(
            **{f"_{s}_dm": _total(dist(s, i) for i in LEVELS) / BOOK_LEVELS for s in sides},
            **{f"_{s}_qm": _total(cum(s, k) for k in depths) / BOOK_LEVELS for s in sides},
            **{f"{s}_wdist_bps": _div(_total(lv(s, "amount", i) * dist(s, i) for i in LEVELS), cum(s, BOOK_LEVELS))
               for s in sides},
            weighted_mid_5=_div(
                pl.col("ask_vwap_5") * pl.col("bid_depth_5") + pl.col("bid_vwap_5") * pl.col("ask_depth_5"),
                pl.col("bid_depth_5") + pl.col("ask_depth_5")),
        )
        .with_columns(**{f"_{s}_dd{i}": dist(s, i) - pl.col(f"_{s}_dm") for s in sides for i in LEVELS})
        .with_columns(
            **{f"{s}_slope": _div(_total(dev(s, i) * (cum(s, i + 1) - pl.col(f"_{s}_qm")) for i in LEVELS),
                                  _total(dev(s, i) ** 2 for i in LEVELS)) for s in sides},
            mid_realized_vol_bps=pl.col("rv").sqrt() * 1e4,
            mid_log_return=_log_ratio(mid, pl.col("start_mid")),
            mid_log_return_in_bucket=pl.when(pl.col("snapshot_count") > 0).then(_log_ratio(mid, pl.col("mid_first"))),
            **{f"{x}_mean": mean(x) for x in _STATS},
            **{f"{x}_std": std(x) for x in _STATS},
        )
        .select(FEATURE_COLUMNS)
    )


def _runs(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def _reduce(keys: np.ndarray, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Combine the rows (snapshots or 15s partials) of each run of equal sorted ``keys``:
    counts and sums added, the first ``mid_first``, min/max of the spread, and per statistic
    M2 = sum M2_j + sum n_j (mean_j - mean)^2 (a single snapshot is n 1, sum x, M2 0; a
    missing value n 0, sum 0, M2 0). NumPy adds each run from its own values only, so a run's
    sums do not depend on where it sits in the input (the chunking)."""
    starts = _runs(keys)
    out = {"b": keys[starts], "mid_first": cols["mid_first"][starts]}
    for name in ("snapshot_count", "ofi", "rv", *(f"{x}_{a}" for x in _STATS for a in ("n", "s"))):
        out[name] = np.add.reduceat(cols[name], starts)
    lengths = np.diff(np.append(starts, len(keys)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for x in _STATS:
            n, s = cols[f"{x}_n"], cols[f"{x}_s"]
            mean = np.repeat(out[f"{x}_s"] / out[f"{x}_n"], lengths)
            spread = np.where(n > 0, n * (s / n - mean) ** 2, 0.0)
            out[f"{x}_m2"] = np.add.reduceat(cols[f"{x}_m2"] + spread, starts)
    out["spread_bps_min"] = np.fmin.reduceat(cols["spread_bps_min"], starts)
    out["spread_bps_max"] = np.fmax.reduceat(cols["spread_bps_max"], starts)
    return out


def _sums_frame(out: dict[str, np.ndarray]) -> pl.DataFrame:
    """The reduced columns as a frame, NaN (no value) as null."""
    return pl.DataFrame({c: pl.Series(c, out[c], dtype=t, nan_to_null=True) for c, t in _SUMS.items()})


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
        rows = chunk.select(pl.col("timestamp").cast(pl.Int64).alias("ts"),
                            pl.col(BOOK_COLUMNS).cast(pl.Float64))
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
        """Append the 15s partials of complete buckets (see `_PART_SCHEMA`)."""
        if rows.is_empty():
            return
        snap = _per_snapshot(pl.concat([self._prev, rows]), self._prev.height > 0)
        cols = {"snapshot_count": np.ones(rows.height, np.int64), "mid_first": snap["_mid"],
                "ofi": snap["ofi"], "rv": snap["rv"], "spread_bps_min": snap["spread_bps"],
                "spread_bps_max": snap["spread_bps"]}  # fmin/fmax skip NaN
        for x in _STATS:
            value = snap[x]
            missing = np.isnan(value)
            cols |= {f"{x}_n": (~missing).astype(np.int64), f"{x}_s": np.where(missing, 0.0, value),
                     f"{x}_m2": np.zeros(rows.height)}
        keys = rows["b"].to_numpy()
        last = np.append(_runs(keys)[1:], len(keys)) - 1
        part = pl.concat([_sums_frame(_reduce(keys, cols)), rows.select(_STATE)[last]], how="horizontal")
        self._parts.append(part)
        self._prev = _compact(rows.tail(1))

    def _timeframe(self, parts: pl.DataFrame, tf: str) -> pl.DataFrame:
        """One timeframe from the 15s partials: the state of the last 15s partial ending at or
        before each bucket end and the mid of the one ending at or before its start (as-of
        joins), flows and statistics combined over the bucket's partials."""
        width = width_us(tf)
        day = parts.filter(pl.col("b") >= self._start)
        if day.is_empty():
            flows = pl.DataFrame(schema=_SUMS)
        else:
            b = day["b"].to_numpy()
            flows = _sums_frame(_reduce(b // width * width, {c: day[c].to_numpy() for c in _SUMS}))
        mid = (pl.col("asks[0].price") + pl.col("bids[0].price")) / 2
        start_mid = parts.select(pl.col("b").alias("start_b"), start_mid=mid.fill_nan(None))
        return (
            grid(self._date, tf)
            .lazy()
            .with_columns(last_b=pl.col("bucket") + (width - BASE), start_b=pl.col("bucket") - BASE)
            .join_asof(parts.lazy().select("b", *_STATE), left_on="last_b", right_on="b", strategy="backward")
            .with_columns(pl.col(BOOK_COLUMNS).fill_nan(None))  # NaN in the input reads as missing
            .join_asof(start_mid.lazy(), on="start_b", strategy="backward")
            .join(flows.lazy().rename({"b": "bucket"}), on="bucket", how="left", maintain_order="left")
            .with_columns(pl.col("snapshot_count", "ofi", "rv").fill_null(0))
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
