"""MFT (mid-frequency) features from candles: ``features/mft/{tf}`` for 1m, 5m, 15m, 1h, 4h, 24h.

One row per candle of the day, ``timestamp`` (bucket start, UTC) first, then Float64 features.
Windows are counted in bars (the candle grid is complete, so a window always spans the same
clock time) and always end at the current bar inclusive: a value at bar t only uses bars <= t.
Windows continue across midnight: pass the preceding candles as ``history``
(``history_bars(tf)`` of them make every window at the day's first bar identical to a
continuous computation).

Windows (bars) ``S`` = short, ``L`` = long:

    timeframe   1m   5m   15m   1h   4h          24h
    S            5    5     5    5    6 (1 day)   7 (1 week)
    L           60   60    60   60   30 (5 days) 30 (30 days)
    history     61   61    61   61   31          31

Notation, per bar t: ``c_t`` is the last traded price (``close`` forward-filled across empty
bars, as far back as history reaches), ``H, L, O, C`` the bar's own high/low/open/close (null on an
empty bar), ``V`` volume, ``B``/``S`` buy/sell taker volume (Tardis's exact aggressor side, no tick
rule), ``P`` vwap, ``r_t = ln(c_t / c_{t-1})``. Volumes are in the exchange's amount units, so
``V * P`` is the notional in quote currency (e.g. USD for a linear BTC-USDT contract).

    log_return                   r_t. Null until a price exists and on the first bar of the data;
                                 0 on an empty bar once a price exists (the price did not move).
    realized_vol_short / _long   sqrt(sum of r^2 over S / L bars). Per window, NOT annualized.
    realized_vol_long_annualized realized_vol_long * sqrt(bars_per_year / L), bars_per_year =
                                 365 * 86400 s / bar width (crypto trades every day).
    parkinson_vol_short / _long  sqrt(mean over the window of ln(H/L)^2 / (4 ln 2)). Per bar.
    garman_klass_vol_short/_long sqrt(mean over the window of 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2),
                                 using each bar's own open and close. Per bar (multiply Parkinson
                                 and Garman-Klass by sqrt(window) to compare with realized_vol).
    volume_zscore                (V_t - mean(V)) / std(V), mean and sample std (ddof 1) over the L
                                 bars ending at t (t included); null when std is 0.
    flow_imbalance               (B - S) / (B + S) of the bar; null when B + S = 0.
    flow_imbalance_short / _long sum(B - S) / sum(B + S) over S / L bars (volume-weighted).
    vpin                         sum |B - S| / sum V over L bars. A bar-based approximation of
                                 Easley-Lopez de Prado-O'Hara VPIN: clock-time bars instead of
                                 equal-volume buckets, exact taker side instead of bulk classification.
    amihud_illiquidity           mean over L bars of |r_t| / (V_t P_t); a bar with V P = 0 is excluded.
    kyle_lambda                  OLS slope (with intercept) of r_t on the signed notional
                                 (B_t - S_t) P_t over L bars: return per unit of quote currency of
                                 net taker flow. Empty bars are excluded (no flow, no vwap).
    roll_spread                  2 sqrt(-cov(r_t, r_{t-1})) over L bars (sample covariance, ddof 1,
                                 of the pairs whose both returns exist): Roll's effective spread in
                                 log (relative) units, multiply by price for quote units. Null when
                                 the covariance is >= 0, where Roll's model has no solution.

Minimum periods: realized volatility needs all S / L returns of its window. Every other windowed
feature needs at least ceil(window / 2) valid observations in its window (for volume sums, bars;
for Parkinson, Garman-Klass and Amihud, non-empty bars; for Kyle lambda and Roll spread, valid
pairs) and is null otherwise or when its denominator is 0. At the very start of the data a
window has fewer bars, which count as missing.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from mdh_lib.timeframes import DAY_US, MFT_TIMEFRAMES, width_us

# (short, long) windows in bars, per timeframe.
WINDOWS: dict[str, tuple[int, int]] = {
    "1m": (5, 60),
    "5m": (5, 60),
    "15m": (5, 60),
    "1h": (5, 60),
    "4h": (6, 30),
    "24h": (7, 30),
}
_FLOATS = ("open", "high", "low", "close", "volume", "vwap", "buy_volume_sum", "sell_volume_sum")
_TS = pl.Datetime("us", "UTC")


def _windows(timeframe: str) -> tuple[int, int]:
    if timeframe not in WINDOWS:
        raise ValueError(f"MFT features exist for {', '.join(MFT_TIMEFRAMES)}, not {timeframe!r}")
    return WINDOWS[timeframe]


def history_bars(timeframe: str) -> int:
    """Bars before the day that complete every window at its first bar: Roll's lagged return
    over the long window reaches L + 1 prices back."""
    return _windows(timeframe)[1] + 1


def _min(window: int) -> int:
    return (window + 1) // 2


def _sum(x: pl.Expr, window: int) -> pl.Expr:
    return x.rolling_sum(window, min_samples=_min(window))


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null (not inf or NaN) where den is 0."""
    return pl.when(den != 0).then(num / den)


def _pair_stats(x: str, y: str, window: int) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Window count, covariance numerator n*Sxy - Sx*Sy and n*Sxx - Sx^2 over the pairs where
    both x and y exist (pairwise deletion, as SQL's regr_*/covar_* do)."""
    ok = pl.col(x).is_not_null() & pl.col(y).is_not_null()

    def s(e: pl.Expr) -> pl.Expr:
        return pl.when(ok).then(e).otherwise(0.0).rolling_sum(window, min_samples=1)

    n, sx, sy = s(pl.lit(1.0)), s(pl.col(x)), s(pl.col(y))
    enough = n >= max(_min(window), 2)
    cov = pl.when(enough).then(n * s(pl.col(x) * pl.col(y)) - sx * sy)
    var = pl.when(enough).then(n * s(pl.col(x) ** 2) - sx**2)
    return n, cov, var


def mft_features(day: pl.DataFrame, history: pl.DataFrame | None, timeframe: str) -> pl.DataFrame:
    """The day's MFT features (module docstring), one row per row of ``day``, continuing the
    rolling windows from ``history`` (the candles just before ``day``; None at the start of data)."""
    short, long = _windows(timeframe)
    width = width_us(timeframe)
    frames = [f.select(pl.col("timestamp").cast(_TS), *(pl.col(c).cast(pl.Float64) for c in _FLOATS))
              for f in (history, day) if f is not None]
    if history is not None and history.height and day.height and (
            frames[1]["timestamp"][0] - frames[0]["timestamp"][-1]) != dt.timedelta(microseconds=width):
        raise ValueError("history must end on the bar just before the day's first bar")
    ln2 = math.log(2.0)
    bars = pl.concat(frames).with_columns(
        r=pl.col("close").forward_fill().log().diff(),
        hl2=(pl.col("high") / pl.col("low")).log() ** 2,
        co2=(pl.col("close") / pl.col("open")).log() ** 2,
        notional=pl.col("volume") * pl.col("vwap"),
        net=pl.col("buy_volume_sum") - pl.col("sell_volume_sum"),
        gross=pl.col("buy_volume_sum") + pl.col("sell_volume_sum"),
    ).with_columns(
        r_prev=pl.col("r").shift(1),
        pk=pl.col("hl2") / (4 * ln2),
        gk=0.5 * pl.col("hl2") - (2 * ln2 - 1) * pl.col("co2"),
        illiq=pl.when(pl.col("notional") > 0).then(pl.col("r").abs() / pl.col("notional")),
        flow=pl.col("net") * pl.col("vwap"),
    )
    _, kyle_cov, kyle_var = _pair_stats("flow", "r", long)
    roll_n, roll_cov, _ = _pair_stats("r", "r_prev", long)
    roll_cov = roll_cov / (roll_n * (roll_n - 1))
    vol_std = pl.col("volume").rolling_std(long, min_samples=_min(long))
    rv = {w: (pl.col("r") ** 2).rolling_sum(w, min_samples=w).sqrt() for w in (short, long)}
    out = bars.select(
        "timestamp",
        log_return="r",
        realized_vol_short=rv[short],
        realized_vol_long=rv[long],
        realized_vol_long_annualized=rv[long] * math.sqrt(DAY_US * 365 / width / long),
        parkinson_vol_short=pl.col("pk").rolling_mean(short, min_samples=_min(short)).sqrt(),
        parkinson_vol_long=pl.col("pk").rolling_mean(long, min_samples=_min(long)).sqrt(),
        garman_klass_vol_short=pl.col("gk").rolling_mean(short, min_samples=_min(short)).sqrt(),
        garman_klass_vol_long=pl.col("gk").rolling_mean(long, min_samples=_min(long)).sqrt(),
        volume_zscore=_ratio(pl.col("volume") - pl.col("volume").rolling_mean(long, min_samples=_min(long)), vol_std),
        flow_imbalance=_ratio(pl.col("net"), pl.col("gross")),
        flow_imbalance_short=_ratio(_sum(pl.col("net"), short), _sum(pl.col("gross"), short)),
        flow_imbalance_long=_ratio(_sum(pl.col("net"), long), _sum(pl.col("gross"), long)),
        vpin=_ratio(_sum(pl.col("net").abs(), long), _sum(pl.col("volume"), long)),
        amihud_illiquidity=pl.col("illiq").rolling_mean(long, min_samples=_min(long)),
        kyle_lambda=pl.when(kyle_var > 0).then(kyle_cov / kyle_var),
        roll_spread=pl.when(roll_cov < 0).then(2 * (-roll_cov).sqrt()),
    )
    return out.tail(day.height)
