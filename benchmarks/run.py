"""`make bench`: generate a realistic day, then time each step against a baseline measured in
the same run. Prints a table and writes benchmarks/results/latest.json.

Size: ``MDH_BENCH_TRADES`` trades for one perpetual (default 3,200,000), with book snapshots
and the other data types in the sample generator's proportions.

- ingest: parse + check + sort + atomic Parquet write of the trades file, as a ratio to
  ``gzip -dc`` of the same file (the floor for any reader of the file).
- window: a 5-minute window read from the day's Parquet (pushdown on timestamp statistics),
  as a ratio to a full-day read, with the row groups touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from mdh_lib.sample_server.synthetic import write_day
from mdh_lib.storage import Storage
from mdh_lib.tardis.parse import read_raw_csv

DATE = dt.date(2024, 3, 1)
EXCHANGE, SYMBOL = "binance-futures", "BTCUSDT"
RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def bench_ingest(work: Path, trades: int) -> dict:
    src = work / "trades.csv.gz"
    gen_s, _ = _timed(lambda: write_day(str(src), EXCHANGE, "trades", DATE, SYMBOL, trades))
    gunzip_s, _ = _timed(lambda: subprocess.run(["gzip", "-dc", str(src)], stdout=subprocess.DEVNULL, check=True))
    storage = Storage(str(work / "root"))

    def ingest():
        table = read_raw_csv(str(src), "trades", DATE)
        return storage.write_parquet("raw/trades/day.parquet", table, sorting_column="timestamp")

    ingest_s, info = _timed(ingest)
    return {"rows": info.rows, "generate_s": gen_s, "gzip_dc_s": gunzip_s, "ingest_s": ingest_s,
            "ratio": ingest_s / gunzip_s, "parquet_bytes": info.bytes, "csv_gz_bytes": src.stat().st_size,
            "path": storage.path("raw/trades/day.parquet")}


def bench_window(path: str) -> dict:
    full_s, full = _timed(lambda: pq.read_table(path))
    start = int(dt.datetime.combine(DATE, dt.time(14, 0), dt.timezone.utc).timestamp() * 1e6)
    end = start + 300_000_000
    flt = [("timestamp", ">=", start), ("timestamp", "<", end)]
    win_s, window = _timed(lambda: pq.read_table(path, filters=flt))
    meta = pq.ParquetFile(path).metadata
    col = meta.schema.names.index("timestamp")
    touched = sum(
        1 for i in range(meta.num_row_groups)
        if (s := meta.row_group(i).column(col).statistics) is not None and s.max >= start and s.min < end
    )
    mask = pc.and_(pc.greater_equal(full["timestamp"], start), pc.less(full["timestamp"], end))
    assert window.num_rows == pc.sum(mask).as_py(), "window read lost rows"
    return {"full_s": full_s, "window_s": win_s, "ratio": win_s / full_s, "rows": window.num_rows,
            "row_groups_read": touched, "row_groups": meta.num_row_groups}


def main() -> None:
    trades = int(os.environ.get("MDH_BENCH_TRADES", 3_200_000))
    with tempfile.TemporaryDirectory(prefix="mdh-bench-") as tmp:
        ingest = bench_ingest(Path(tmp), trades)
        window = bench_window(ingest.pop("path"))
    results = {"trades": trades, "ingest": ingest, "window": window}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))

    table = Table(title=f"mdh bench: {trades:,} trades, {EXCHANGE} {SYMBOL}")
    for col in ("measure", "value", "baseline", "ratio"):
        table.add_column(col)
    table.add_row("ingest trades (parse, check, sort, write)", f"{ingest['ingest_s']:.2f} s",
                  f"gzip -dc {ingest['gzip_dc_s']:.2f} s", f"{ingest['ratio']:.2f}")
    table.add_row("5-minute window read", f"{window['window_s'] * 1e3:.1f} ms",
                  f"full day {window['full_s'] * 1e3:.1f} ms", f"{window['ratio']:.3f}")
    table.add_row("row groups read for the window", str(window["row_groups_read"]), str(window["row_groups"]),
                  f"{window['row_groups_read'] / window['row_groups']:.3f}")
    Console().print(table)
    Console().print(f"results: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
