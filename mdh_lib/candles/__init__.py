"""Candles 15s..24h with HFT, derivative and options columns (SPEC section 6)."""

from mdh_lib.candles.build import CANDLE_COLUMNS, candles, day_rows
from mdh_lib.frames import Instrument
from mdh_lib.candles.trades import trade_bars

__all__ = ["CANDLE_COLUMNS", "Instrument", "candles", "day_rows", "trade_bars"]
