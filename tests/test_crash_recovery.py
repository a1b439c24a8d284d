"""A crashed run never blocks the next one (issue 10).

`mdh` runs as a real subprocess against the sample server and is killed with SIGKILL: at
named crash points (`mdh_lib.crashpoints`: files downloaded, a Parquet file complete under
its temporary name, a warehouse slice deleted but not committed) and from outside while a
download is in flight. The same command run again must recover the orphaned run, wait for
nothing, and leave exactly the data of an uninterrupted run: every file equal, no
duplicate rows in the warehouse, no scratch files left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

DAY = ["--start-date", "2024-01-02", "--end-date", "2024-01-02"]
NARROW = ["--venues", "binance", "--symbols", "BTCUSDT"]
STEPS = {
    "instruments": ["instruments", *DAY],
    "download": ["download", *DAY, *NARROW],
    "candle-processing": ["candle-processing", *DAY, *NARROW, "--timeframes", "1m,1h"],
    "bigquery-upload": ["bigquery-upload", *DAY, *NARROW, "--timeframes", "1m,1h"],
}
ORDER = list(STEPS)
TABLES = ("candles_1m", "candles_1h", "book_features_1m")


def user(tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The environment of one user: own data root, instance and warehouse."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "mdh.toml").write_text('[universe]\nstart_date = "2024-01-01"\n'
                                  '[[universe.venues]]\nexchange = "binance"\nsymbols = ["BTCUSDT"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDH_", "TARDIS_", "DAGSTER_"))}
    return env | {
        "MDH_DATA_ROOT": str(tmp / "data"), "DAGSTER_HOME": str(tmp / "dagster"),
        "MDH_WAREHOUSE": f"duckdb:///{tmp / 'warehouse.duckdb'}", "MDH_CONFIG": str(tmp / "mdh.toml"),
        "TARDIS_DATASETS_ENDPOINT": endpoint, "TARDIS_API_ENDPOINT": endpoint, "TARDIS_API_KEY": "",
        "MDH_RAW_RETENTION_DAYS": "0", "NO_PROXY": "127.0.0.1,localhost", **extra,
    }


def start(env: dict, step: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mdh_assets.cli", *STEPS[step]], env=env | extra,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mdh(env: dict, step: str, **extra: str) -> tuple[int, str]:
    """A command in its own process."""
    proc = start(env, step, **extra)
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out + err


@contextlib.contextmanager
def environment(env: dict):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def steps(env: dict, names: list[str], capsys=None) -> str:
    """Uninterrupted commands, in this process (faster than a process each); their stderr."""
    from mdh_assets.cli import main

    with environment(env):
        for name in names:
            assert main(STEPS[name]) == 0, name
    return capsys.readouterr().err if capsys else ""


def snapshot(env: dict) -> dict:
    """Every dataset file's rows, and every warehouse table's rows, in a stable order."""
    root = Path(env["MDH_DATA_ROOT"])
    files = {str(p.relative_to(root)): pl.read_parquet(p) for p in sorted(root.rglob("*.parquet"))
             if p.relative_to(root).parts[0] in ("raw", "candles", "book", "features")}
    con = duckdb.connect(env["MDH_WAREHOUSE"].removeprefix("duckdb:///"), read_only=True)
    tables = {t: con.sql(f'SELECT * FROM "{t}" ORDER BY instrument_key, timestamp').pl() for t in TABLES}
    con.close()
    return {"files": files, "tables": tables}


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got["files"]) == sorted(want["files"])
    for name, frame in want["files"].items():
        assert got["files"][name].equals(frame), name
    for table, frame in want["tables"].items():
        rows = got["tables"][table]
        keys = rows.select("instrument_key", "timestamp")
        assert keys.n_unique() == rows.height, f"duplicate rows in {table}"
        assert rows.equals(frame), table


def no_scratch_left(env: dict) -> None:
    scratch = Path(env["MDH_DATA_ROOT"]) / ".mdh-tmp"
    assert not scratch.exists() or not any(scratch.iterdir()), list(scratch.iterdir())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sample_server) -> dict:
    """The data of an uninterrupted run of every step."""
    env = user(tmp_path_factory.mktemp("reference"), sample_server.endpoint)
    steps(env, ORDER)
    return snapshot(env)


@pytest.mark.parametrize("step,point", [
    ("download", "fetch.downloaded"),
    ("download", "storage.before_rename"),
    ("candle-processing", "storage.before_rename@2"),
    ("bigquery-upload", "warehouse.in_transaction@2"),
])
def test_sigkill_at_a_crash_point_then_the_same_command_recovers(tmp_path, server, reference, capsys, step, point):
    env = user(tmp_path, server.endpoint)
    steps(env, ORDER[:ORDER.index(step)])
    code, text = mdh(env, step, MDH_CRASH_AT=point)
    assert code == -signal.SIGKILL, text

    text = steps(env, [step], capsys)  # the same command again
    recovered = [line for line in text.splitlines() if line.startswith("recovered run")]
    assert len(recovered) == 1 and f"mdh {step}" in recovered[0] and "process died" in recovered[0], text
    assert "waiting for" not in text
    steps(env, ORDER[ORDER.index(step) + 1:])
    assert_same(snapshot(env), reference)
    no_scratch_left(env)


def test_sigkill_while_a_download_is_in_flight(tmp_path, server, reference, capsys):
    """Killed from outside while the official client waits for the file: the re-run names the
    orphaned run, downloads again and ends with the data of an uninterrupted run."""
    env = user(tmp_path, server.endpoint)
    steps(env, ["instruments"])
    server.inject("latency", match="binance/book_snapshot_5/", ms=4000)
    proc = start(env, "download")
    fetching = _until_fetching(proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert fetching(), "the scratch folder of the killed process should still be there"
    server.clear_faults()

    from mdh_assets.cli import main

    capsys.readouterr()
    with environment(env):  # any batch command recovers first: the report then lists the partitions failed
        assert main(["missing-tick-reports", *DAY, "--format", "json"]) == 0
    report = capsys.readouterr()
    assert "recovered run" in report.err and not fetching(), report.err
    assert {(r["data_type"], r["status"]) for r in json.loads(report.out)} == {
        ("trades", "failed"), ("book_snapshot_5", "failed")}
    text = steps(env, ["download"], capsys)
    assert "recovered" not in text and "waiting for" not in text, text
    steps(env, ORDER[2:])
    assert_same(snapshot(env), reference)


def _until_fetching(proc: subprocess.Popen):
    """Wait until ``proc`` has Tardis downloads in flight; a function listing its fetch folders."""
    fetching = lambda: list(Path(tempfile.gettempdir()).glob(f"mdh-fetch-{proc.pid}-*"))
    deadline = time.monotonic() + 60
    while not fetching() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert fetching(), "the download never started"
    return fetching


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_waiting_command_is_idle_says_who_holds_the_slot_and_stops_on_sigterm(tmp_path, server):
    env = user(tmp_path, server.endpoint)
    steps(env, ["instruments"])
    server.inject("latency", match="/2024/01/02/", ms=40_000)  # the holder keeps the slot throughout
    holder = start(env, "download")
    try:
        _until_fetching(holder)  # it holds the tardis slot
        _wait_then_stop(env, holder)
    finally:  # never leave a process behind (it would retry a vanished server for minutes)
        holder.kill()


def _wait_then_stop(env: dict, holder: subprocess.Popen) -> None:
    other_day = ["download", "--start-date", "2024-01-03", "--end-date", "2024-01-03", *NARROW]
    waiter = subprocess.Popen([sys.executable, "-m", "mdh_assets.cli", *other_day], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while waiter.poll() is None and not any("waiting for a slot" in line for line in lines):
            lines.append(waiter.stderr.readline())
        wait_line = next(line for line in lines if "waiting for a slot" in line)
        assert "pool 'tardis' (limit 1) is held by run " in wait_line and "mdh download" in wait_line, wait_line
        assert f"pid {holder.pid}" in wait_line and "MDH_SLOT_WAIT=600" in wait_line, wait_line
        before = _cpu_seconds(waiter.pid)
        time.sleep(2.0)
        used = _cpu_seconds(waiter.pid) - before
        assert used < 0.1, f"waiting used {used:.2f} s of CPU in 2 s"  # < 5% of a core
        sent = time.monotonic()
        waiter.send_signal(signal.SIGTERM)
        waiter.wait(timeout=10)
        stopped = time.monotonic() - sent
        assert waiter.returncode == 130 and stopped < 2.0, (waiter.returncode, stopped)
    finally:
        waiter.kill()
    # a command that waits longer than MDH_SLOT_WAIT gives up with one line and exit 1
    code, text = mdh(env | {"MDH_SLOT_WAIT": "1"}, "download")  # the same day: its partitions are busy
    assert code == 1 and "gave up after waiting" in text and "MDH_SLOT_WAIT" in text, text
    assert "Traceback" not in text


def test_two_commands_at_once_on_one_instance(tmp_path, server, reference):
    """Two downloads of the same day, then two warehouse loads, at once: both succeed, the
    second waits for the first's partitions instead of skipping them, and the data is that
    of one uninterrupted run (no duplicate rows)."""
    env = user(tmp_path, server.endpoint)
    steps(env, ["instruments"])
    server.inject("latency", match="binance/trades/", ms=1500)
    for step in ("download", "candle-processing", "bigquery-upload"):
        first, second = start(env, step), start(env, step)
        results = [p.communicate(timeout=240) for p in (first, second)]
        assert [p.returncode for p in (first, second)] == [0, 0], [r[1][-3000:] for r in results]
    assert_same(snapshot(env), reference)


def test_the_sensor_recovers_a_crashed_run_and_requests_its_partitions_again(tmp_path, server):
    """The daemon's gap-filling sensor would otherwise see the dead run's partitions "in
    progress" for ever and never request them."""
    import datetime as dt

    import dagster as dg

    from mdh_assets.definitions import defs
    from mdh_assets.operations.schedules import pipeline_sensor
    from mdh_assets.resources.storage import StorageResource

    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    day = ["--start-date", yesterday, "--end-date", yesterday]
    env = user(tmp_path, server.endpoint)
    from mdh_assets.cli import main

    with environment(env):
        assert main(["instruments", *day]) == 0
    killed = subprocess.run([sys.executable, "-m", "mdh_assets.cli", "download", *day, *NARROW],
                            env=env | {"MDH_CRASH_AT": "fetch.downloaded"}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with environment(env):
        instance = dg.DagsterInstance.get()
        [orphan] = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        context = dg.build_sensor_context(instance=instance, definitions=defs,
                                          resources={"storage": StorageResource(data_root=env["MDH_DATA_ROOT"])})
        requests = pipeline_sensor(context)
        assert instance.get_run_by_id(orphan.dagster_run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"binance:{yesterday}..{yesterday}" in {r.tags["mdh/venue_days"] for r in requests if r.job_name == "raw"}
