"""Live streaming: exchange websockets -> normalised ticks and live candles -> warehouse.

- `venues`: per-venue URL, subscription, message schema and Tardis-style normalisation
- `connection`: reconnects with backoff, stale-stream timeout, connection rotation
- `ticks`: batch parsing with malformed-frame isolation, trade-id deduplication
- `live_candles`: the batch candle code applied to each closed bucket
- `sinks`: warehouse writes off the event loop
- `run`: the orchestration (`run_stream`), signals and ``--duration``
- `replay`: a local websocket server replaying exchange-format messages (tests, benchmarks)
"""

from mdh_lib.streaming.run import LIVE_TIMEFRAMES, Pipeline, StreamSettings, Summary, candle_lines, run_stream
from mdh_lib.streaming.venues import VENUES, StreamingError, resolve, venue

__all__ = ["LIVE_TIMEFRAMES", "VENUES", "Pipeline", "StreamSettings", "StreamingError", "Summary", "candle_lines",
           "resolve", "run_stream", "venue"]
