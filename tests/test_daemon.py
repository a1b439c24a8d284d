"""Production orchestration for real: a PostgreSQL server, `dagster-daemon` and
`dagster-webserver` on the instance that `mdh` writes for MDH_DAGSTER_POSTGRES_URL, against
the sample server. The sensor and the daily schedule are turned on through the webserver's
GraphQL (what the UI's toggles send); then the daemon alone fills a day that nobody ran:
definitions, raw, candles and book, MFT features, warehouse. Its first download is slowed
down and its run killed (SIGKILL, run worker and step processes) mid-download: the code
server fails the run, the sensor asks again, and the day ends complete, with every row the
server has and none twice."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import REPO
from services import free_port, postgres_server  # noqa: F401 - postgres_server: a fixture

from mdh_assets.runs import POSTGRES_URL_ENV, instance_for
from mdh_lib.config import load_settings
from mdh_lib.sample_server import SampleServer
from mdh_lib.timeframes import MFT_TIMEFRAMES, TIMEFRAMES

pytestmark = pytest.mark.timeout(420)
VENUE, SYMBOLS = "binance", ("BTCUSDT", "ETHUSDT")
SLOW = "BTCUSDT"  # its first trades download hangs until the run is killed
DEADLINE_S = 300


def _wanted() -> list[dg.AssetKey]:
    """What a binance spot venue-day ends with (every step of the pipeline)."""
    keys = ["raw/trades", "raw/book_snapshot_5"]
    keys += [f"{family}/{tf}" for family in ("candles", "book") for tf in TIMEFRAMES]
    keys += [f"features/mft/{tf}" for tf in MFT_TIMEFRAMES]
    keys += [f"warehouse/{table}_{tf}" for table in ("candles", "book_features") for tf in TIMEFRAMES]
    keys += [f"warehouse/mft_features_{tf}" for tf in MFT_TIMEFRAMES]
    return [dg.AssetKey(k.split("/")) for k in keys]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"content-type": "application/json"})
    body = json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _wait(what: str, check, deadline: float, procs: dict[str, subprocess.Popen], poll: float = 1.0):
    while True:
        got = check()
        if got:
            return got
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def _server_rows(server: SampleServer, data_type: str, day: dt.date, symbol: str) -> int:
    url = f"{server.endpoint}/{VENUE}/{data_type}/{day:%Y/%m/%d}/{symbol}.csv.gz"
    body = gzip.decompress(urllib.request.urlopen(url, timeout=60).read()).decode()
    return max(0, len(body.splitlines()) - 1)


def test_daemon_fills_a_missed_day_and_recovers_a_killed_run(postgres_server, tmp_path, monkeypatch):  # noqa: F811
    started = time.monotonic()
    deadline = started + DEADLINE_S
    now = dt.datetime.now(dt.timezone.utc)
    # One day: yesterday once its definitions are due (08:00 UTC today), else the day before
    # (MDH_LOOKBACK_DAYS=2); the universe starts that day, so the sensor sees no other.
    yesterday = now.date() - dt.timedelta(days=1)
    days = [yesterday if now.hour >= 8 else yesterday - dt.timedelta(days=1)]
    first_day = days[0]
    (tmp_path / "mdh.toml").write_text(
        f'[universe]\nstart_date = "{first_day}"\n[[universe.venues]]\nexchange = "{VENUE}"\n'
        f'symbols = {json.dumps(list(SYMBOLS))}\n')
    with SampleServer(trades_per_day=1_000) as server:
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
               POSTGRES_URL_ENV: postgres_server.url, "DAGSTER_HOME": str(tmp_path / "home"),
               "MDH_DATA_ROOT": str(tmp_path / "data"), "MDH_WAREHOUSE": f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
               "MDH_CONFIG": str(tmp_path / "mdh.toml"), "TARDIS_DATASETS_ENDPOINT": server.endpoint,
               "TARDIS_API_ENDPOINT": server.endpoint, "TARDIS_API_KEY": "", "MDH_RAW_RETENTION_DAYS": "0",
               "MDH_LOOKBACK_DAYS": "2", "MDH_SENSOR_INTERVAL_SECONDS": "3",
               # each step in its run's process: a step process costs seconds of imports
               # on two loaded cores, for a tiny day (the default spawns one per step)
               "MDH_EXECUTOR": "in_process"}
        for name in (POSTGRES_URL_ENV, "DAGSTER_HOME", "MDH_DATA_ROOT", "MDH_WAREHOUSE", "MDH_CONFIG"):
            monkeypatch.setenv(name, env[name])
        monkeypatch.chdir(tmp_path)
        instance = instance_for(load_settings())  # writes DAGSTER_HOME/dagster.yaml for Postgres
        assert "env: MDH_DAGSTER_POSTGRES_URL" in (tmp_path / "home" / "dagster.yaml").read_text()
        for day in days:  # whichever day's raw run comes first waits for this file (the rest are cleared)
            server.inject("latency", match=f"/{VENUE}/trades/{day:%Y/%m/%d}/{SLOW}", times=1, ms=600_000)

        bin_dir, port = Path(sys.executable).parent, free_port()
        logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("daemon", "webserver")}
        procs = {
            "daemon": subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
                                       env=env, cwd=tmp_path, stdout=logs["daemon"], stderr=subprocess.STDOUT,
                                       start_new_session=True),
            "webserver": subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                           "-w", str(REPO / "workspace.yaml")], env=env, cwd=tmp_path,
                                          stdout=logs["webserver"], stderr=subprocess.STDOUT, start_new_session=True),
        }
        url = f"http://127.0.0.1:{port}"
        try:
            def up() -> bool:
                try:
                    urllib.request.urlopen(f"{url}/server_info", timeout=2)
                    return True
                except OSError:
                    return False

            _wait("the webserver", up, deadline, procs)
            repo = _graphql(url, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
            node = repo["repositoriesOrError"]["nodes"][0]
            where = {"repositoryName": node["name"], "repositoryLocationName": node["location"]["name"]}
            sensor = _graphql(url, """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
                __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
                              {"s": {**where, "sensorName": "pipeline"}})["startSensor"]
            assert sensor.get("sensorState", {}).get("status") == "RUNNING", sensor
            schedule = _graphql(url, """mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) {
                __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }""",
                                {"s": {**where, "scheduleName": "daily_0800_utc"}})["startSchedule"]
            assert schedule.get("scheduleState", {}).get("status") == "RUNNING", schedule

            # 1. the sensor's first raw run, killed while it waits for the slow file
            def raw_run() -> dg.RunRecord | None:
                records = instance.get_run_records(dg.RunsFilter(job_name="raw", statuses=[dg.DagsterRunStatus.STARTED]))
                return records[0] if records else None

            record = _wait("the first raw run", raw_run, deadline, procs, poll=0.5)
            run_id = record.dagster_run.run_id

            def downloading() -> int | None:
                """The run worker's pid, once the run has fetched another trades file of the day
                than the slow one: the slow one is then in flight (the files of a data type
                are requested together)."""
                trades = [p for _, p, _ in server.requests if f"/{VENUE}/trades/" in p]
                if not trades:
                    return None
                starts = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
                return starts[0].dagster_event.pid if starts else None

            worker = _wait("the download to be under way", downloading, deadline, procs, poll=0.2)
            time.sleep(0.5)
            slow = [p for _, p, _ in server.requests if f"/{VENUE}/trades/" in p and SLOW in p]
            assert not slow, slow  # still downloading it
            killed = _descendants(worker)  # the run worker and its step processes, if any
            for pid in killed:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # a process that ended meanwhile
                    pass
            killed_at = time.monotonic()
            server.clear_faults()  # the retry, and the other day's run, download at full speed

            def failed() -> dg.DagsterRun | None:
                run = instance.get_run_by_id(run_id)
                return run if run.status == dg.DagsterRunStatus.FAILURE else None

            _wait("the killed run to be marked failed", failed, deadline, procs, poll=0.5)
            failed_after = time.monotonic() - killed_at

            # 2. the sensor retries; the day ends complete
            wanted = _wanted()

            def complete() -> bool:
                for key in wanted:
                    have = instance.get_materialized_partitions(key)
                    if any(f"{d}|{VENUE}" not in have for d in days):
                        return False
                if not all(d.isoformat() in instance.get_materialized_partitions(dg.AssetKey("instruments")) for d in days):
                    return False
                return not instance.get_runs_count(dg.RunsFilter(statuses=[  # and every run has ended
                    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED]))

            _wait("the days to be complete", complete, deadline, procs, poll=2.0)
            filled_after = time.monotonic() - started

            # daemon-launched runs only: the schedule and the sensor, no mdh command
            runs = instance.get_runs()
            assert all(r.tags.get("dagster/sensor_name") == "pipeline" or r.tags.get("dagster/schedule_name")
                       == "daily_0800_utc" for r in runs), [r.tags for r in runs]
            assert not any("mdh/source" in r.tags for r in runs)
            by_job: dict[str, list[dg.DagsterRunStatus]] = {}
            for r in reversed(runs):
                by_job.setdefault(r.job_name, []).append(r.status)
            assert by_job["raw"][0] == dg.DagsterRunStatus.FAILURE and by_job["raw"][-1] == dg.DagsterRunStatus.SUCCESS
            assert dg.DagsterRunStatus.SUCCESS in by_job["daily_definitions"]
            health = _graphql(url, "{ instance { info daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
            statuses = {d["daemonType"]: d["healthy"] for d in health["instance"]["daemonHealth"]["allDaemonStatuses"]}
            assert statuses.get("SENSOR") and statuses.get("SCHEDULER") and statuses.get("QUEUED_RUN_COORDINATOR"), statuses
            assert "PostgresRunStorage" in health["instance"]["info"]
            assert postgres_server.password not in health["instance"]["info"]
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for name, proc in procs.items():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                try:  # and what is left of its group: code servers waiting on a run, the runs
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
                logs[name].close()

        # nothing lost, nothing twice: every row the server has, in the files and the warehouse
        data = tmp_path / "data"
        for day in days:
            for data_type in ("trades", "book_snapshot_5"):
                files = sorted((data / "raw" / data_type / f"date={day}").glob("*.parquet"))
                assert len(files) == len(SYMBOLS)
                for f in files:
                    table = pq.ParquetFile(f).read()
                    symbol = table.column("symbol")[0].as_py()
                    assert table.num_rows == _server_rows(server, data_type, day, symbol) > 0
                    if data_type == "trades":
                        assert len(set(table.column("id").to_pylist())) == table.num_rows
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            rows = con.execute("select symbol, cast(timestamp as date) as d, count(*), count(distinct timestamp) "
                               "from candles_1m group by all order by all").fetchall()
        assert len(rows) == len(SYMBOLS) * len(days) and all(r[2] == r[3] == 1440 for r in rows), rows
        for name in ("daemon", "webserver"):
            assert postgres_server.password not in (tmp_path / f"{name}.log").read_text(errors="replace")
    print(f"\ndays {', '.join(map(str, days))}: complete {filled_after:.0f} s after start; killed run failed "
          f"{failed_after:.1f} s after the kill; runs by job: "
          + ", ".join(f"{job} {len(statuses)}" for job, statuses in by_job.items())
          + "; " + "; ".join(f"{r.job_name} {r.tags.get('mdh/venue_days')} {r.status.value}" for r in reversed(runs)))
