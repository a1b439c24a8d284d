"""The `mdh` console script through its warm fork server (`mdh_assets.forkserver`): a command
run by a child of the server behaves as one run in-process (output, exit status, its own
environment and folder), signals reach it, and a client killed with ``kill -9`` takes its
command with it. Each test has its own socket folder (``XDG_RUNTIME_DIR``), so its server
is its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

MDH = str(Path(sys.executable).with_name("mdh"))
DAY = ["--start-date", "2024-01-01", "--end-date", "2024-01-01"]


@pytest.fixture()
def run_dir():
    """A socket folder of the test's own (short: a socket's path holds 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="mdhfs-", dir="/tmp"))
    yield folder
    for pid in _server_pids(folder):
        os.kill(pid, signal.SIGTERM)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def warm(mdh_env, run_dir):
    """The environment of `mdh_env` with a private socket folder, and its server started and
    answering (the first command runs in-process and starts it)."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run_dir), "MDH_FORKSERVER": "1"}
    first = subprocess.run([MDH, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0
    deadline = time.monotonic() + 60
    while not _server_pids(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _server_pids(run_dir), f"no fork server started: {[p.read_text() for p in run_dir.rglob('*.failed')]}"
    return env


def _servers(run_dir: Path) -> list[Path]:
    return sorted((run_dir / f"mdh-{os.getuid()}").glob("forkserver-*.sock"))


def _server_pids(run_dir: Path) -> list[int]:
    """The servers' pids, from their sockets' peer credentials."""
    pids = []
    for path in _servers(run_dir):
        with socket.socket(socket.AF_UNIX) as s:
            if s.connect_ex(str(path)) == 0:
                pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
                pids.append(pid)
    return pids


def test_a_served_command_is_an_in_process_command(warm, tmp_path, mdh_env):
    """Same stdout, stderr and exit status as in-process, for a good and a bad command; the
    command writes where its own environment says (not the server's)."""
    for args in (["instruments", *DAY, "--venues", "binance"], ["bogus"], ["--help"], ["download", "--help"],
                 ["download", "--start-date", "2009-01-03", "--end-date", "2009-01-03"]):
        served = subprocess.run([MDH, *args], env=warm, capture_output=True, text=True, timeout=300)
        alone = subprocess.run([MDH, *args], env={**warm, "MDH_FORKSERVER": "0"}, capture_output=True, text=True,
                               timeout=300)
        assert (served.returncode, served.stderr, served.stdout) == (alone.returncode, alone.stderr, alone.stdout), args
    assert (Path(mdh_env["MDH_DATA_ROOT"]) / "instruments" / "date=2024-01-01").exists()
    other = tmp_path / "elsewhere"
    served = subprocess.run([MDH, "instruments", *DAY, "--venues", "binance"], timeout=300, capture_output=True,
                            env={**warm, "MDH_DATA_ROOT": str(other / "data"), "DAGSTER_HOME": str(other / "dagster")})
    assert served.returncode == 0 and (other / "data" / "instruments" / "date=2024-01-01").exists()


def test_a_command_killed_by_a_signal_kills_its_client_the_same_way(warm, run_dir):
    """A crash point (``MDH_CRASH_AT``) kills the command with SIGKILL: the client dies of
    SIGKILL too, as the process itself would have."""
    run = subprocess.run([MDH, "download", *DAY, "--venues", "binance"], env={**warm, "MDH_CRASH_AT": "fetch.downloaded"},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL
    assert _server_pids(run_dir)  # the server lives on


def _sample_server(env: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([MDH, "sample-server", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True)
    endpoint = next(word for word in proc.stdout.readline().split() if word.startswith("http://"))
    return proc, int(endpoint.rsplit(":", 1)[1].split("/")[0])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_reaches_the_command_and_kill_9_of_the_client_takes_it_along(warm):
    proc, port = _sample_server(warm)
    assert _listening(port)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0  # stopped as by Ctrl-C in a terminal (the command's own exit)
    assert not _listening(port)

    proc, port = _sample_server(warm)
    assert _listening(port)
    proc.kill()  # kill -9 of the client: the command goes with it
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(port)


def test_each_interpreter_and_source_tree_has_its_own_server(tmp_path, monkeypatch):
    """The server's key changes with the import path and with any edit of the project's
    source, so a command never runs code older than the files."""
    from mdh_assets import forkserver

    for package in forkserver._PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text("x = 1\n")
    key = forkserver._key(tmp_path)
    assert forkserver._key(tmp_path) == key
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert forkserver._key(tmp_path) != key
    monkeypatch.undo()
    (tmp_path / "mdh_lib" / "module.py").write_text("x = 22\n")
    assert forkserver._key(tmp_path) != key


def test_a_server_that_cannot_serve_says_why_and_is_not_started_again(run_dir, monkeypatch):
    """This test's process has threads (polars'): a server here refuses to fork, writes why,
    and the next commands run in-process without starting another."""
    from mdh_assets import forkserver

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
    path = forkserver._socket_path(forkserver._key())
    forkserver.serve(path)
    assert "threads" in forkserver._failed_marker(path).read_text() and not path.exists()
    run = subprocess.run([MDH, "--help"], env={**os.environ, "MDH_FORKSERVER": "1"}, capture_output=True, timeout=120)
    assert run.returncode == 0
    time.sleep(3)
    assert not _server_pids(run_dir) and not path.exists()


FORKED_WORK = """
import gc, os, signal, sys, time
from mdh_assets import forkserver
forkserver._warm()
gc.collect(); gc.freeze()
assert not forkserver._busy_threads(), forkserver._busy_threads()
import numpy as np, polars as pl, pyarrow.compute as pc, pyarrow.parquet as pq

def work(folder):
    df = pl.DataFrame({"a": np.random.randint(0, 1000, 1_000_000), "b": np.random.rand(1_000_000)})
    g = df.group_by("a").agg(pl.col("b").median().alias("m"), pl.col("b").sum().alias("s")).sort("a")
    path = os.path.join(folder, f"{os.getpid()}.parquet")
    g.write_parquet(path)
    table = pq.ParquetFile(path).read()
    assert table.num_rows == g.height == df.join(g, on="a").select("a").n_unique()
    assert pc.sum(table["s"]).as_py() > 0 and table.sort_by("m").num_rows == g.height

outcomes = []
for _ in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        try:
            work(sys.argv[1])
            os._exit(0)
        except BaseException as exc:
            print(repr(exc), file=sys.stderr, flush=True)
            os._exit(1)
    deadline = time.monotonic() + 60
    while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    if not done[0]:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    outcomes.append("ok" if done[0] and done[1] == 0 else "hung" if not done[0] else "failed")
print(" ".join(outcomes))
"""


def test_children_of_a_warm_server_use_polars_and_pyarrow_as_any_process(tmp_path):
    """The server has polars, pyarrow and NumPy loaded (and polars' spill-file cleaner thread
    running): its forks group, join, sort and round-trip Parquet with them, none hangs."""
    from mdh_assets import forkserver

    env = {k: v for k, v in os.environ.items() if k not in forkserver._QUIET_THREADS}  # the server sets its own
    run = subprocess.run([sys.executable, "-c", FORKED_WORK, str(tmp_path), "12"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["ok"] * 12, run.stderr[-2000:]
