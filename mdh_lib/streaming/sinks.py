"""Warehouse writes for the live path, off the event loop.

It takes Arrow tables only (immutable: the event loop converts its polars frames before
handing them over, so no mutable object is shared between the threads). One background
thread writes (`Warehouse.stream_rows`: DuckDB appends, BigQuery streaming
inserts), so a slow write never stalls the websocket reader. Frames queued for the same
table while a write was running are written together. A failed write is retried with
backoff; rows that still cannot be written are counted and logged (the stream goes on).
At most ``MAX_QUEUED`` frames wait: a warehouse slower than the stream slows the stream
(which then backs up to the websocket) instead of growing memory. `close` writes
everything queued before it returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter

import pyarrow as pa

from mdh_lib.warehouse import open_warehouse

log = logging.getLogger("mdh.streaming")
_RETRIES = (0.2, 0.5, 1.0)
MAX_QUEUED = 256  # frames waiting for the writer; when full, `put` waits (backpressure, bounded memory)


class WarehouseSink:
    def __init__(self, url: str | None = None):
        self.warehouse = open_warehouse(url)
        self.written: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._queue: queue.Queue = queue.Queue(MAX_QUEUED)
        self._thread = threading.Thread(target=self._work, name="mdh-warehouse-sink", daemon=True)
        self._thread.start()

    def put(self, table: str, frame: pa.Table) -> None:
        if frame.num_rows:
            self._queue.put((table, frame))

    def _work(self) -> None:
        done = False
        while not done:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending: dict[str, list[pa.Table]] = {}
            for item in items:
                if item is None:
                    done = True
                else:
                    pending.setdefault(item[0], []).append(item[1])
            for table, frames in pending.items():
                self._write(table, pa.concat_tables(frames))

    def _write(self, table: str, frame: pa.Table) -> None:
        for delay in (*_RETRIES, None):
            try:
                self.written[table] += self.warehouse.stream_rows(table, frame)
                return
            except Exception as exc:  # the stream must go on: retried, then counted and logged
                if delay is None:
                    self.failed[table] += frame.num_rows
                    log.error("could not write %d row(s) to %s: %s", frame.num_rows, table, exc)
                    return
                time.sleep(delay)

    def close(self) -> None:
        """Write everything queued, then stop."""
        self._queue.put(None)
        self._thread.join()
        self.warehouse.close()
