"""The instance that `mdh` writes and opens (`mdh_assets.runs`): SQLite by default, a real
PostgreSQL server when MDH_DAGSTER_POSTGRES_URL is set, the queued run coordinator and pools
in both, and the database password kept out of the file, the output and the instance info."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from services import postgres_server  # noqa: F401 - a fixture: one real PostgreSQL server for the module

from mdh_assets.cli import main
from mdh_assets.runs import (
    INSTANCE_YAML, MARKER, POSTGRES_INSTANCE_YAML, POSTGRES_URL_ENV, instance_for, scrub,
)
from mdh_lib.config import load_settings

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
DAY = ["--start-date", YESTERDAY.isoformat(), "--end-date", YESTERDAY.isoformat()]


def _storage(instance: dg.DagsterInstance) -> str:
    return type(instance.run_storage).__name__


def test_sqlite_by_default_with_the_queued_coordinator_and_pools(tmp_path, monkeypatch):
    monkeypatch.delenv(POSTGRES_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    with instance_for(load_settings()) as instance:
        assert (tmp_path / "home" / "dagster.yaml").read_text() == INSTANCE_YAML
        assert _storage(instance) == "SqliteRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 4
        assert config.pool_config.pool_granularity.value == "run" and config.pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled


def test_a_file_without_the_marker_is_left_alone(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    mine = "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(mine)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(POSTGRES_URL_ENV, "postgresql://u:secret-pw@127.0.0.1:1/db")
    with instance_for(load_settings()) as instance:
        assert _storage(instance) == "SqliteRunStorage"
    assert (home / "dagster.yaml").read_text() == mine


@pytest.mark.parametrize("url", ["mysql://u:secret-pw@h/db", "postgresql://u:secret-pw@h:notaport/db",
                                 "postgresql://u:secret-pw@h:5432/"])
def test_a_bad_url_is_one_line_without_the_password(url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MDH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv(POSTGRES_URL_ENV, url)
    assert main(["missing-tick-reports", *DAY]) == 1
    out = capsys.readouterr()
    assert "MDH_DAGSTER_POSTGRES_URL" in out.err and len(out.err.strip().splitlines()) == 1
    assert "secret-pw" not in out.out + out.err


def test_scrub():
    assert scrub("at postgresql://mdh:p%40ss@127.0.0.1:5432/mdh now") == "at postgresql://mdh:***@127.0.0.1:5432/mdh now"
    assert scrub("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert scrub("nothing here") == "nothing here"


def test_postgres_instance_keeps_the_password_out(postgres_server, tmp_path, monkeypatch):  # noqa: F811
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(POSTGRES_URL_ENV, postgres_server.url)
    with instance_for(load_settings()) as instance:
        assert _storage(instance) == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        info = instance.info_str()
    written = (home / "dagster.yaml").read_text()
    assert written == POSTGRES_INSTANCE_YAML and written.startswith(MARKER)
    assert "env: MDH_DAGSTER_POSTGRES_URL" in written
    for text in (written, info):
        assert postgres_server.password not in text
    # unset again: back to SQLite (the file follows the environment while it has the marker)
    monkeypatch.delenv(POSTGRES_URL_ENV)
    with instance_for(load_settings()) as instance:
        assert _storage(instance) == "SqliteRunStorage"
    assert (home / "dagster.yaml").read_text() == INSTANCE_YAML


def test_wrong_password_is_one_line_without_it(postgres_server, tmp_path):  # noqa: F811
    wrong = "Wr0ng-" + postgres_server.password[::-1]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "MDH_DATA_ROOT": str(tmp_path / "data"),
           POSTGRES_URL_ENV: postgres_server.url.replace(postgres_server.password, wrong)}
    out = subprocess.run([str(Path(sys.executable).with_name("mdh")), "missing-tick-reports", *DAY], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("mdh:")]
    assert len(errors) == 1 and "password authentication failed" in errors[0] and "mdh:***@127.0.0.1" in errors[0]
    assert wrong not in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_cli_runs_are_recorded_in_postgres(postgres_server, mdh_env, monkeypatch, capsys):  # noqa: F811
    """A CLI command on a Postgres instance: its runs and materializations land in the
    database (what the UI shows), and the password is in none of its output."""
    monkeypatch.setenv(POSTGRES_URL_ENV, postgres_server.url)
    assert main(["instruments", *DAY]) == 0
    assert main(["download", *DAY, "--venues", "binance"]) == 0
    out = capsys.readouterr()
    assert postgres_server.password not in out.out + out.err
    with instance_for(load_settings()) as instance:
        runs = instance.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert f"{YESTERDAY}|binance" in instance.get_materialized_partitions(dg.AssetKey(["raw", "trades"]))
    # the same rows, read straight from the database
    count = int(postgres_server.psql("select count(*) from runs where status = 'SUCCESS'").strip())
    assert count == len(runs)
