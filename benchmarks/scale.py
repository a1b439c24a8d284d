"""B8 scale: many instruments per venue-day, and an instance holding years of them.

Two parts, each in a fresh process with its own data root and Dagster instance:

- **one venue-day of many spot instruments through the CLI**: a data directory of tiny Tardis
  files (``S0000USDT``.. on binance, one trades and one book_snapshot_5 file each: one small
  synthetic day with its symbol column rewritten), served by `SampleServer(data_dir=...)`;
  then ``mdh instruments``, ``download``, ``candle-processing`` and ``missing-tick-reports
  --format json`` as subprocesses, timed one by one, with the Dagster runs they created and
  the report's missing rows (none expected). The same work then runs through the library in
  one process (definitions, the concurrent fetch + check + commit of every raw file, candles
  and book features of every instrument with the functions the assets call, checks
  included): CLI time / library time. Also the partition count of every asset of the code
  location (days x venues). ``MDH_BENCH_SCALE_INSTRUMENTS`` sets the instruments (default
  400) and ``MDH_BENCH_SCALE_TIMEFRAMES`` the candle and book timeframes (default 1m,
  ``all`` for the seven): the per-instrument work (~0.1 s with 1m, mostly the book
  aggregator) makes the issue's 2,000 instruments a ~8-minute measure.
- **an instance holding 3 years x 2,400 instruments** (2,000 binance spot, 300
  binance-futures perpetuals, 100 deribit perpetuals): a materialization of every raw and
  derived venue-day asset for every day of three years but the last, instrument definitions
  for the last 30 days and their raw manifests (the days the sensor and the report read;
  older manifests are never read by them). The last day is left as the daily definitions run
  leaves it, nothing downloaded, so the sensor plans its downloads and the report lists it. Then one sensor evaluation over the last 7 days
  (`pipeline_requests`), the 30-day missing-data report (`status_table` over the expected
  partitions of the days' definitions) and the GraphQL partition status of raw/trades
  (the query the asset page makes, sent over HTTP to a `dagster-webserver` the bench starts
  on 127.0.0.1), each cold (first call on the instance) and warm (second call).

The materializations are written with the event log storage's own insert statements in one
transaction (the event rows `store_event` writes for a run-less materialization, and each
asset's latest-materialization entry): storing through `report_runless_asset_event` costs
~10 ms an event here, about 25 minutes for the ~140,000 events, and Dagster has no public
bulk path. `record_materializations` lets that public method build the events and stores
them with the storage's public batch insert; it relies on the method handing its event to
the instance's `handle_new_event`, so a Dagster upgrade may need it mended (no private
module is imported, here or anywhere in the project).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATE = dt.date(2024, 3, 1)


def universe(start: dt.date | str, venues: list[str]) -> str:
    """An mdh.toml universe of every symbol of ``venues``."""
    return f'[universe]\nstart_date = "{start}"\n' + "".join(
        f'[[universe.venues]]\nexchange = "{v}"\nsymbols = []\n' for v in venues)


# Part 2's instruments per venue: (symbol pattern, count).
VENUE_SYMBOLS = {"binance": ("S{:04d}USDT", 2000), "binance-futures": ("P{:03d}USDT", 300),
                 "deribit": ("C{:03d}-PERPETUAL", 100)}
YEARS_DAYS = 3 * 365 + 1
REPORT_DAYS, SENSOR_DAYS = 30, 7


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def symbols(n: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(n)]


def write_served(folder: Path, names: list[str], date: dt.date = DATE, trades: int = 50) -> None:
    """One tiny synthetic day per data type, its symbol column rewritten for every name
    (the files pass the raw checks: in-day local timestamps, ordered book levels)."""
    from mdh_lib.sample_server.synthetic import write_day

    for data_type in ("trades", "book_snapshot_5"):
        template = folder / f"template-{data_type}.csv.gz"
        write_day(str(template), "binance", data_type, date, "BTCUSDT", trades)
        text = gzip.decompress(template.read_bytes())
        template.unlink()
        out = folder / "binance" / data_type / f"{date:%Y/%m/%d}"
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            (out / f"{name}.csv.gz").write_bytes(gzip.compress(text.replace(b",BTCUSDT,", f",{name},".encode()), 1))


# ---------------------------------------------------------------- part 1: one venue-day, CLI


def _library_day(settings, date: dt.date, root: str, timeframes: list[str], parts: dict) -> int:
    """The baseline: definitions, raw files, candles and book features of every instrument,
    with the functions the assets call (checks included), no Dagster."""
    from mdh_lib.catalog import Catalog
    from mdh_lib.definitions import build_definitions, expected_partitions
    from mdh_lib.ingest import RawRequest, fetch_raw_days
    from mdh_lib.instruments import InstrumentKey
    from mdh_lib.layout import candles_path, dataset_path, raw_path
    from mdh_lib.storage import Storage
    from mdh_lib.tardis import client

    storage = Storage(root)
    catalog = Catalog(storage)
    universe = settings.universe
    t0 = time.perf_counter()
    details = {ex: client.exchange_details(ex, endpoint=settings.api_endpoint) for ex in universe.exchanges}
    records = {ex: client.instrument_records(ex, endpoint=settings.api_endpoint, api_key="") for ex in universe.exchanges}
    storage.write_parquet(dataset_path(("instruments",), date), build_definitions(date, universe, details, records))
    expected = expected_partitions(catalog.definitions(date))
    parts["definitions"] = time.perf_counter() - t0
    requests = [RawRequest(e.data_type, e.date, InstrumentKey.parse(e.key), e.exchange, e.source_symbol)
                for e in expected]
    for r, day in fetch_raw_days(requests, endpoint=settings.datasets_endpoint, api_key="",
                                 staging=storage.scratch_base):
        if isinstance(day, Exception):
            raise day
        storage.commit(day.file, raw_path(r.data_type, r.date, r.key))
        day.discard()
    parts["raw"] = time.perf_counter() - t0 - parts["definitions"]
    candle_fn, book_fn = _per_instrument()
    for data_type, compute, path in (("trades", candle_fn, candles_path),
                                     ("book_snapshot_5", book_fn, lambda tf, d, k: dataset_path(("book", tf), d, k))):
        t1 = time.perf_counter()
        for key in sorted({e.key for e in expected if e.data_type == data_type}):
            frames, failures = compute(catalog, date, InstrumentKey.parse(key), timeframes)
            if any(failures.values()):
                raise RuntimeError(f"{key}: {failures}")
            for tf, frame in frames.items():
                storage.write_parquet(path(tf, date, key), frame.to_arrow(), sorting_column="timestamp")
        parts["candles" if data_type == "trades" else "book"] = time.perf_counter() - t1
    return len(expected)


def _per_instrument():
    """The per-instrument candle and book computations the assets call: (frames, failures)."""
    from mdh_lib.processing import instrument_book, instrument_candles

    def adapt(fn):
        def call(*args):
            done = fn(*args)
            return done.frames, done.failures
        return call

    return adapt(instrument_candles), adapt(instrument_book)


def partition_counts() -> dict[str, int]:
    """Partitions of each partitioned asset of the code location, as configured."""
    from mdh_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    counts = {}
    for key in graph.get_all_asset_keys():
        pdef = graph.get(key).partitions_def
        if pdef is not None:
            counts[key.to_user_string()] = pdef.get_num_partitions()
    return counts


def child_cli() -> None:
    """Part 1, in a fresh process with the bench environment set (see `bench_scale`)."""
    from mdh_assets.runs import instance_for
    from mdh_lib.config import load_settings
    from mdh_lib.sample_server import SampleServer

    n = int(os.environ["MDH_BENCH_SCALE_INSTRUMENTS"])
    timeframes = [tf for tf in os.environ["MDH_BENCH_SCALE_TIMEFRAMES"].split(",") if tf]
    work = Path(os.environ["MDH_BENCH_WORK"])
    gen_s, _ = _timed(lambda: write_served(work / "served", symbols(n)))
    span = ["--start-date", DATE.isoformat(), "--end-date", DATE.isoformat(), "--venues", "binance"]
    commands = {"instruments": ["instruments"], "download": ["download"],
                "candle-processing": ["candle-processing", "--timeframes", ",".join(timeframes)],
                "missing-tick-reports": ["missing-tick-reports", "--format", "json"]}
    cli_s, missing = {}, None
    with SampleServer(data_dir=str(work / "served")) as server:
        env = {**os.environ, "TARDIS_DATASETS_ENDPOINT": server.endpoint, "TARDIS_API_ENDPOINT": server.endpoint}
        os.environ.update(env)
        for name, args in commands.items():
            seconds, run = _timed(lambda: subprocess.run(
                [sys.executable, "-m", "mdh_assets.cli", *args, *span], env=env, cwd=ROOT,
                capture_output=True, text=True))
            if run.returncode:
                raise SystemExit(f"mdh {name} failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
            cli_s[name] = seconds
            if name == "missing-tick-reports":
                missing = json.loads(run.stdout)
        settings = load_settings()
        library_parts: dict = {}
        library_s, raw_files = _timed(lambda: _library_day(settings, DATE, str(work / "baseline"), timeframes,
                                                           library_parts))
    instance = instance_for(settings)
    runs = instance.get_runs()
    by_job: dict[str, int] = {}  # runs per command and steps ("download: raw__trades+...")
    for r in runs:
        label = f"{r.tags.get('mdh/command', '?')}: {'+'.join(sorted(r.step_keys_to_execute or ())) or r.job_name}"
        by_job[label] = by_job.get(label, 0) + 1
    cli_total = sum(cli_s.values())
    work_s = cli_total - cli_s["missing-tick-reports"]
    print(json.dumps({
        "instruments": n, "timeframes": timeframes, "raw_files": raw_files, "library_parts_s": library_parts, "generate_s": gen_s, "cli_s": cli_s, "cli_total_s": cli_total,
        "library_s": library_s, "ratio": cli_total / library_s, "ratio_without_report": work_s / library_s,
        "runs": len(runs), "runs_by_job": by_job, "missing": len(missing), "missing_sample": missing[:3],
        "partitions": partition_counts(),
    }))


# ---------------------------------------------------------------- part 2: a big instance


def _venue_records(exchange: str, pattern: str, count: int, since: dt.date, until: dt.date):
    from mdh_lib.instruments import DATA_TYPES_BY_TYPE
    from mdh_lib.sample_server import catalog

    records, datasets = [], []
    for i in range(count):
        symbol = pattern.format(i)
        rec = catalog.guess_instrument(exchange, symbol, since, until)
        records.append(rec)
        kind = "PERPETUAL" if rec["type"] == "perpetual" else "SPOT_PAIR"
        datasets.append({"id": symbol, "dataTypes": list(DATA_TYPES_BY_TYPE[kind])})
    return {"datasets": {"symbols": datasets}}, records


def record_materializations(instance, items: list[tuple]) -> int:
    """Run-less materializations of (asset key, partition key) pairs, stored as `store_event`
    stores them (the event row in the index shard, then each asset's latest materialization)
    but with multi-row inserts in one transaction. The events are the ones Dagster's public
    `report_runless_asset_event` builds, collected from the instance's `handle_new_event`
    (which stores them) on the way; only public methods of the instance and its event log
    storage write them."""
    import dagster as dg

    entries = []
    instance.handle_new_event = lambda entry, **_: entries.append(entry)  # collect instead of storing
    try:
        for asset_key, partition in items:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset_key, partition=partition))
    finally:
        del instance.handle_new_event
    storage = instance.event_log_storage
    with storage.index_transaction() as conn:
        for i in range(0, len(entries), 400):
            conn.execute(storage.prepare_insert_event_batch(entries[i:i + 400]))
    last = {entry.dagster_event.asset_key: entry for entry in entries}
    for asset_key, entry in last.items():
        latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key), limit=1).records[0]
        storage.store_asset_event(entry, latest.storage_id)
    return len(entries)


GRAPHQL = """
query PartitionHealth($assetKeys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    partitionKeysByDimension { name }
    assetPartitionStatuses {
      __typename
      ... on MultiPartitionStatuses {
        primaryDimensionName
        ranges { primaryDimStartKey primaryDimEndKey secondaryDim {
          __typename
          ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions }
          ... on TimePartitionStatuses { ranges { startKey endKey status } }
        } }
      }
    }
  }
}
"""


def child_instance() -> None:
    """Part 2, in a fresh process with the bench environment set (see `bench_scale`)."""
    import dagster as dg

    from mdh_assets.definitions import ASSETS
    from mdh_assets.operations.schedules import pipeline_requests
    from mdh_assets.partitions import venue_day, venue_day_key
    from mdh_assets.reports.status import status_table
    from mdh_assets.runs import instance_for
    from mdh_lib import manifest
    from mdh_lib.catalog import Catalog
    from mdh_lib.config import load_settings
    import polars as pl

    from mdh_lib.definitions import build_definitions, expected_frame, expected_partitions
    from mdh_lib.layout import dataset_path
    from mdh_lib.retention import Retention
    from mdh_lib.storage import Storage

    settings = load_settings()
    universe = settings.universe
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=n) for n in range(YEARS_DAYS - 1, -1, -1)]
    storage = Storage(settings.data_root)
    out: dict = {"days": len(days), "venues": list(universe.exchanges)}

    # Definitions and raw manifests for the last 30 days (what the report and sensor read).
    details, records = {}, {}
    for exchange, (pattern, count) in VENUE_SYMBOLS.items():
        details[exchange], records[exchange] = _venue_records(exchange, pattern, count, days[0],
                                                              yesterday + dt.timedelta(days=1))

    def definitions_and_manifests() -> list:
        expected = []
        for date in days[-REPORT_DAYS:]:
            table = build_definitions(date, universe, details, records)
            storage.write_parquet(dataset_path(("instruments",), date), table)
            found = expected_partitions(table)
            expected += found
            if date == yesterday:
                continue  # not downloaded yet: what the sensor finds to do
            groups: dict = {}
            for e in found:
                groups.setdefault((e.data_type, e.exchange), []).append(
                    manifest.Outcome(e.key, manifest.OK, rows=100, bytes=4096, source=f"{e.source_symbol}.csv.gz"))
            for (data_type, venue), outcomes in groups.items():
                manifest.write(storage, ("raw", data_type), date, venue, outcomes)
        return expected

    out["manifests_s"], expected = _timed(definitions_and_manifests)
    out["instruments"] = len({e.key for e in expected if e.date == yesterday})
    out["expected_30d"] = len(expected)

    # Materializations of every venue-day asset for every day of the three years.
    instance = instance_for(settings)
    keys = [k for a in ASSETS if a.partitions_def == venue_day for k in a.keys]
    types_of = {v: sorted({e.data_type for e in expected if e.exchange == v}) for v in universe.exchanges}
    derived_by_venue = {v: [k for k in keys if k.path[0] != "raw" and not (
        k.path[0] == "features" and k.path[1] == "options" and "options_chain" not in types_of[v])]
        for v in universe.exchanges}
    items = [(k, str(venue_day_key(d, v))) for d in days[:-1] for v in universe.exchanges
             for k in [dg.AssetKey(["raw", t]) for t in types_of[v]] + derived_by_venue[v]]
    out["events"] = len(items)
    out["materialize_s"], _ = _timed(lambda: record_materializations(instance, items))
    out["venue_day_assets"] = len(keys)

    # The sensor's evaluation over the last 7 days, the 30-day report, the GraphQL status.
    report_days = days[-REPORT_DAYS:]
    sensor_days = days[-SENSOR_DAYS:]
    retention = Retention.of(settings)

    def report():
        catalog = Catalog(storage)
        wanted = pl.concat([expected_frame(catalog.definitions(d)) for d in report_days])
        return status_table(instance, storage, wanted, retention)

    def sensor():
        return pipeline_requests(dg.build_sensor_context(instance=instance), storage, sensor_days)

    out["partitions"] = partition_counts()
    out["report_cold_s"], table = _timed(report)
    out["report_warm_s"], table = _timed(report)
    statuses = table["status"].to_pylist()
    out["report_rows"] = len(statuses)
    out["report_missing"] = sum(s in ("missing", "failed") for s in statuses)  # the last day's
    out["report_missing_expected"] = sum(e.date == yesterday for e in expected)
    out["sensor_cold_s"], requests = _timed(sensor)
    out["sensor_warm_s"], requests = _timed(sensor)
    out["sensor_requests"] = len(requests)

    with _webserver() as url:  # the query the asset page makes, over HTTP as the UI sends it
        variables = {"assetKeys": [{"path": ["raw", "trades"]}]}
        out["graphql_cold_s"], result = _timed(lambda: _graphql(url, GRAPHQL, variables))
        out["graphql_warm_s"], result = _timed(lambda: _graphql(url, GRAPHQL, variables))
    node = result["assetNodes"][0]
    ranges = node["assetPartitionStatuses"]["ranges"]
    out["graphql_ranges"] = len(ranges)
    out["graphql_materialized"] = sum(
        (1 + (dt.date.fromisoformat(r["primaryDimEndKey"]) - dt.date.fromisoformat(r["primaryDimStartKey"])).days)
        * len(r["secondaryDim"].get("materializedPartitions", [])) for r in ranges)
    print(json.dumps(out))


@contextlib.contextmanager
def _webserver():
    """`dagster-webserver` over the bench's instance, its code location loaded."""
    from tests.services import dagster_webserver

    with dagster_webserver(ROOT / "workspace.yaml", cwd=ROOT) as url:
        _graphql(url, "{ version }", {})  # the code location is loaded
        yield url


def _graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(request, timeout=120).read())["data"]


# ---------------------------------------------------------------- the parent


def _child(part: str, config: str, tmp: str, extra: dict) -> dict:
    Path(tmp).mkdir(parents=True, exist_ok=True)
    (Path(tmp) / "mdh.toml").write_text(config)
    env = {**os.environ, "MDH_CONFIG": f"{tmp}/mdh.toml", "MDH_DATA_ROOT": f"{tmp}/data",
           "DAGSTER_HOME": f"{tmp}/dagster", "MDH_WAREHOUSE": f"duckdb:///{tmp}/warehouse.duckdb",
           "MDH_BENCH_WORK": tmp, "MDH_RAW_RETENTION_DAYS": "0", "PYTHONPATH": str(ROOT),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **extra}
    run = subprocess.run([sys.executable, "-m", "benchmarks.scale", part], env=env, capture_output=True, text=True,
                         cwd=ROOT)
    if run.returncode:
        raise RuntimeError(f"scale bench ({part}) failed: {run.stderr.strip()[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def bench_scale(instruments: int = 400, timeframes: str = "1m") -> dict:
    """B8; ``timeframes``: the candle and book timeframes processed (``all``: the seven)."""
    from mdh_lib.timeframes import TIMEFRAMES

    timeframes = ",".join(TIMEFRAMES) if timeframes in ("", "all") else timeframes
    with tempfile.TemporaryDirectory(prefix="mdh-bench-scale-") as tmp:
        cli_s, cli = _timed(lambda: _child("cli", universe("2024-01-01", ["binance"]), f"{tmp}/cli", {
            "MDH_BENCH_SCALE_INSTRUMENTS": str(instruments), "MDH_BENCH_SCALE_TIMEFRAMES": timeframes}))
        start = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=YEARS_DAYS)
        inst_s, big = _timed(lambda: _child("instance", universe(start, list(VENUE_SYMBOLS)),
                                            f"{tmp}/instance", {}))
    return {"cli": {**cli, "wall_s": cli_s}, "instance": {**big, "wall_s": inst_s}}


def print_table(r: dict, targets: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=140)
    cli, big = r["cli"], r["instance"]
    ok = lambda good: "[green]met[/green]" if good else "[red]missed[/red]"
    table = Table(title=f"B8 scale: {cli['instruments']:,} binance spot instruments x 1 day through the CLI "
                        f"({','.join(cli['timeframes'])}); an instance of {big['instruments']:,} instruments x "
                        f"{big['days']:,} days x {len(big['venues'])} venues")
    for col in ("", "measure", "result", "target"):
        table.add_column(col)
    for name, seconds in cli["cli_s"].items():
        table.add_row("B8", f"mdh {name}", f"{seconds:.1f} s", "")
    table.add_row("B8", "Dagster runs created",
                  f"{cli['runs']} ({', '.join(f'{j} {n}' for j, n in cli['runs_by_job'].items())})", "")
    table.add_row("B8", "reported missing or failed after the backfill", str(cli["missing"]), f"0 {ok(cli['missing'] == 0)}")
    parts = ", ".join(f"{k} {v:.1f}" for k, v in cli["library_parts_s"].items())
    table.add_row("B8", "CLI total / library",
                  f"{cli['cli_total_s']:.1f} s / {cli['library_s']:.1f} s = {cli['ratio']:.2f}x "
                  f"({cli['ratio_without_report']:.2f}x without the report; library s: {parts})",
                  f"<= {targets['ratio']}x {ok(cli['ratio'] <= targets['ratio'])}")
    for label, counts in (("1 venue since 2024-01-01", cli["partitions"]),
                          (f"{len(big['venues'])} venues x 3 years", big["partitions"])):
        most = max(counts.values())
        table.add_row("B8", f"partitions per asset ({label})",
                      f"max {most:,} over {len(counts)} partitioned assets", f"<< 100,000 {ok(most < 100_000)}")
    table.add_row("B8", "instance built",
                  f"{big['events']:,} materializations in {big['materialize_s']:.1f} s; {REPORT_DAYS} days of "
                  f"definitions + raw manifests in {big['manifests_s']:.1f} s", "")
    table.add_row("B8", f"sensor evaluation ({SENSOR_DAYS} days)",
                  f"cold {big['sensor_cold_s']:.2f} s, warm {big['sensor_warm_s']:.2f} s ({big['sensor_requests']} requests)",
                  f"<= {targets['sensor_s']} s {ok(big['sensor_cold_s'] <= targets['sensor_s'])}")
    table.add_row("B8", f"missing-data report ({REPORT_DAYS} days, {big['report_rows']:,} rows)",
                  f"cold {big['report_cold_s']:.2f} s, warm {big['report_warm_s']:.2f} s "
                  f"({big['report_missing']:,} missing: the last day's {big['report_missing_expected']:,})",
                  f"<= {targets['report_s']} s {ok(big['report_cold_s'] <= targets['report_s'])}")
    table.add_row("B8", "GraphQL partition status of raw/trades",
                  f"cold {big['graphql_cold_s']:.3f} s, warm {big['graphql_warm_s']:.3f} s "
                  f"({big['graphql_materialized']:,} venue-days materialized)",
                  f"<= {targets['graphql_s']} s {ok(big['graphql_cold_s'] <= targets['graphql_s'])}")
    console.print(table)
    console.print(f"B8 wall time: {cli['wall_s'] + big['wall_s']:.0f} s (CLI part {cli['wall_s']:.0f} s, "
                  f"instance part {big['wall_s']:.0f} s)")


TARGETS = {"ratio": 1.5, "sensor_s": 2.0, "report_s": 2.0, "graphql_s": 0.5}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "cli":
        child_cli()
    elif len(sys.argv) > 1 and sys.argv[1] == "instance":
        child_instance()
    else:  # `python -m benchmarks.scale` alone: B8 only
        result = bench_scale(int(os.environ.get("MDH_BENCH_SCALE_INSTRUMENTS", 400)),
                             os.environ.get("MDH_BENCH_SCALE_TIMEFRAMES", "1m"))
        print_table(result, TARGETS)
        print(json.dumps(result, indent=2, default=str))
