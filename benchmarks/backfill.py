"""B7 backfill orchestration overhead: raw data and candles for 30 days x 3 instruments.

The same work twice in one fresh process (a fresh Dagster instance and data root):

- through Dagster, as `mdh download` and `mdh candle-processing` run it (instrument
  definitions first, untimed): every partition a materialization in the instance, with its
  checks and metadata;
- directly with the library functions the assets call (the baseline): the same concurrent
  download, parse, check and Parquet write of every raw file, then candles and book features
  for every timeframe.

Overhead per partition = (Dagster wall time - library wall time) / (day, instrument)
partitions; per asset partition, the same over every materialized asset partition (each
(day, instrument) has 2-4 raw files and 14 candle and book timeframes). The sample server serves small synthetic days (``MDH_BENCH_BACKFILL_TRADES``
trades per day, default 2,000) so that the figure is about orchestration, not maths.
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
    for r, day in fetch_raw_days(requests, endpoint=settings.datasets_endpoint, api_key=""):
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
    asset_partitions = sum(len(instance.get_materialized_partitions(key)) for key in instance.get_asset_keys()
                           if key.path[0] in ("raw", "candles", "book"))
    print(json.dumps({"days": days, "partitions": partitions, "asset_partitions": asset_partitions,
                      "runs": instance.get_runs_count(), "dagster_s": dagster_s, "library_s": library_s,
                      "overhead_per_partition_s": (dagster_s - library_s) / partitions,
                      "overhead_per_asset_partition_s": (dagster_s - library_s) / asset_partitions}))


def bench_backfill(days: int = 30) -> dict:
    with tempfile.TemporaryDirectory(prefix="mdh-bench-backfill-") as tmp:
        config = Path(tmp) / "mdh.toml"
        config.write_text(UNIVERSE)
        env = {**os.environ, "MDH_CONFIG": str(config), "MDH_DATA_ROOT": f"{tmp}/data",
               "DAGSTER_HOME": f"{tmp}/dagster", "MDH_WAREHOUSE": f"duckdb:///{tmp}/warehouse.duckdb",
               "MDH_BENCH_BASELINE_ROOT": f"{tmp}/baseline", "MDH_BENCH_BACKFILL_DAYS": str(days),
               "MDH_RAW_RETENTION_DAYS": "0",  # historical days
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        run = subprocess.run([sys.executable, "-m", "benchmarks.backfill"], env=env, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
        if run.returncode:
            raise RuntimeError(f"backfill bench failed: {run.stderr.strip()[-2000:]}")
        return json.loads(run.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    child()
