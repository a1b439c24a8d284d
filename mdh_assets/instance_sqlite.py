"""How an `mdh` process uses the SQLite files of its Dagster instance (the embedded default).

Dagster's SQLite storages open a connection for each statement and close it after. In WAL
mode with SQLite's default `synchronous=FULL`, each commit syncs the WAL to disk, and each
close, being the last connection to the file, checkpoints the WAL into the database, syncs
again and deletes the WAL: up to five fsyncs and 22-31 ms for one asset event here, most of
what a small command costs. So, for the files under the instance folders registered here
(`use_for`):

- Dagster's connections get `synchronous=NORMAL`, the setting SQLite documents for WAL mode:
  a commit survives a crash of the process (`kill -9` included) and the database never
  corrupts; a crash of the operating system or a power loss may roll back the last
  transactions, which a re-run redoes (partition writes are idempotent).
- The process keeps one idle connection open to each of the most recent `KEPT` files, so a
  closing connection is not the last one: the WAL is checkpointed by SQLite's automatic
  checkpoint (every 1,000 pages), not on every close. These connections read nothing but
  the journal mode when they open; they close with the process, which leaves a WAL that
  the next connection to the file uses as usual.
- Alembic's view of Dagster's migration scripts is built once per process: Dagster checks
  each SQLite file's schema revision when it first opens the file in a process (the index
  file, then every new run's own file), and Alembic loads all ~90 scripts for each check
  (~25-50 ms). The scripts do not change while a command runs; one `ScriptDirectory` per
  scripts folder serves every check: `use_for` replaces `ScriptDirectory.from_config`, in
  this process only, with a cached one (the one patch here, of Alembic's public API).

Public SQLAlchemy, `sqlite3` and Alembic APIs only. Long-lived processes that mdh does not
start (`dagster dev`, the daemon) keep Dagster's own behaviour.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine

KEPT = 8  # the instance's three index files and the current runs' files

_lock = threading.Lock()  # the homes and the kept connections
_scripts_lock = threading.Lock()
_homes: tuple[str, ...] = ()  # replaced whole, never changed in place: read without the lock
_kept: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_scripts: dict[str, ScriptDirectory] = {}


def use_for(home: Path) -> None:
    """Apply this module's settings to the SQLite files under ``home`` (a DAGSTER_HOME)."""
    global _homes
    with _lock:
        if not _homes:
            event.listen(Engine, "connect", _on_connect)
            ScriptDirectory.from_config = classmethod(_scripts_of(ScriptDirectory.from_config.__func__))
        folder = str(home.resolve()) + "/"
        if folder not in _homes:
            _homes = (*_homes, folder)


def _scripts_of(from_config):
    def cached(cls, config) -> ScriptDirectory:
        location = config.get_alembic_option("script_location")
        with _scripts_lock:
            if location not in _scripts:
                _scripts[location] = from_config(cls, config)
            return _scripts[location]
    return cached


def _on_connect(connection, _record) -> None:
    if not isinstance(connection, sqlite3.Connection):
        return
    path = connection.execute("PRAGMA database_list").fetchone()[2]
    if not path or not any(path.startswith(home) for home in _homes):
        return
    connection.execute("PRAGMA synchronous=NORMAL")
    with _lock:
        if path in _kept:
            _kept.move_to_end(path)
            return
        keeper = sqlite3.connect(path, check_same_thread=False)
        # A file Dagster is creating is not in WAL mode yet: kept from a later connection on.
        if keeper.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            keeper.close()
            return
        _kept[path] = keeper
        while len(_kept) > KEPT:
            _kept.popitem(last=False)[1].close()
