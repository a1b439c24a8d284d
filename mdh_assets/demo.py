"""`mdh demo`: the main job on the local sample source, start to end, offline.

Starts the Tardis-compatible sample server in-process, points the Tardis endpoints at it,
then runs the seed's daily steps through Dagster for the first days of the universe.
"""

from __future__ import annotations

import datetime as dt
import os
import time

from mdh_lib.config import load_settings


def run_demo(days: int = 2) -> int:
    from mdh_assets import cli
    from mdh_assets.pipeline import Filters, Runtime
    from mdh_lib.sample_server import SampleServer

    settings = load_settings()
    start = settings.universe.start_date
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    t0 = time.monotonic()
    with SampleServer() as server:
        os.environ["TARDIS_DATASETS_ENDPOINT"] = os.environ["TARDIS_API_ENDPOINT"] = server.endpoint
        rt = Runtime(load_settings())
        cli.out.print(f"[bold]mdh demo[/bold]: sample server at {server.url}, data root {rt.storage.root}, "
                      f"days {dates[0]}..{dates[-1]}")
        from mdh_assets.pipeline import ensure_instruments

        failures = [o for o in ensure_instruments(rt, dates, force=True) if not o.success]
        outcomes, more = cli._download(rt, dates, Filters(), force=False)
        rows, report_failures = cli._report_rows(rt, dates, Filters())
    cli._download_summary(outcomes, time.monotonic() - t0)
    cli._print_report(rows, dates)
    cli.out.print(f"Open the Dagster UI over this instance and data: [bold]make ui[/bold] (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return 1 if cli._fail_lines(failures + more + outcomes + report_failures) else 0
