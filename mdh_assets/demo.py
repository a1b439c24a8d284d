"""`mdh demo`: the main job on the local sample source, start to end, offline.

Starts the Tardis-compatible sample server in-process, points the Tardis endpoints at it,
then runs the seed's daily steps through Dagster for the first days of the universe:
instruments, missing-data report, download, candles (with book and options features), MFT,
and the warehouse tables (DuckDB unless MDH_WAREHOUSE says otherwise).
"""

from __future__ import annotations

import datetime as dt
import os
import time

from mdh_lib.config import load_settings

# The demo's sample days (or the first partition days, when the universe starts later).
DEMO_START = dt.date(2024, 1, 1)
SHOWN = ["timestamp", "open", "high", "low", "close", "volume", "trade_count", "delay_median"]


def run_demo(days: int = 2) -> int:
    from rich.table import Table

    from mdh_assets import cli
    from mdh_assets.pipeline import Runtime, ensure_instruments
    from mdh_lib.definitions import Filters
    from mdh_lib.catalog import Catalog
    from mdh_lib.sample_server import SampleServer
    from mdh_lib.timeframes import TIMEFRAMES

    settings = load_settings()
    first = max(DEMO_START, settings.universe.start_date)
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    t0 = time.monotonic()
    steps = []

    def step(name: str, work):
        started = time.monotonic()
        outcomes, more = work()
        steps.append((name, outcomes, time.monotonic() - started))
        return outcomes, more

    with SampleServer() as server:
        os.environ["TARDIS_DATASETS_ENDPOINT"] = os.environ["TARDIS_API_ENDPOINT"] = server.endpoint
        rt = Runtime(load_settings())
        cli.out.print(f"[bold]mdh demo[/bold]: sample server at {server.url}, data root {rt.storage.root}, "
                      f"days {dates[0]}..{dates[-1]}")
        failures = [o for o in ensure_instruments(rt, dates, force=True) if not o.success]
        _, more = step("download raw ticks", lambda: cli._download(rt, dates, Filters(), force=False))
    step("candles, book and options features", lambda: cli._process(rt, dates, Filters(), "candle", tuple(TIMEFRAMES)))
    step("MFT features", lambda: cli._process(rt, dates, Filters(), "mft", tuple(TIMEFRAMES)))
    step("warehouse tables", lambda: cli._process(rt, dates, Filters(), "upload", tuple(TIMEFRAMES)))
    rows, report_failures = cli._report_rows(rt, dates, Filters())
    outcomes = [o for _, step_outcomes, _ in steps for o in step_outcomes]
    timing = Table(title="Demo steps")
    for col in ("step", "runs", "files written", "seconds"):
        timing.add_column(col, justify="right" if col != "step" else "left")
    for name, step_outcomes, seconds in steps:
        timing.add_row(name, str(len(step_outcomes)), str(sum(o.files for o in step_outcomes)), f"{seconds:.1f}")
    cli.out.print(timing)
    cli._summary("Demo summary", outcomes, time.monotonic() - t0)

    catalog = Catalog(rt.storage)
    key = "BINANCE-FUTURES:PERPETUAL:BTC-USDT"
    last = catalog.read(("candles", "1m"), dates[-1], key) if catalog.exists(("candles", "1m"), dates[-1], key) else None
    if last is not None:
        table = Table(title=f"Last 1m candles of {key} on {dates[-1]}")
        for col in ("time", "open", "high", "low", "close", "volume", "trades", "delay ms"):
            table.add_column(col, justify="right")
        for row in last.tail(5).select(SHOWN).iter_rows():
            table.add_row(row[0].strftime("%H:%M"), *("-" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v)
                                                     for v in row[1:]))
        cli.out.print(table)
    cli._print_report(rows, dates)
    cli.out.print(f"Open the Dagster UI over this instance and data: [bold]make ui[/bold] "
                  f"(DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return 1 if cli._fail_lines(failures + more + outcomes + report_failures) else 0
