"""Real local servers for tests and benchmarks, started by the code that needs them.

`dagster_webserver()`: the Dagster UI's server over a workspace, on a free port.

`postgres()`: a real PostgreSQL server (Debian's ``postgresql`` package: ``initdb`` into a
fresh temporary folder, ``pg_ctl start`` on a free 127.0.0.1 port, one database created);
it yields a `PostgresServer` whose ``url`` is ``postgresql://user:password@127.0.0.1:port/db``
and stops the server and removes its folder on exit, however the body ends.

    from services import postgres            # in tests (pytest puts tests/ on sys.path)
    from tests.services import postgres      # from the repository root (benchmarks)

    with postgres() as pg:
        engine_url = pg.url

``postgres_server`` is the same as a module-scoped pytest fixture (import it into a test
module to use it). PostgreSQL refuses to run as root: when this process is root, the server
runs as the ``postgres`` system user that Debian's package creates (``runuser``), and its
folder is made in /tmp (which that user can reach) and handed to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"  # the system user of Debian's package, used when we are root
# For tests: no fsync (a crash of the test machine loses nothing anyone needs).
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here (``apt-get install postgresql``), or no user to run them as."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    folder: Path  # data folder, socket and log
    bin_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` with psql as the server's user; its output (unaligned, tuples only)."""
        out = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", database or self.database, "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, "PGPASSWORD": self.password}, capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout


def bin_dir() -> Path:
    """The folder of ``initdb``/``pg_ctl``: Debian keeps them under /usr/lib/postgresql/N/bin
    (newest N), off PATH; else wherever PATH finds ``pg_ctl``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
                   if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql)")


def available() -> bool:
    try:
        bin_dir()
    except PostgresUnavailable:
        return False
    return os.geteuid() != 0 or _server_user() is not None


def _server_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres(database: str = "mdh", user: str = "mdh", password: str | None = None, fast: bool = True,
             settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """A running PostgreSQL server with ``database`` owned by ``user`` (password auth over
    TCP on 127.0.0.1 only; the password is random unless given). ``fast`` turns fsync off
    (tests); benchmarks pass ``fast=False`` for the durable defaults. ``settings`` adds
    ``postgresql.conf`` parameters."""
    bins = bin_dir()
    as_root = os.geteuid() == 0
    owner = _server_user() if as_root else None
    if as_root and owner is None:
        raise PostgresUnavailable(f"running as root and no {SERVER_USER!r} user to run PostgreSQL as "
                                  "(Debian's postgresql package creates it)")
    wrap = ["runuser", "-u", SERVER_USER, "--"] if as_root else []
    password = password or secrets.token_urlsafe(16)
    # /tmp, not a pytest tmp_path: the server's user must reach it, and the socket path must
    # stay under 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="mdh-pg-", dir="/tmp"))
    data, pwfile = folder / "data", folder / "pwfile"
    pwfile.write_text(password + "\n")
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    os.chmod(pwfile, 0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env |= {"LC_ALL": "C", "LANG": "C"}

    def run(cmd: list[str], what: str, timeout: float = 120) -> None:
        out = subprocess.run(wrap + cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=folder)
        if out.returncode:
            log = (folder / "postgres.log").read_text()[-2000:] if (folder / "postgres.log").exists() else ""
            raise RuntimeError(f"PostgreSQL {what} failed ({out.returncode}): {out.stderr.strip()[-2000:]}\n{log}")

    server = None
    try:
        run([str(bins / "initdb"), "-D", str(data), "-U", user, "--pwfile", str(pwfile), "-A", "scram-sha-256",
             "-E", "UTF8", "--no-instructions"] + (["--no-sync"] if fast else []), "initdb")
        pwfile.unlink()
        conf = {"listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{folder}'",
                "max_connections": "200", "logging_collector": "off"}
        conf |= {k: v for k, v in FAST.items()} if fast else {}
        conf |= settings or {}
        with open(data / "postgresql.conf", "a") as f:
            f.write("\n# tests/services.py\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        for attempt in range(5):  # a free port can be taken between the probe and the start
            port = free_port()
            try:
                run([str(bins / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l",
                     str(folder / "postgres.log"), "-o", f"-p {port}"], "start")
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        server = PostgresServer("127.0.0.1", port, user, password, database, folder, bins)
        if database != "postgres":
            server.psql(f'CREATE DATABASE "{database}"', database="postgres")
        yield server
    finally:
        if server is not None or (data / "postmaster.pid").exists():
            try:
                run([str(bins / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate", "-w", "-t", "30"], "stop", 60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _fixture():
    import pytest

    @pytest.fixture(scope="module")
    def postgres_server() -> Iterator[PostgresServer]:
        """A PostgreSQL server for the test module (skipped where PostgreSQL is missing,
        unless CI is set: there a missing server is a failure)."""
        if not available() and not os.environ.get("CI"):
            pytest.skip("PostgreSQL is not installed here (apt-get install postgresql; .ci/run does it)")
        with postgres() as server:
            yield server

    return postgres_server


try:
    postgres_server = _fixture()
except ImportError:  # pytest absent (benchmarks run without it)
    postgres_server = None


@contextmanager
def dagster_webserver(workspace: Path, *, cwd: Path | None = None, env: dict | None = None,
                      timeout: float = 180) -> Iterator[str]:
    """`dagster-webserver` over ``workspace`` on a free 127.0.0.1 port (the instance of
    DAGSTER_HOME in ``env``): yields its URL once it answers, stops it on exit."""
    import sys
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p",
                             str(port), "-w", str(workspace)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("dagster-webserver did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)

