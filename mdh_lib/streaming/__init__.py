"""Live streaming: exchange websockets -> normalised ticks, live candles and book features -> warehouse.

- `venues`: per-venue URL, subscription, message schemas and Tardis's normalisation
- `connection`: reconnects with backoff, stale-stream timeout, connection rotation
- `ticks`: batch parsing with malformed-frame isolation, trade-id deduplication
- `clock`: exchange time as the receiver knows it (what closes buckets)
- `live_candles`: the batch candle and book-feature code applied to each closed bucket
- `rest`: data only served over REST (Binance open interest), polled into the frame queue
- `gaps`: trades missed while disconnected, fetched back from the REST trade history
- `sinks`: warehouse writes off the event loop (Arrow tables only)
- `run`: the orchestration (`run_stream`), signals and ``--duration``
- `replay`: local websocket and REST stand-ins replaying exchange-format messages (tests, benchmarks)
"""

from mdh_lib.streaming.run import LIVE_TIMEFRAMES, Pipeline, StreamSettings, Summary, candle_lines, run_stream
from mdh_lib.streaming.venues import VENUES, StreamingError, resolve, venue

__all__ = ["LIVE_TIMEFRAMES", "VENUES", "Pipeline", "StreamSettings", "StreamingError", "Summary", "candle_lines",
           "resolve", "run_stream", "venue"]
