"""`make bench`: generate a realistic day, then time each step against a baseline measured
in the same run. Prints a table and writes benchmarks/results/latest.json.

Size: ``MDH_BENCH_TRADES`` trades for one perpetual (default 3,200,000), with book snapshots
(3.2 per trade, so 10,240,000 at the default), ticker and liquidations in the sample
generator's proportions.

- B1 ingest + candles: parse, check, sort and write the trades file, then all seven candle
  timeframes with HFT features written to Parquet; ratio to ``gzip -dc`` of the same file,
  to the same job written plainly in polars (target <= 0.95x) and to DuckDB doing the raw
  Parquet and 1m + 15s only, all on the same file, interleaved ``MDH_BENCH_ROUNDS`` times
  (default 3; each figure the median of its rounds).
- CLI: the fixed cost of `mdh download` + `mdh candle-processing` (fresh processes against
  an instance and data root that exist, as a user's do after their first command) for a
  1,000-trade day (target <= 3 s), and B1's day through the same two commands less that
  fixed cost, against the library path (target <= 1.2x); the first two commands, which also
  create the instance, are reported apart.
- B2 window read: a 5-minute window from the day's trades Parquet (statistics pushdown)
  as a ratio to a full-day read, with the row groups touched.
- B3 peak memory: a fresh process ingests trades and book, builds candles and book features
  (the whole day's processing); its peak RSS (VmHWM; target <= 1.2 GiB, issue 16).
- B4 concurrent download: 60 files from the sample server with 100 ms injected latency,
  fetched together (`download_days`) against one by one.
- B5 reference: the same candles from a plain pandas groupby per timeframe.
- B6 streaming: trades per second through the live path's normalisation and 15s + 1m candle
  aggregation in one process (`benchmarks/streaming.py`), up to 1,000,000 trade messages.
- B7 backfill orchestration overhead: raw data, candles and book for 30 days x 3 instruments
  through Dagster (`mdh download`, `mdh candle-processing`) against the same work done by
  the library directly (`benchmarks/backfill.py`), per (day, venue) partition and per
  instrument file, on the SQLite instance and on a real PostgreSQL server side by side
  (`MDH_BENCH_BACKFILL_DAYS` changes the 30).
- B8 scale (`benchmarks/scale.py`): one venue-day of many small spot instruments through the
  CLI (`MDH_BENCH_SCALE_INSTRUMENTS`, default 400; `MDH_BENCH_SCALE_TIMEFRAMES`, default 1m)
  against the library, the runs created and the partitions per asset; then an instance
  holding 3 years x 2,400 instruments: one sensor evaluation, the 30-day missing-data report
  and the GraphQL partition status of raw/trades.

``MDH_BENCH_ONLY=CLI,B3`` runs B1 and the named measures alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from mdh_lib.candles import CANDLE_COLUMNS, Instrument, candles, day_rows
from mdh_lib.candles.trades import TRADE_COLUMNS
from mdh_lib.features.book import BookAggregator
from mdh_lib.ingest import stage_raw_day
from mdh_lib.parquet_window import overlapping
from mdh_lib.sample_server import SampleServer
from mdh_lib.sample_server.synthetic import write_day
from mdh_lib.schemas import RAW_SCHEMAS
from mdh_lib.storage import COMPRESSION, Storage, row_group_size
from mdh_lib.tardis.client import DayFile, download_day, download_days
from mdh_lib.timeframes import DAY_US, TIMEFRAMES, day_start_us, width_us

from benchmarks.backfill import bench_backfill
from benchmarks.scale import TARGETS as SCALE_TARGETS
from benchmarks.scale import bench_scale, print_table
from benchmarks.streaming import bench_streaming

DATE = dt.date(2024, 3, 1)
EXCHANGE, SYMBOL, KEY = "binance-futures", "BTCUSDT", "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"B1": 2.0, "B1_POLARS": 0.95, "B1_CLI": 1.2, "CLI": 3.0, "B2": 0.05, "B3": 1228.8, "B4": 10.0, "B6": 200_000.0, "B7": {"venue_day_s": 0.3, "file_s": 0.005}, "B8": SCALE_TARGETS}


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _day_candles(trades: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return candles(day_rows(trades.select(TRADE_COLUMNS), None, DATE), DATE, Instrument(EXCHANGE, SYMBOL, KEY))


def ingest_with_candles(storage: Storage, src: str, data_type: str = "trades") -> tuple:
    """A day's raw Parquet committed to ``storage`` and, for trades, its candles, built from
    the sorted day in memory while the file is written (`stage_raw_day`)."""
    folder = storage.scratch("ingest")
    try:
        staged, frames = stage_raw_day(src, data_type, DATE, os.path.basename(src), os.path.join(folder, "day.parquet"),
                                       then=_day_candles if data_type == "trades" else None)
        return storage.commit(staged, f"raw/{data_type}/day.parquet"), frames
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ingest_and_candles(src: Path, root: Path) -> int:
    """B1's measured work: raw Parquet plus seven candle files; returns trades ingested."""
    root.mkdir(parents=True, exist_ok=True)
    storage = Storage(str(root))
    info, frames = ingest_with_candles(storage, str(src))
    for tf, frame in frames.items():
        storage.write_parquet(f"candles/{tf}/day.parquet", frame.to_arrow(), sorting_column="timestamp")
    return info.rows


def plain_polars(src: Path, root: Path) -> int:
    """B1's job as a user would write it in polars alone (the comparison the library must
    beat): read the CSV, sort, write the raw Parquet with the same settings, then the seven
    timeframes with every candle column (exact medians, the full grid; no ticker, liquidation
    or options data, so those columns are null or zero as ours are) in one parallel
    `collect_all`, each written to Parquet."""
    root.mkdir(parents=True, exist_ok=True)
    schema = pl.from_arrow(RAW_SCHEMAS["trades"].empty_table()).schema
    day = pl.read_csv(src, schema=schema, null_values=[""]).sort("timestamp", maintain_order=True)
    day.write_parquet(root / "raw.parquet", statistics=True, row_group_size=row_group_size(day.height), **COMPRESSION)
    start = day_start_us(DATE)
    trades = day.lazy().filter(pl.col("timestamp").is_between(start, start + DAY_US, closed="left")).select(
        "timestamp", "price", "amount", "side", delay=(pl.col("local_timestamp") - pl.col("timestamp")) / 1000.0)
    price, amount, side = pl.col("price"), pl.col("amount"), pl.col("side")
    plans = []
    for tf in TIMEFRAMES:
        width = width_us(tf)
        bars = trades.group_by(bucket=pl.col("timestamp") // width * width).agg(
            open=price.first(), high=price.max(), low=price.min(), close=price.last(), volume=amount.sum(),
            notional=(price * amount).sum(), trade_count=pl.len().cast(pl.Int64),
            buy_volume_sum=amount.filter(side == "buy").sum(), sell_volume_sum=amount.filter(side == "sell").sum(),
            size_avg=amount.mean(), delay_median=pl.col("delay").median(), delay_mean=pl.col("delay").mean(),
            delay_min=pl.col("delay").min(), delay_max=pl.col("delay").max())
        grid = pl.LazyFrame({"bucket": pl.int_range(start, start + DAY_US, width, eager=True)})
        vwap = pl.when(pl.col("volume") > 0).then(pl.col("notional") / pl.col("volume"))
        plans.append(grid.join(bars, on="bucket", how="left", maintain_order="left").with_columns(
            pl.col("volume", "buy_volume_sum", "sell_volume_sum").fill_null(0.0), pl.col("trade_count").fill_null(0),
            vwap=vwap, price_vwap=vwap, timestamp=pl.from_epoch("bucket", "us").dt.replace_time_zone("UTC"),
            exchange=pl.lit(EXCHANGE), symbol=pl.lit(SYMBOL), instrument_key=pl.lit(KEY), timeframe=pl.lit(tf),
            **{c: pl.lit(None, pl.Float64) for c in ["funding_rate", "predicted_funding_rate", "open_interest",
                                                     "mark_price", "index_price", "oi_change",
                                                     "skew_25d_put_call_ratio", "atm_mark_iv"]},
            **{c: pl.lit(0.0) for c in ["liquidation_buy_volume", "liquidation_sell_volume",
                                        "liquidation_with_rising_oi", "liquidation_with_falling_oi"]},
            liquidation_count=pl.lit(0, pl.Int64)).select(CANDLE_COLUMNS))
    for tf, frame in zip(TIMEFRAMES, pl.collect_all(plans)):
        frame.write_parquet(root / f"candles_{tf}.parquet", statistics=True,
                            row_group_size=row_group_size(frame.height), **COMPRESSION)
    return day.height


def duckdb_1m_15s(src: Path, root: Path) -> int:
    """DuckDB doing part of B1's job: read the CSV, write the raw Parquet sorted, then the
    1m and 15s candles (OHLCV, VWAP, taker volumes, exact delay median, full grid)."""
    import duckdb

    root.mkdir(parents=True, exist_ok=True)
    start = day_start_us(DATE)
    columns = ", ".join(f"'{f.name}': '{'BIGINT' if f.type == 'int64' else 'DOUBLE' if f.type == 'double' else 'VARCHAR'}'"
                        for f in RAW_SCHEMAS["trades"])
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE TEMP TABLE day AS SELECT * FROM read_csv('{src}', header = true, columns = {{{columns}}})")
    con.execute(f"COPY (SELECT * FROM day ORDER BY timestamp) TO '{root}/raw.parquet' "
                "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)")
    for tf in ("1m", "15s"):
        width = width_us(tf)
        con.execute(f"""COPY (
            WITH bars AS (
                SELECT timestamp // {width} * {width} AS bucket, arg_min(price, timestamp) AS open, max(price) AS high,
                       min(price) AS low, arg_max(price, timestamp) AS close, sum(amount) AS volume,
                       sum(price * amount) / nullif(sum(amount), 0) AS vwap, count(*) AS trade_count,
                       sum(amount) FILTER (side = 'buy') AS buy_volume_sum,
                       sum(amount) FILTER (side = 'sell') AS sell_volume_sum, avg(amount) AS size_avg,
                       median((local_timestamp - timestamp) / 1000.0) AS delay_median,
                       avg((local_timestamp - timestamp) / 1000.0) AS delay_mean,
                       min((local_timestamp - timestamp) / 1000.0) AS delay_min,
                       max((local_timestamp - timestamp) / 1000.0) AS delay_max
                FROM day WHERE timestamp >= {start} AND timestamp < {start + DAY_US} GROUP BY 1)
            SELECT make_timestamp(g.bucket) AS timestamp, bars.* EXCLUDE (bucket)
            FROM range({start}, {start + DAY_US}, {width}) g(bucket) LEFT JOIN bars USING (bucket) ORDER BY 1
        ) TO '{root}/candles_{tf}.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)""")
    return con.execute("SELECT count(*) FROM day").fetchone()[0]


def _median(values: list[float]) -> float:
    return statistics.median(values)


def b1(src: Path, work: Path, rounds: int) -> dict:
    """B1 and its comparisons on the same file, interleaved ``rounds`` times (the machine is
    shared: each figure is the median of its rounds, each ratio that of the medians)."""
    runs = {"gzip_dc_s": lambda out: subprocess.run(["gzip", "-dc", str(src)], stdout=subprocess.DEVNULL, check=True),
            "ingest_candles_s": lambda out: ingest_and_candles(src, out),
            "plain_polars_s": lambda out: plain_polars(src, out),
            "duckdb_1m_15s_s": lambda out: duckdb_1m_15s(src, out)}
    seen: dict[str, list[float]] = {k: [] for k in runs}
    rows = {}
    for i in range(rounds):
        for name, run in runs.items():
            out = work / f"b1-{name}-{i}"
            seconds, rows[name] = _timed(lambda: run(out))
            seen[name].append(seconds)
            if i or name != "ingest_candles_s":  # the first round's files stay, for B2
                shutil.rmtree(out, ignore_errors=True)
    out = {name: _median(times) for name, times in seen.items()}
    assert rows["ingest_candles_s"] == rows["plain_polars_s"] == rows["duckdb_1m_15s_s"], rows
    return {"rows": rows["ingest_candles_s"], "rounds": seen, **out, "ratio": out["ingest_candles_s"] / out["gzip_dc_s"],
            "ratio_to_plain_polars": out["ingest_candles_s"] / out["plain_polars_s"],
            "plain_polars_ratio": out["plain_polars_s"] / out["gzip_dc_s"],
            "duckdb_ratio": out["duckdb_1m_15s_s"] / out["gzip_dc_s"], "path": str(work / "b1-ingest_candles_s-0")}


# The CLI's days: the tiny days and B1's day (DATE) are never neighbours, so no day's candles
# read another's raw files.
CLI_DAYS = {"first": -8, "before": -4, "after": 4, "alone": 8}
CLI_UNIVERSE = f"""[universe]
start_date = "{DATE - dt.timedelta(days=10)}"
[[universe.venues]]
exchange = "{EXCHANGE}"
symbols = ["{SYMBOL}"]
"""


def _mdh() -> list[str]:
    script = Path(sys.executable).with_name("mdh")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mdh_assets.cli"]


def cli_day(trades_src: Path, day: dt.date, work: Path, forkserver: bool = True) -> dict:
    """`mdh download` then `mdh candle-processing` of ``day``, whose trades file is
    ``trades_src`` (the sample server serves the files under ``work``, so the instrument has
    trades alone), as a user runs them: fresh `mdh` commands against the instance and data
    root under ``work`` (kept from one call to the next, as a user's are), through the warm
    fork server unless ``forkserver`` is False (each command then imports everything
    itself); wall seconds."""
    served = work / "served"
    dest = served / EXCHANGE / "trades" / f"{day:%Y/%m/%d}" / f"{SYMBOL}.csv.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        os.link(trades_src, dest)
    (work / "mdh.toml").write_text(CLI_UNIVERSE)
    days = ["--start-date", day.isoformat(), "--end-date", day.isoformat()]
    out = {}
    with SampleServer(data_dir=str(served)) as srv:
        env = {**os.environ, "MDH_CONFIG": str(work / "mdh.toml"), "MDH_DATA_ROOT": str(work / "data"),
               "DAGSTER_HOME": str(work / "dagster"), "MDH_WAREHOUSE": f"duckdb:///{work}/warehouse.duckdb",
               "TARDIS_DATASETS_ENDPOINT": srv.endpoint, "TARDIS_API_ENDPOINT": srv.endpoint,
               "MDH_RAW_RETENTION_DAYS": "0", "MDH_FORKSERVER": "1" if forkserver else "0"}
        env.pop("MDH_DAGSTER_POSTGRES_URL", None)
        for command in ("download", "candle-processing"):
            seconds, run = _timed(lambda: subprocess.run([*_mdh(), command, *days], env=env, capture_output=True,
                                                         text=True))
            if run.returncode:
                raise RuntimeError(f"mdh {command} failed: {(run.stderr or run.stdout).strip()[-500:]}")
            out[command.replace("-", "_") + "_s"] = seconds
    return {**out, "total_s": sum(out.values())}


def warm_forkserver(timeout: float = 60.0) -> bool:
    """Start `mdh`'s fork server (the first command does) and wait until it answers."""
    import socket

    from mdh_assets import forkserver

    path = forkserver._socket_path(forkserver._key())
    subprocess.run([*_mdh(), "--help"], env={**os.environ, "MDH_FORKSERVER": "1"}, capture_output=True, check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as s:
            if s.connect_ex(str(path)) == 0:
                return True
        time.sleep(0.2)
    return False


def cli_cost(trades_src: Path, work: Path, tiny_trades: int = 1_000) -> dict:
    """The fixed cost of the CLI: `mdh download` + `mdh candle-processing` of a tiny day
    (``tiny_trades`` trades) through the warm fork server, against an instance that exists
    (a user's, after their first command: the first commands also create it, a one-time
    cost reported apart), and with each command in a process of its own (``MDH_FORKSERVER=0``,
    what a command costs before the server is up); and B1's day through the CLI in the same
    instance, whose cost less the tiny day's is the CLI's price of the work itself (target:
    <= 1.2x the library path)."""
    def tiny(name: str) -> tuple[Path, dt.date]:
        day = DATE + dt.timedelta(days=CLI_DAYS[name])
        path = work / "tiny" / f"{day}.csv.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_day(str(path), EXCHANGE, "trades", day, SYMBOL, tiny_trades)
        return path, day

    warm = warm_forkserver()
    first = cli_day(*tiny("first"), work)  # creates the instance
    # The tiny day before and after the big one (the machine's load drifts): their mean is the fixed cost.
    before = cli_day(*tiny("before"), work)
    big = cli_day(trades_src, DATE, work)
    after = cli_day(*tiny("after"), work)
    alone = cli_day(*tiny("alone"), work, forkserver=False)
    fixed = {k: (before[k] + after[k]) / 2 for k in before}
    return {"tiny": fixed, "tiny_runs": [before, after], "day": big, "fixed_s": fixed["total_s"],
            "day_less_fixed_s": big["total_s"] - fixed["total_s"], "forkserver": warm,
            "fixed_in_process_s": alone["total_s"], "tiny_in_process": alone, "new_instance": first}


def b2(path: str) -> dict:
    full_s, full = _timed(lambda: pq.read_table(path))
    start = day_start_us(DATE) + 14 * 3_600_000_000
    end = start + 300_000_000
    flt = [("timestamp", ">=", start), ("timestamp", "<", end)]
    win_s, window = _timed(lambda: pq.read_table(path, filters=flt))
    meta = pq.ParquetFile(path).metadata
    touched = len(overlapping(meta, (start, end)))
    inside = full.filter((full["timestamp"].to_numpy() >= start) & (full["timestamp"].to_numpy() < end))
    assert window.num_rows == inside.num_rows, "window read lost rows"
    return {"full_s": full_s, "window_s": win_s, "ratio": win_s / full_s, "rows": window.num_rows,
            "row_groups_read": touched, "row_groups": meta.num_row_groups}


def whole_day(trades_src: str, book_src: str, folder: str) -> None:
    """B3's measured work (run in a fresh process by `b3`)."""
    os.makedirs(folder, exist_ok=True)
    storage = Storage(folder)
    _, frames = ingest_with_candles(storage, trades_src)
    for tf, frame in frames.items():
        storage.write_parquet(f"candles/{tf}/day.parquet", frame.to_arrow(), sorting_column="timestamp")
    ingest_with_candles(storage, book_src, "book_snapshot_5")
    book = BookAggregator(DATE)
    pf = storage.parquet_file("raw/book_snapshot_5/day.parquet")
    for i in range(pf.num_row_groups):
        book.update(pl.from_arrow(pf.read_row_group(i)))
    for tf, frame in book.finish().items():
        storage.write_parquet(f"book/{tf}/day.parquet", frame.to_arrow(), sorting_column="timestamp")
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This program's peak resident memory: the kernel's high-water mark of its own address
    space (VmHWM). Not `getrusage`'s ru_maxrss, which Linux carries across exec from the
    process that spawned it: a child of the bench (started while the bench holds ~1.3 GiB
    after B1) reported the bench's memory, not its own."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def b3(trades_src: Path, book_src: Path, work: Path) -> dict:
    code = "import sys, benchmarks.run as b; b.whole_day(*sys.argv[1:])"
    seconds, run = _timed(lambda: subprocess.run(
        [sys.executable, "-c", code, str(trades_src), str(book_src), str(work / "b3")],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent))
    return {**json.loads(run.stdout.strip().splitlines()[-1]), "seconds": seconds}


def b4(work: Path) -> dict:
    """Files served from disk (as Tardis serves ready files), so the figure is about the
    download path, not the generator."""
    def files(first: dt.date) -> list[DayFile]:
        return [DayFile("binance", "trades", first + dt.timedelta(days=i), "BTCUSDT") for i in range(60)]

    served = work / "b4-served"
    for f in files(dt.date(2024, 1, 1)) + files(dt.date(2024, 4, 1)):
        dest = served / f.exchange / f.data_type / f"{f.date:%Y/%m/%d}" / f"{f.symbol}.csv.gz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_day(str(dest), f.exchange, f.data_type, f.date, f.symbol, 20_000)
    with SampleServer(data_dir=str(served), latency_ms=100) as srv:
        one_s, _ = _timed(lambda: [download_day(f, endpoint=srv.endpoint, api_key="", dest_dir=str(work / "b4a"))
                                   for f in files(dt.date(2024, 1, 1))])
        together_s, got = _timed(lambda: download_days(files(dt.date(2024, 4, 1)), endpoint=srv.endpoint,
                                                       api_key="", dest_dir=str(work / "b4b")))
    assert all(not isinstance(g, Exception) for g in got.values())
    return {"files": 60, "latency_ms": 100, "one_by_one_s": one_s, "concurrent_s": together_s,
            "speedup": one_s / together_s}


def b5(src: Path, ours_candles_s: float) -> dict:
    def pandas_candles():
        df = pd.read_csv(src)
        df = df[(df.timestamp >= day_start_us(DATE)) & (df.timestamp < day_start_us(DATE) + 86_400_000_000)]
        df = df.sort_values("timestamp", kind="stable")
        df["delay"] = (df.local_timestamp - df.timestamp) / 1000.0
        df["notional"] = df.price * df.amount
        df["buy"] = df.amount.where(df.side == "buy", 0.0)
        df["sell"] = df.amount.where(df.side == "sell", 0.0)
        for width in TIMEFRAMES.values():
            g = df.groupby(df.timestamp // width * width)
            g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
                  volume=("amount", "sum"), notional=("notional", "sum"), trades=("price", "size"),
                  buy=("buy", "sum"), sell=("sell", "sum"), size_avg=("amount", "mean"),
                  delay_median=("delay", "median"), delay_mean=("delay", "mean"), delay_min=("delay", "min"),
                  delay_max=("delay", "max"))

    pandas_s, _ = _timed(pandas_candles)
    return {"pandas_s": pandas_s, "ours_s": ours_candles_s, "ratio_ours_to_pandas": ours_candles_s / pandas_s}


def main() -> None:
    trades_n = int(os.environ.get("MDH_BENCH_TRADES", 3_200_000))
    console = Console(width=140)
    with tempfile.TemporaryDirectory(prefix="mdh-bench-") as tmp:
        work = Path(tmp)
        srcs = {}
        with console.status("generating the day ..."):
            for data_type in ("trades", "book_snapshot_5"):
                srcs[data_type] = work / f"{data_type}.csv.gz"
                write_day(str(srcs[data_type]), EXCHANGE, data_type, DATE, SYMBOL, trades_n)
        with console.status("B1 ingest + candles, plain polars and DuckDB on the same file ..."):
            r1 = b1(srcs["trades"], work, int(os.environ.get("MDH_BENCH_ROUNDS", 3)))
        steps = {
            "CLI": ("fixed CLI cost (tiny day) and B1 through the CLI ...", lambda: cli_cost(srcs["trades"], work / "cli")),
            "B2": ("B2 window read ...", lambda: b2(str(Path(r1["path"]) / "raw/trades/day.parquet"))),
            "B3": ("B3 peak memory ...", lambda: b3(srcs["trades"], srcs["book_snapshot_5"], work)),
            "B4": ("B4 concurrent downloads ...", lambda: b4(work)),
            "B5": ("B5 pandas reference ...", lambda: b5(srcs["trades"], r1["ingest_candles_s"])),
            "B6": ("B6 streaming normalisation + live candles ...", lambda: bench_streaming(min(trades_n, 1_000_000))),
            "B7": ("B7 backfill orchestration overhead (30 days x 3 instruments) ...",
                   lambda: bench_backfill(int(os.environ.get("MDH_BENCH_BACKFILL_DAYS", 30)))),
            "B8": ("B8 scale (many instruments per venue-day; a 3-year instance) ...",
                   lambda: bench_scale(int(os.environ.get("MDH_BENCH_SCALE_INSTRUMENTS", 400)),
                                       os.environ.get("MDH_BENCH_SCALE_TIMEFRAMES", "1m"))),
        }
        # MDH_BENCH_ONLY=CLI,B3 runs B1 and those alone (B1 always runs: the others compare to it).
        only = {k.strip().upper() for k in os.environ.get("MDH_BENCH_ONLY", "").split(",") if k.strip()}
        done = {}
        for name, (status, measure) in steps.items():
            if not only or name in only:
                with console.status(status):
                    done[name] = measure()
        book = work / "b3" / "raw/book_snapshot_5/day.parquet"
        book_rows = pq.read_metadata(book).num_rows if book.exists() else 0
    rc, r2, r3, r4, r5, r6, r7, r8 = (done.get(k) for k in ("CLI", "B2", "B3", "B4", "B5", "B6", "B7", "B8"))
    results = {"trades": r1["rows"], "book_rows": book_rows, "B1": r1, **done}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))

    table = Table(title=f"mdh bench: {r1['rows']:,} trades, {book_rows:,} book snapshots ({EXCHANGE} {SYMBOL})"
                        + (f", only B1 and {', '.join(sorted(done))}" if only else ""))
    for col in ("", "measure", "ours", "baseline", "result", "target"):
        table.add_column(col)
    ok = lambda good: "[green]met[/green]" if good else "[red]missed[/red]"
    table.add_row("B1", "ingest + 7 timeframes", f"{r1['ingest_candles_s']:.2f} s", f"gzip -dc {r1['gzip_dc_s']:.2f} s",
                  f"{r1['ratio']:.2f}x", f"<= {TARGETS['B1']} {ok(r1['ratio'] <= TARGETS['B1'])}")
    table.add_row("B1 polars", "the same job in plain polars", f"{r1['ingest_candles_s']:.2f} s",
                  f"polars {r1['plain_polars_s']:.2f} s ({r1['plain_polars_ratio']:.2f}x gzip)",
                  f"{r1['ratio_to_plain_polars']:.2f}x",
                  f"<= {TARGETS['B1_POLARS']} {ok(r1['ratio_to_plain_polars'] <= TARGETS['B1_POLARS'])}")
    table.add_row("B1 DuckDB", "DuckDB: raw Parquet, 1m and 15s only", f"{r1['ingest_candles_s']:.2f} s",
                  f"DuckDB {r1['duckdb_1m_15s_s']:.2f} s ({r1['duckdb_ratio']:.2f}x gzip)",
                  f"{r1['ingest_candles_s'] / r1['duckdb_1m_15s_s']:.2f}x", "reference")
    if rc is not None:
        cli_ratio = rc["day_less_fixed_s"] / r1["ingest_candles_s"]
        table.add_row("B1 CLI", "mdh download + candle-processing of B1's day, less the tiny day",
                      f"{rc['day_less_fixed_s']:.2f} s", f"library path {r1['ingest_candles_s']:.2f} s",
                      f"{cli_ratio:.2f}x", f"<= {TARGETS['B1_CLI']} {ok(cli_ratio <= TARGETS['B1_CLI'])}")
        table.add_row("CLI", "fixed cost: download + candle-processing, 1,000-trade day"
                      + (", warm fork server" if rc["forkserver"] else ", NO fork server answered"),
                      f"{rc['fixed_s']:.2f} s",
                      f"{rc['tiny']['download_s']:.2f} + {rc['tiny']['candle_processing_s']:.2f} s; each in its own "
                      f"process (MDH_FORKSERVER=0) {rc['fixed_in_process_s']:.2f} s; first commands, creating the "
                      f"instance, {rc['new_instance']['total_s']:.2f} s", "",
                      f"<= {TARGETS['CLI']:.0f} s {ok(rc['fixed_s'] <= TARGETS['CLI'])}")
    if r2 is not None:
        table.add_row("B2", "5-minute window read", f"{r2['window_s'] * 1e3:.1f} ms", f"full day {r2['full_s'] * 1e3:.1f} ms",
                      f"{r2['ratio']:.3f} ({r2['row_groups_read']}/{r2['row_groups']} row groups)",
                      f"<= {TARGETS['B2']} {ok(r2['ratio'] <= TARGETS['B2'])}")
    if r3 is not None:
        table.add_row("B3", "peak memory, whole day", f"{r3['peak_rss_mib']:.0f} MiB", "", f"{r3['seconds']:.1f} s",
                      f"<= {TARGETS['B3']:.0f} MiB {ok(r3['peak_rss_mib'] <= TARGETS['B3'])}")
    if r4 is not None:
        table.add_row("B4", "60 downloads, 100 ms latency", f"{r4['concurrent_s']:.2f} s",
                      f"one by one {r4['one_by_one_s']:.2f} s", f"{r4['speedup']:.1f}x",
                      f">= {TARGETS['B4']:.0f}x {ok(r4['speedup'] >= TARGETS['B4'])}")
    if r5 is not None:
        table.add_row("B5", "pandas groupby reference", f"{r5['ours_s']:.2f} s (B1 work)", f"pandas {r5['pandas_s']:.2f} s",
                      f"{r5['ratio_ours_to_pandas']:.2f}x", "reference")
    if r6 is not None:
        table.add_row("B6", "live path: parse + live 15s/1m candles", f"{r6['trades_per_s']:,.0f} trades/s",
                      f"{r6['trades']:,} messages", f"{r6['seconds']:.2f} s",
                      f">= {TARGETS['B6']:,.0f}/s {ok(r6['trades_per_s'] >= TARGETS['B6'])}")
    if r7 is not None:
        for name, r in (("SQLite", r7), ("PostgreSQL", r7["postgres"]), ("PostgreSQL, async commit", r7["postgres_async_commit"])):
            met = r["overhead_per_venue_day_s"] <= TARGETS["B7"]["venue_day_s"] and r["overhead_per_file_s"] <= TARGETS["B7"]["file_s"]
            table.add_row("B7", f"backfill overhead on {name}, {r['venue_days']} venue-days, {r['files']:,} files",
                          f"Dagster {r['dagster_s']:.1f} s ({r['runs']} runs, {r['events']:,} events)",
                          f"library {r['library_s']:.1f} s",
                          f"{r['overhead_per_venue_day_s']:.2f} s/venue-day, {r['overhead_per_file_s'] * 1e3:.1f} ms/file, "
                          f"{r['overhead_per_event_s'] * 1e3:.1f} ms/event",
                          f"<= {TARGETS['B7']['venue_day_s']} s, <= {TARGETS['B7']['file_s'] * 1e3:.0f} ms "
                          f"{ok(met) if name != 'SQLite' else '(reference)'}")
    console.print(table)
    if r8 is not None:
        print_table(r8, SCALE_TARGETS, console)
    console.print(f"results: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
