"""The candle path run many times on a replay, under a watchdog: any hang fails the test.

The deadlock this guards against: the event-loop thread printing a candle (`iter_rows`) while
the warehouse thread converted the same polars frame to Arrow. Each run here prints every
candle (as `mdh streaming-candles` does) while the sink writes candles and ticks to DuckDB.
The runs happen in a child process; the watchdog gives each run a deadline, and on a miss
dumps every thread's stack (faulthandler, SIGUSR1) into the failure, then kills the child.
``MDH_HANG_RUNS`` sets the number of runs (default 60; the acceptance figure is 500).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from conftest import REAL, REPO

pytestmark = pytest.mark.timeout(300)
RUN_DEADLINE = 30.0  # seconds one run may take before it counts as hung (a run takes ~0.1 s)

CHILD = r"""
import asyncio, faulthandler, io, os, signal, sys
import polars as pl
from mdh_lib.streaming import candle_lines, resolve, venue
from mdh_lib.streaming.run import LiveStream, StreamSettings
from mdh_lib.streaming.replay import ReplayServer, binance_trades, merged

faulthandler.register(signal.SIGUSR1, all_threads=True)
runs, src, wh = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if src:
    rows = pl.read_csv(src, schema_overrides={"id": pl.String}).head(1_500)
else:  # no real file here: 1,500 synthetic trades 700 ms apart (17.5 minutes)
    n = 1_500
    rows = pl.DataFrame({"exchange": "binance-futures", "symbol": "BTCUSDT",
                         "timestamp": [1_582_329_602_000_000 + i * 700_000 for i in range(n)],
                         "local_timestamp": [1_582_329_602_300_000 + i * 700_000 for i in range(n)],
                         "id": [str(42_000_000 + i) for i in range(n)],
                         "side": ["buy" if i % 3 else "sell" for i in range(n)],
                         "price": [9_682.0 + (i % 89) * 0.5 for i in range(n)],
                         "amount": [0.001 * (1 + i % 13) for i in range(n)]})
messages = merged(binance_trades(rows, "btcusdt@trade", futures=True))
v = venue("binance-futures")
instrument = resolve(v, "BTCUSDT")
settings = StreamSettings(flush_interval=0.05)
out = io.StringIO()

def show(frame):
    out.seek(0)
    out.truncate()
    print(*candle_lines(frame), sep="\n", file=out)

async def one():
    live = LiveStream(v, instrument, ticks=True, timeframes=("15s", "1m"), warehouse=wh, settings=settings,
                      on_candles=show)
    task = asyncio.create_task(live.run(0))
    while live.pipeline.counts.messages < len(messages) and not task.done():
        await asyncio.sleep(0.005)
    live.stop()
    return await task

for i in range(runs):
    with ReplayServer(messages) as server:
        os.environ["MDH_WS_ENDPOINT_BINANCE_FUTURES"] = server.endpoint
        summary = asyncio.run(one())
    assert summary.counts.trades == len(messages), summary.counts
    assert summary.written.get("candles_live_1m", 0) > 0, summary.written
    print(f"run {i} ok", flush=True)
"""


def test_candle_path_never_hangs(tmp_path):
    runs = int(os.environ.get("MDH_HANG_RUNS", "60"))
    real = REAL / "binance-futures_trades_2020-02-22_BTCUSDT.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDH_", "BIGQUERY_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(runs), str(real) if real.exists() else "",
         f"duckdb:///{tmp_path / 'wh.duckdb'}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done, started = 0, time.monotonic()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        deadline = time.monotonic() + RUN_DEADLINE + 10  # the first run includes imports
        while done < runs:
            if not sel.select(timeout=max(deadline - time.monotonic(), 0)):
                proc.send_signal(signal.SIGUSR1)  # every thread's stack to stderr
                time.sleep(2)
                proc.kill()
                stacks = proc.stderr.read()[-20_000:]
                pytest.fail(f"run {done} hung (no progress for {RUN_DEADLINE} s); stacks:\n{stacks}")
            line = proc.stdout.readline()
            if not line:
                proc.wait(10)
                pytest.fail(f"the child exited after {done} runs:\n{proc.stderr.read()[-5_000:]}")
            if line.startswith("run "):
                done += 1
                deadline = time.monotonic() + RUN_DEADLINE
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"{done} runs without a hang in {time.monotonic() - started:.1f} s")
