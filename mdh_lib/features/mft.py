"""MFT (mid-frequency) features from candles: ``features/mft/{tf}`` for 1m, 5m, 15m, 1h, 4h, 24h.

One row per candle of the day, ``timestamp`` (bucket start, UTC) first, then the Float64 columns
of ``FEATURES``. Windows are counted in bars (the candle grid is complete, so a window always
spans the same clock time) and end at the current bar inclusive: a value at bar t uses bars <= t
only. Windows continue across midnight: pass the preceding candles as ``history``;
``history_bars(tf)`` of them make every window at the day's first bar the same as in one
continuous computation. Each window is summed from scratch, so a window where nothing traded gives
exactly 0 or null, never rounding residue.

Windows in bars, ``Ws`` short and ``Wl`` long (``WINDOWS``):

    timeframe   1m   5m   15m   1h   4h          24h
    Ws           5    5     5    5    6 (1 day)   7 (1 week)
    Wl          60   60    60   60   30 (5 days) 30 (30 days)
    history     61   61    61   61   31          31

Notation, per bar t: ``c_t`` is the last traded price (``close`` forward-filled across empty
bars, as far back as the history given reaches), ``O, H, L, C`` the bar's own open/high/low/close
(null on an empty bar), ``V`` volume, ``B``/``S`` buy/sell taker volume (``buy_volume_sum`` /
``sell_volume_sum``: Tardis's exact aggressor side, no tick rule), ``P`` vwap,
``r_t = ln(c_t / c_{t-1})``. Volumes are in the exchange's amount units, so ``V P`` is the
notional in quote currency (e.g. USDT for a linear BTC-USDT contract).

    log_return                   r_t. Null until a price exists and on the first bar of the data;
                                 0 on an empty bar once a price exists (the price did not move).
    realized_vol_short / _long   sqrt(sum of r^2 over Ws / Wl bars). Over the window, NOT annualized.
    realized_vol_long_annualized realized_vol_long * sqrt(bars_per_year / Wl), bars_per_year =
                                 365 * 86400 s / bar width (crypto trades every day).
    parkinson_vol_short / _long  sqrt(mean over Ws / Wl bars of ln(H/L)^2 / (4 ln 2)). Per bar.
    garman_klass_vol_short/_long sqrt(mean over Ws / Wl bars of 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2),
                                 each bar's own open and close. Per bar: multiply Parkinson and
                                 Garman-Klass by sqrt(window) to compare with realized_vol.
                                 Empty bars are left out of both means.
    volume_zscore                (V_t - mean V) / std V, mean and sample std (ddof 1) over the Wl
                                 bars ending at t (t included); null when std is 0.
    flow_imbalance               (B - S) / (B + S) of the bar; null when B + S = 0.
    flow_imbalance_short / _long sum(B - S) / sum(B + S) over Ws / Wl bars (volume-weighted).
    vpin                         sum |B - S| / sum V over Wl bars: a bar-based approximation of
                                 Easley-Lopez de Prado-O'Hara VPIN, clock-time bars instead of
                                 equal-volume buckets, exact taker side instead of bulk classification.
    amihud_illiquidity           mean over Wl bars of |r_t| / (V_t P_t); bars with V P = 0 left out.
    kyle_lambda                  OLS slope (with intercept) of r_t on the signed notional
                                 (B_t - S_t) P_t over Wl bars: log return per unit of quote currency
                                 of net taker buying. Empty bars are left out (no vwap).
    roll_spread                  2 sqrt(-cov(r_t, r_{t-1})) over Wl bars (sample covariance, ddof 1,
                                 of the pairs where both returns exist): Roll's effective spread in
                                 log (relative) units, multiply by the price for quote units. Null
                                 when the covariance is >= 0, where Roll's model has no solution.

Minimum periods: realized volatility needs all Ws / Wl returns of its window. Every other windowed
feature needs at least ceil(window / 2) valid observations in its window (bars for the volume
sums and the z-score; non-empty bars for Parkinson, Garman-Klass and Amihud; pairs for Kyle lambda
and Roll, and at least 2) and is null otherwise or when its denominator is 0. At the very start of
the data a window has fewer bars; the missing ones count as not valid.
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
FEATURES = (
    "log_return", "realized_vol_short", "realized_vol_long", "realized_vol_long_annualized",
    "parkinson_vol_short", "parkinson_vol_long", "garman_klass_vol_short", "garman_klass_vol_long",
    "volume_zscore", "flow_imbalance", "flow_imbalance_short", "flow_imbalance_long", "vpin",
    "amihud_illiquidity", "kyle_lambda", "roll_spread",
)
_FLOATS = ("open", "high", "low", "close", "volume", "vwap", "buy_volume_sum", "sell_volume_sum")
_TS = pl.Datetime("us", "UTC")


def _windows(timeframe: str) -> tuple[int, int]:
    if timeframe not in WINDOWS:
        raise ValueError(f"MFT features exist for {', '.join(MFT_TIMEFRAMES)}, not {timeframe!r}")
    return WINDOWS[timeframe]


def history_bars(timeframe: str) -> int:
    """Bars before the day that complete every window at its first bar: Roll's pair (r_t, r_{t-1})
    at the start of the long window needs the close Wl + 1 bars before."""
    return _windows(timeframe)[1] + 1


def _min(window: int) -> int:
    return (window + 1) // 2


def _n(c: str) -> pl.Expr:
    """Valid (non-null) values in the window."""
    return pl.col(c).list.drop_nulls().list.len()


def _sum(c: str) -> pl.Expr:
    return pl.col(c).list.sum()


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den, null (not inf or NaN) where den is 0."""
    return pl.when(den != 0).then(num / den)


def _windows_of(bars: pl.DataFrame, window: int) -> pl.DataFrame:
    """Each bar's last ``window`` bars as lists, so every window is summed from scratch: polars'
    sliding rolling sums drift (a window of zeros after trading sums to about 1e-15, not 0), which
    would turn "nothing traded" into tiny non-null imbalances, spreads and volatilities."""
    return (bars.with_columns(i=pl.int_range(pl.len(), dtype=pl.Int64))
            .rolling("i", period=f"{window}i").agg(pl.exclude("i", "timestamp")))


def _bar_inputs(bars: pl.DataFrame) -> pl.DataFrame:
    """Per-bar terms whose window sums and means make the features (module docstring)."""
    ln2 = math.log(2.0)
    r, r_prev = pl.col("r"), pl.col("r").shift(1)
    hl2 = (pl.col("high") / pl.col("low")).log() ** 2
    net = pl.col("buy_volume_sum") - pl.col("sell_volume_sum")
    flow = net * pl.col("vwap")
    notional = pl.col("volume") * pl.col("vwap")
    kyle_ok = flow.is_not_null() & r.is_not_null()
    roll_ok = r.is_not_null() & r_prev.is_not_null()
    c = pl.col("close").forward_fill()
    # ln(c_t / c_{t-1}) as log1p of the relative change: c_t - c_{t-1} is exact for nearby
    # prices, so a 1e-5 return keeps every digit (a difference of logs loses about five)
    return bars.with_columns(r=((c - c.shift(1)) / c.shift(1)).log1p()).select(
        "timestamp", "volume", "r",
        r2=r**2,
        pk=hl2 / (4 * ln2),
        gk=0.5 * hl2 - (2 * ln2 - 1) * (pl.col("close") / pl.col("open")).log() ** 2,
        net=net,
        abs_net=net.abs(),
        gross=pl.col("buy_volume_sum") + pl.col("sell_volume_sum"),
        illiq=pl.when(notional > 0).then(r.abs() / notional),
        kx=pl.when(kyle_ok).then(flow),
        ky=pl.when(kyle_ok).then(r),
        kxy=pl.when(kyle_ok).then(flow * r),
        kxx=pl.when(kyle_ok).then(flow**2),
        rx=pl.when(roll_ok).then(r),
        ry=pl.when(roll_ok).then(r_prev),
        rxy=pl.when(roll_ok).then(r * r_prev),
    )


def mft_features(day: pl.DataFrame, history: pl.DataFrame | None, timeframe: str) -> pl.DataFrame:
    """The day's MFT features (module docstring), one row per row of ``day``, continuing the
    rolling windows from ``history`` (the candles just before ``day``; None at the start of data)."""
    short, long = _windows(timeframe)
    width = width_us(timeframe)
    candles = pl.concat([f.select(pl.col("timestamp").cast(_TS), *(pl.col(c).cast(pl.Float64) for c in _FLOATS))
                         for f in (history, day) if f is not None])
    if (candles["timestamp"].diff().drop_nulls() != dt.timedelta(microseconds=width)).any():
        raise ValueError(f"history + day must be consecutive {timeframe} bars (a gap would misplace every window)")
    bars = _bar_inputs(candles)
    win_s, win_l = _windows_of(bars, short), _windows_of(bars, long)

    def rv(window: int) -> pl.Expr:
        return pl.when(_n("r2") == window).then(_sum("r2").sqrt())

    def root_mean(c: str, window: int) -> pl.Expr:
        return pl.when(_n(c) >= _min(window)).then(pl.col(c).list.mean().sqrt())

    def imbalance(window: int) -> pl.Expr:
        return pl.when(pl.col("gross").list.len() >= _min(window)).then(_ratio(_sum("net"), _sum("gross")))

    m, m_pairs = _min(long), max(_min(long), 2)
    kn, kx, ky = _n("kx"), _sum("kx"), _sum("ky")
    rn, rx, ry = _n("rx"), _sum("rx"), _sum("ry")
    roll_cov = pl.when(rn >= m_pairs).then((_sum("rxy") - rx * ry / rn) / (rn - 1))
    volume_std = pl.col("volume").list.std()
    out = pl.concat([
        bars.select("timestamp", log_return="r", flow_imbalance=_ratio(pl.col("net"), pl.col("gross"))),
        win_l.select(realized_vol_long=rv(long)).with_columns(
            realized_vol_long_annualized=pl.col("realized_vol_long") * math.sqrt(DAY_US * 365 / width / long)),
        win_s.select(realized_vol_short=rv(short), parkinson_vol_short=root_mean("pk", short),
                     garman_klass_vol_short=root_mean("gk", short), flow_imbalance_short=imbalance(short)),
        win_l.select(
            parkinson_vol_long=root_mean("pk", long),
            garman_klass_vol_long=root_mean("gk", long),
            volume_zscore=pl.when(pl.col("volume").list.len() >= m).then(
                _ratio(pl.col("volume").list.last() - pl.col("volume").list.mean(), volume_std)),
            flow_imbalance_long=imbalance(long),
            vpin=pl.when(pl.col("volume").list.len() >= m).then(_ratio(_sum("abs_net"), _sum("volume"))),
            amihud_illiquidity=pl.when(_n("illiq") >= m).then(pl.col("illiq").list.mean()),
            kyle_lambda=pl.when(kn >= m_pairs).then(_ratio(kn * _sum("kxy") - kx * ky, kn * _sum("kxx") - kx**2)),
            roll_spread=pl.when(roll_cov < 0).then(2 * (-roll_cov).sqrt()),
        ),
    ], how="horizontal")
    return out.select("timestamp", *FEATURES).tail(day.height)
