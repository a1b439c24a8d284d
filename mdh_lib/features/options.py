"""Options-chain features of one underlying for one day: ``features/options/date=D/{underlying_slug}.parquet``.

Input: the Tardis ``options_chain`` rows of ONE underlying (e.g. the ``BTC-*`` symbols of
Deribit's grouped ``OPTIONS`` file) with Tardis's columns and units (timestamps int64 us,
``mark_iv`` in percent as Deribit gives it), sorted by ``timestamp``. Every option appears as
repeated snapshots; any cell may be empty.

Output: one row per 15s bucket of the day's full grid (5,760 rows; buckets are [start, end) on
the exchange ``timestamp``, labelled by ``timestamp`` = start, UTC). Each row describes the chain
AS OF THE BUCKET END: every option is represented by its last snapshot with ``timestamp < end``
(snapshots stamped before the day start are the initial state, carried over from the previous
day by `mdh_lib.candles.day_inputs.day_as_of`; nothing at or after the end is used), taken as
it is: a null cell in that snapshot is missing, never filled from an older one.

Terms, at a bucket end t:

- forward F of an expiry: the ``underlying_price`` of the most recent of its options' current
  snapshots that carries one (Deribit quotes each expiry against its own future or synthetic
  forward, so expiries differ by the basis).
- eligible expiry: expiration >= t + 24 h (strictly after t, and expiry-day noise does not
  dominate) with at least one call and one put whose ``mark_iv`` is present.
- nearest expiry: the earliest eligible expiry.
- ATM IV of an expiry: per strike, the mean of the call's and the put's ``mark_iv`` (the one
  present if only one is), then linear in strike at F between the two strikes bracketing F
  (a strike equal to F is used as is); the nearest strike's IV when F is outside the strikes.
- 25-delta IVs of an expiry: ``mark_iv`` linear in Deribit's ``delta`` between the two puts
  bracketing delta -0.25 (resp. the two calls bracketing +0.25; an exact hit is used as is).
  Null when that delta is not bracketed: the nearest option may be far from 25 delta.

Columns:

    timestamp                    bucket start, Datetime(us, UTC)
    underlying_price             F of the nearest expiry (the price atm_mark_iv is read at)
    nearest_expiry               expiration of the nearest expiry, Datetime(us, UTC)
    nearest_expiry_days          (nearest_expiry - bucket end) in days (float, >= 1)
    atm_mark_iv                  ATM IV of the nearest expiry, percent
    skew_25d_put_call_ratio      25-delta put IV / 25-delta call IV of the nearest expiry
                                 (> 1: puts richer); null when either is null
    atm_mark_iv_30d              ATM IV at 30 days to expiry from the eligible expiries that have
                                 one: total variance IV^2 * days linear in days between the two
                                 bracketing 30 days; if 30 days is not bracketed, the ATM IV of the
                                 expiry closest to 30 days (flat extrapolation on that side)
    skew_25d_put_call_ratio_30d  the skew ratio at 30 days from the eligible expiries that have
                                 one: linear in days between the two bracketing 30 days, else the
                                 ratio of the expiry closest to 30 days
    options_count                options (symbols) not yet expired at the bucket end with a snapshot
                                 before it (what a continuous stream shows; an expired option's
                                 state does not carry into the next day)
    put_call_oi_ratio            sum of open_interest of puts / of calls over the options not yet
                                 expired at the bucket end; null when the calls' sum is 0

Every feature is null while its inputs are missing: before the first snapshots, when no expiry
is eligible (e.g. the last listed one is less than a day away), or as stated above.

``options_columns`` gives the per-timeframe view the candles of the underlying's instruments
join on: ``atm_mark_iv`` and ``skew_25d_put_call_ratio`` as of each candle's end.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from mdh_lib.features.sums import ordered_sum
from mdh_lib.timeframes import DAY_US, bucket_start, day_start_us, grid, to_datetime, width_us

STEP = "15s"
TARGET_DAYS = 30.0
MIN_EXPIRY_US = DAY_US  # the nearest expiry is at least 24 h away
BY = ["expiration", "bucket"]
COLUMNS = [
    "timestamp", "underlying_price", "nearest_expiry", "nearest_expiry_days", "atm_mark_iv",
    "skew_25d_put_call_ratio", "atm_mark_iv_30d", "skew_25d_put_call_ratio_30d", "options_count",
    "put_call_oi_ratio",
]
X0, Y0, X1, Y1, AT = (pl.col(c) for c in ("x0", "y0", "x1", "y1", "at"))


def _bracket(at: pl.DataFrame, points: pl.DataFrame, by: list[str], x: str, y: str) -> pl.DataFrame:
    """``at`` (columns ``by`` and ``at``) with the closest points of the same group on either side:
    (x0, y0) with x0 <= at and (x1, y1) with x1 >= at, from the points where x and y are present."""
    below = points.drop_nulls([x, y]).select(*by, x0=x, y0=y).sort("x0")
    above = below.rename({"x0": "x1", "y0": "y1"})
    return (
        at.sort("at")
        .join_asof(below, left_on="at", right_on="x0", by=by, strategy="backward", check_sortedness=False)
        .join_asof(above, left_on="at", right_on="x1", by=by, strategy="forward", check_sortedness=False)
    )


def _between(y0: pl.Expr, y1: pl.Expr) -> pl.Expr:
    """Linear in x at ``at`` between the bracketing points (an exact hit is the point itself)."""
    return pl.when(X0 == X1).then(y0).otherwise(y0 + (y1 - y0) * (AT - X0) / (X1 - X0))


def _snapshots(chain: pl.DataFrame, date: dt.date) -> pl.DataFrame:
    """Each option's last snapshot per 15s bucket it changed in (pre-day snapshots in bucket 0)."""
    start = day_start_us(date)
    return (
        chain.lazy()
        .filter(pl.col("timestamp") < start + DAY_US)
        .select(
            pl.max_horizontal(bucket_start("timestamp", STEP), pl.lit(start)).alias("bucket"),
            "symbol", "timestamp", pl.col("expiration").cast(pl.Int64), (pl.col("type") == "call").alias("call"),
            "strike_price", "mark_iv", "delta", "underlying_price", "open_interest",
        )
        .unique(["symbol", "bucket"], keep="last", maintain_order=True)
        .sort("bucket", maintain_order=True)
        .collect()
    )


def _wing_iv(state: pl.DataFrame, groups: pl.DataFrame, call: bool, delta: float) -> pl.DataFrame:
    """mark_iv at ``delta`` per expiry and bucket, linear in delta over the calls (or puts)."""
    at = groups.with_columns(at=pl.lit(delta))
    return _bracket(at, state.filter(pl.col("call") == call), BY, "delta", "mark_iv").select(*BY, iv=_between(Y0, Y1))


def _expiry_states(snaps: pl.DataFrame) -> pl.DataFrame:
    """Per expiry, at each bucket where one of its options changed, the expiry's summary as of that
    bucket end. Only those buckets are evaluated: the summary holds until the next change."""
    keys = (
        snaps.select(BY).unique()
        .join(snaps.select("expiration", "symbol").unique(), on="expiration")
        .sort("bucket")
    )
    state = (
        keys.join_asof(snaps, on="bucket", by=["expiration", "symbol"], check_sortedness=False)
        .drop_nulls("timestamp")
        .sort("timestamp")
    )
    call, quoted, oi = pl.col("call"), pl.col("mark_iv").is_not_null(), pl.col("open_interest")
    summary = state.group_by(BY).agg(
        forward=pl.col("underlying_price").drop_nulls().last(),
        has_calls=(call & quoted).any(),
        has_puts=(~call & quoted).any(),
        call_oi=ordered_sum(pl.when(call).then(oi)),
        put_oi=ordered_sum(pl.when(~call).then(oi)),
    )
    strikes = state.group_by(*BY, "strike_price").agg(pl.col("mark_iv").mean())
    atm = _bracket(summary.select(*BY, at="forward"), strikes, BY, "strike_price", "mark_iv").select(
        *BY, atm_iv=pl.coalesce(_between(Y0, Y1), Y0, Y1)
    )
    groups = summary.select(BY)
    skew = _wing_iv(state, groups, False, -0.25).join(_wing_iv(state, groups, True, 0.25), on=BY, suffix="_call")
    return (
        summary.join(atm, on=BY, how="left")
        .join(skew.select(*BY, skew=pl.col("iv") / pl.col("iv_call")), on=BY, how="left")
        .sort("bucket")
    )


def _panel(states: pl.DataFrame, date: dt.date) -> pl.DataFrame:
    """Every expiry's summary as of each 15s bucket end, with days to expiry and eligibility."""
    return (
        grid(date, STEP).with_columns(end=pl.col("bucket") + width_us(STEP))
        .join(states.select("expiration").unique(), how="cross")
        .sort("bucket")
        .join_asof(states, on="bucket", by="expiration", check_sortedness=False)
        .drop_nulls("has_calls")
        .with_columns(
            days=(pl.col("expiration") - pl.col("end")) / DAY_US,
            eligible=pl.col("has_calls") & pl.col("has_puts")
            & (pl.col("expiration") - pl.col("end") >= MIN_EXPIRY_US),
        )
    )


def _at_30d(eligible: pl.DataFrame, y: str, total_variance: bool) -> pl.DataFrame:
    """``y`` at 30 days per bucket from the eligible expiries (the closest one if not bracketed)."""
    at = eligible.select(pl.col("bucket").unique(), at=pl.lit(TARGET_DAYS))
    inside = (_between(Y0**2 * X0, Y1**2 * X1) / AT).sqrt() if total_variance else _between(Y0, Y1)
    return _bracket(at, eligible, ["bucket"], "days", y).select("bucket", pl.coalesce(inside, Y0, Y1).alias(f"{y}_30d"))


def _live_changes(snaps: pl.DataFrame) -> pl.DataFrame:
    """Per 15s bucket, options that count from it on (first snapshot) minus those that stop (the
    first bucket whose end reaches their expiration)."""
    width = width_us(STEP)
    live = (
        snaps.group_by("symbol")
        .agg(pl.col("bucket").min(), expired=(pl.col("expiration").first() - 1) // width * width)
        .filter(pl.col("bucket") < pl.col("expired"))
    )
    return (
        pl.concat([live.select("bucket", change=pl.lit(1)), live.select(bucket="expired", change=pl.lit(-1))])
        .group_by("bucket").agg(pl.col("change").sum())
    )


def options_features(chain: pl.DataFrame, date: dt.date) -> pl.DataFrame:
    """The day's 15s options-chain features of one underlying (see the module docstring)."""
    snaps = _snapshots(chain, date)
    panel = _panel(_expiry_states(snaps), date)
    eligible = panel.filter("eligible")
    nearest = eligible.sort("bucket", "expiration").group_by("bucket", maintain_order=True).first().select(
        "bucket",
        underlying_price="forward",
        nearest_expiry=pl.col("expiration").cast(pl.Datetime("us", "UTC")),
        nearest_expiry_days="days",
        atm_mark_iv="atm_iv",
        skew_25d_put_call_ratio="skew",
    )
    oi = (
        panel.filter(pl.col("expiration") > pl.col("end"))
        .sort("bucket", "expiration")
        .group_by("bucket").agg(ordered_sum(pl.col("put_oi")), ordered_sum(pl.col("call_oi")))
        .select("bucket", put_call_oi_ratio=pl.when(pl.col("call_oi") > 0).then(pl.col("put_oi") / pl.col("call_oi")))
    )
    out = grid(date, STEP)
    for part in (nearest, _at_30d(eligible, "atm_iv", True), _at_30d(eligible, "skew", False), oi, _live_changes(snaps)):
        out = out.join(part, on="bucket", how="left")
    return (
        out.sort("bucket")
        .with_columns(
            to_datetime(),
            atm_mark_iv_30d="atm_iv_30d",
            skew_25d_put_call_ratio_30d="skew_30d",
            options_count=pl.col("change").fill_null(0).cum_sum().cast(pl.Int64),
        )
        .select(COLUMNS)
    )


def options_columns(features: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """``timestamp, atm_mark_iv, skew_25d_put_call_ratio`` per ``timeframe`` bucket, as of the bucket
    end (the bucket's last 15s row): what the underlying's candles join on."""
    return (
        features.sort("timestamp")
        .group_by(bucket_start(pl.col("timestamp").dt.epoch("us"), timeframe).alias("bucket"), maintain_order=True)
        .agg(pl.col("atm_mark_iv", "skew_25d_put_call_ratio").last())
        .select(to_datetime(), "atm_mark_iv", "skew_25d_put_call_ratio")
    )
