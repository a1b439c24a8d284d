"""`mdh_assets.instance_sqlite`: Dagster's connections to the instance's SQLite files get
`synchronous=NORMAL` and a kept connection, files elsewhere are left alone, migration
scripts are loaded once per folder, and a command killed with SIGKILL loses none of the
events it committed."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import dagster as dg
import sqlalchemy
from sqlalchemy.pool import NullPool

from mdh_assets import instance_sqlite

FULL, NORMAL = 2, 1


def _wal_file(path) -> None:
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchall()


def test_connections_under_the_instance_get_normal_sync_and_a_kept_connection(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    instance_sqlite.use_for(home)
    for folder, wanted in ((home, NORMAL), (elsewhere, FULL)):
        path = folder / "storage.db"
        _wal_file(path)
        engine = sqlalchemy.create_engine(f"sqlite:///{path}", poolclass=NullPool)  # as Dagster opens them
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == wanted, folder
    assert str(home / "storage.db") in instance_sqlite._kept
    assert str(elsewhere / "storage.db") not in instance_sqlite._kept
    for i in range(instance_sqlite.KEPT + 3):  # the kept connections stay few
        path = home / f"run-{i}.db"
        _wal_file(path)
        with sqlalchemy.create_engine(f"sqlite:///{path}", poolclass=NullPool).connect():
            pass
    assert len(instance_sqlite._kept) == instance_sqlite.KEPT


def test_migration_scripts_are_loaded_once_per_folder(tmp_path):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    def config(folder):
        (folder / "versions").mkdir(parents=True, exist_ok=True)
        made = Config()
        made.set_main_option("script_location", str(folder))
        return made

    instance_sqlite.use_for(tmp_path)
    first = ScriptDirectory.from_config(config(tmp_path / "scripts"))  # as Dagster asks, a new Config each time
    assert ScriptDirectory.from_config(config(tmp_path / "scripts")) is first
    assert ScriptDirectory.from_config(config(tmp_path / "other")) is not first


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import dagster as dg
    from mdh_assets.instance_sqlite import use_for
    home = Path(sys.argv[1])
    use_for(home)
    instance = dg.DagsterInstance.local_temp(str(home))
    for i in range(30):
        instance.report_runless_asset_event(dg.AssetMaterialization("kept", partition=str(i)))
    print("stored", flush=True)
    time.sleep(120)
""")


def test_a_process_killed_after_its_commits_loses_none_of_them(tmp_path):
    """The WAL is not checkpointed on every close any more: a process killed with SIGKILL
    leaves it behind, and the next process reads every event committed into it."""
    home = tmp_path / "dagster"
    home.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(home)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "DAGSTER_HOME": str(home)})
    try:
        assert child.stdout.readline().strip() == "stored"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("kept"), limit=100).records
        assert sorted(int(r.partition_key) for r in records) == list(range(30))
