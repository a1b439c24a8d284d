"""B7 backfill orchestration overhead: raw data and candles for 30 days x 3 instruments.

The same work twice in one fresh process (a fresh Dagster instance and data root):

- through Dagster, as `mdh download` and `mdh candle-processing` run it (instrument
  definitions first, untimed): every partition a materialization in the instance, with its
  checks and metadata;
- directly with the library functions the assets call (the baseline): the same concurrent
  download, parse, check and Parquet write of every raw file, then candles and book features
  for every timeframe.

Overhead = Dagster wall time - library wall time, per (day, venue) partition (what a
Dagster partition is: 30 days x 2 venues) and per instrument file written (each (day,
instrument) has 2-4 raw files and 14 candle and book timeframes), with the instance's
events counted to tell what one costs. The sample server serves small synthetic days
(``MDH_BENCH_BACKFILL_TRADES`` trades per day, default 2,000) so that the figure is about
orchestration, not maths.

Twice, side by side: on the embedded SQLite instance and on PostgreSQL
(``MDH_DAGSTER_POSTGRES_URL``, a real server started for the bench by `tests.services`
with its durable defaults: fsync on).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNIVERSE = """
[universe]
start_date = "2024-01-01"
[[universe.venues]]
exchange = "binance"
symbols = ["BTCUSDT", "ETHUSDT"]
[[universe.venues]]
exchange = "binance-futures"
symbols = ["BTCUSDT"]
"""
START = dt.date(2024, 1, 1)


def _library_backfill(settings, dates: list[dt.date], root: str) -> int:
    """The baseline: what the assets compute, called directly (no Dagster): the same
    downloads, then `mdh_lib.processing` per instrument-day, written to another root."""
    from mdh_lib.catalog import Catalog
    from mdh_lib.definitions import expected_partitions
    from mdh_lib.ingest import RawRequest, fetch_raw_days
    from mdh_lib.instruments import InstrumentKey
    from mdh_lib.layout import dataset_path, raw_path
    from mdh_lib.processing import instrument_book, instrument_candles
    from mdh_lib.storage import Storage

    source = Catalog(Storage(settings.data_root))
    storage = Storage(root)
    expected = [e for date in dates for e in expected_partitions(source.definitions(date))]
    for date in dates:
        storage.write_parquet(dataset_path(("instruments",), date), source.definitions(date))
    requests = [RawRequest(e.data_type, e.date, InstrumentKey.parse(e.key), e.exchange, e.source_symbol)
                for e in expected]
    for r, day in fetch_raw_days(requests, endpoint=settings.datasets_endpoint, api_key="",
                                 staging=storage.scratch_base):
        storage.commit(day.file, raw_path(r.data_type, r.date, r.key))
        day.discard()
    catalog = Catalog(storage)
    partitions = sorted({(e.date, e.key) for e in expected if e.data_type == "trades"})
    for date, key in partitions:
        key = InstrumentKey.parse(key)
        for name, compute in (("candles", instrument_candles), ("book", instrument_book)):
            for tf, frame in compute(catalog, date, key).frames.items():
                storage.write_parquet(dataset_path((name, tf), date, key), frame.to_arrow(), sorting_column="timestamp")
    return len(partitions)


def child() -> None:
    """Runs in a fresh process with the bench environment set (see `bench_backfill`)."""
    from mdh_assets import cli
    from mdh_assets.pipeline import Runtime, ensure_instruments
    from mdh_assets.runs import date_range
    from mdh_lib.config import load_settings
    from mdh_lib.sample_server import SampleServer

    days = int(os.environ["MDH_BENCH_BACKFILL_DAYS"])
    dates = date_range(START, START + dt.timedelta(days=days - 1))
    span = ["--start-date", dates[0].isoformat(), "--end-date", dates[-1].isoformat()]
    with SampleServer(trades_per_day=int(os.environ.get("MDH_BENCH_BACKFILL_TRADES", 2_000))) as server:
        os.environ["TARDIS_DATASETS_ENDPOINT"] = os.environ["TARDIS_API_ENDPOINT"] = server.endpoint
        settings = load_settings()
        ensure_instruments(Runtime(settings), dates)  # definitions: not part of the measure
        t0 = time.perf_counter()
        codes = [cli.main(["download", *span]), cli.main(["candle-processing", *span])]
        dagster_s = time.perf_counter() - t0
        if any(codes):
            raise SystemExit(f"the Dagster backfill failed (exit codes {codes})")
        t0 = time.perf_counter()
        partitions = _library_backfill(settings, dates, os.environ["MDH_BENCH_BASELINE_ROOT"])
        library_s = time.perf_counter() - t0
    instance = Runtime(settings).instance
    runs = instance.get_runs()
    events = sum(len(instance.all_logs(run.run_id)) for run in runs)
    venue_days = len(dates) * len(settings.universe.venues)
    files = sum(1 for family in ("raw", "candles", "book") for _ in Path(settings.data_root, family).rglob("*.parquet"))
    overhead = dagster_s - library_s
    print(json.dumps({"instance": type(instance.run_storage).__name__.removesuffix("RunStorage").lower(),
                      "days": days, "partitions": partitions, "venue_days": venue_days, "files": files,
                      "runs": len(runs), "events": events, "dagster_s": dagster_s, "library_s": library_s,
                      "overhead_per_partition_s": overhead / partitions,
                      "overhead_per_venue_day_s": overhead / venue_days,
                      "overhead_per_file_s": overhead / files, "overhead_per_event_s": overhead / events}))


def _one(days: int, postgres_url: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="mdh-bench-backfill-") as tmp:
        config = Path(tmp) / "mdh.toml"
        config.write_text(UNIVERSE)
        env = {**os.environ, "MDH_CONFIG": str(config), "MDH_DATA_ROOT": f"{tmp}/data",
               "DAGSTER_HOME": f"{tmp}/dagster", "MDH_WAREHOUSE": f"duckdb:///{tmp}/warehouse.duckdb",
               "MDH_BENCH_BASELINE_ROOT": f"{tmp}/baseline", "MDH_BENCH_BACKFILL_DAYS": str(days),
               "MDH_RAW_RETENTION_DAYS": "0",  # historical days
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        env.pop("MDH_DAGSTER_POSTGRES_URL", None)
        if postgres_url:
            env["MDH_DAGSTER_POSTGRES_URL"] = postgres_url
        run = subprocess.run([sys.executable, "-m", "benchmarks.backfill"], env=env, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
        if run.returncode:
            raise RuntimeError(f"backfill bench failed: {run.stderr.strip()[-2000:]}")
        return json.loads(run.stdout.strip().splitlines()[-1])


# PostgreSQL as configured by default (every commit flushed to disk before it returns), and
# with asynchronous commits for mdh's sessions (``synchronous_commit=off``, set in the URL:
# a server crash may lose the last fraction of a second of events, never corrupts them).
ASYNC_COMMIT = "?options=-csynchronous_commit%3Doff"


def bench_backfill(days: int = 30) -> dict:
    """SQLite's figures at the top level (as before), PostgreSQL's under ``postgres`` and
    ``postgres_async_commit``."""
    from tests.services import postgres

    result = _one(days, None)
    with postgres(fast=False) as server:
        result["postgres"] = _one(days, server.url)
        server.psql("DROP DATABASE IF EXISTS mdh_async", database="postgres")
        server.psql("CREATE DATABASE mdh_async", database="postgres")
        url = server.url.rsplit("/", 1)[0] + "/mdh_async" + ASYNC_COMMIT
        result["postgres_async_commit"] = _one(days, url)
    return result


if __name__ == "__main__":
    child()
