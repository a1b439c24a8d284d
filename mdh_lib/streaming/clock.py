"""Exchange time as this receiver knows it: what closes live buckets.

Buckets are defined on the exchange ``timestamp``, so they close on exchange time, never on
the receive clock: a replay of an old day, a backlog drained after a burst or a CPU stall, or
a host clock that is off all leave the close decisions unchanged.

- ``watermark``: the latest exchange time of any message seen (trades, liquidations, ticker
  and book updates that carry the exchange's time). Everything up to it has been sent.
- ``offset``: receive time minus exchange time of the message that set the watermark (the
  network latency plus the two clocks' difference, measured, not assumed).
- `estimate`: exchange time now, for a quiet market only: ``now - offset``. The processor
  asks for it only after waiting for frames and finding none (`mdh_lib.streaming.run`), so a
  queue or socket backlog never moves it: while frames wait, only the watermark closes buckets.
"""

from __future__ import annotations

import polars as pl


class ExchangeClock:
    def __init__(self) -> None:
        self.watermark: int | None = None
        self.offset: int | None = None

    def observe(self, times: pl.DataFrame) -> None:
        """``times``: ``timestamp`` (exchange) and ``local_timestamp`` (receive), microseconds."""
        times = times.drop_nulls()
        if times.is_empty():
            return
        i = times["timestamp"].arg_max()
        ts = times["timestamp"][i]
        if self.watermark is None or ts >= self.watermark:
            self.watermark, self.offset = ts, times["local_timestamp"][i] - ts

    def estimate(self, now_us: int) -> int | None:
        """Exchange time at receive time ``now_us`` (None before any message)."""
        return None if self.offset is None else max(now_us - self.offset, self.watermark)
