"""B6: live-path throughput, trades per second through normalisation and candle aggregation.

A synthetic Binance USDT-M day is encoded as ``trade`` messages (exchange format, as the
websocket delivers them; not timed), then fed in batches of ``max_batch`` frames to
`mdh_lib.streaming.Pipeline` in one process: NDJSON parse, normalisation to the raw trades
schema, trade-id dedupe, and 15s + 1m live candles from `trade_bars` as buckets close. The
websocket transport and warehouse writes are not in the figure (the reader only queues raw
frames; writes run on their own thread).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import time

import polars as pl

from mdh_lib.sample_server.synthetic import day_csv_gz
from mdh_lib.streaming import LIVE_TIMEFRAMES, Pipeline, StreamSettings, resolve, venue
from mdh_lib.streaming.replay import binance_trades

DATE = dt.date(2024, 3, 1)


def bench_streaming(trades: int) -> dict:
    raw = gzip.decompress(day_csv_gz("binance-futures", "trades", DATE, "BTCUSDT", trades))
    frame = pl.read_csv(io.BytesIO(raw), schema_overrides={"id": pl.String})
    encoded = binance_trades(frame, "btcusdt@trade", futures=True)
    received, messages = [t for t, _ in encoded], [m for _, m in encoded]
    v = venue("binance-futures")
    settings = StreamSettings()
    pipeline = Pipeline(v, resolve(v, "BTC-USDT"), LIVE_TIMEFRAMES, settings)
    step = settings.max_batch
    candles = 0
    t0 = time.perf_counter()
    for i in range(0, len(messages), step):
        _, (closed, _) = pipeline.process(received[i:i + step], messages[i:i + step])
        candles += sum(f.height for f in closed.values())
    candles += sum(f.height for f in pipeline.tick(received[-1], final=True)[0].values())
    seconds = time.perf_counter() - t0
    assert pipeline.counts.trades == len(messages), "the pipeline lost trades"
    return {"trades": len(messages), "seconds": seconds, "trades_per_s": len(messages) / seconds,
            "batch": step, "candles": candles}


if __name__ == "__main__":
    print(bench_streaming(1_000_000))
