"""The `mdh` console script, and a warm process that spares each command Python's start-up.

Every `mdh` command used to spend ~2 s before its work: importing Dagster, SQLAlchemy,
polars, pyarrow and the Tardis client, and opening Dagster's storage. The first command
(run in-process as before) starts a fork server in the background (`serve`): a process that
has imported those libraries and nothing of this project, listening on a Unix socket only
this user can open. Each later command sends it the command line, environment, working
folder and its stdin/stdout/stderr (`client`); the server forks, and the child runs the
command exactly as `mdh_assets.cli.run` would, importing this project's modules (which read
the configuration and environment) itself. So a command sees its own environment and
configuration, and its output and exit status are those of an in-process run:

- the client waits for the child and exits with its status; a child killed by a signal
  kills the client with the same signal;
- Ctrl-C and SIGTERM sent to the client go to the child's process group; a client that dies
  (even ``kill -9``) has the child's process group killed at once, as if the work had run
  in the client's own process;
- the server is keyed by this interpreter, the installed packages and the project's source
  files: after an edit or an upgrade, the next command starts a new one; a server exits
  after `IDLE_SECONDS` without a command.

``MDH_FORKSERVER=0`` runs every command in-process and starts no server. The server has
imported NumPy, pandas, pyarrow, polars and this project's library (`mdh_lib`, which reads
no configuration on import), and forks only while no other thread of its could be holding
a lock that a child would inherit locked: it loads NumPy with a one-thread OpenBLAS and
pyarrow and polars without jemalloc's background threads (`_QUIET_THREADS`, set in its own
environment before the imports), and the threads left (`_PARKED_THREADS`) hold none.
Children of such a process group, join, sort, and write and read Parquet with polars and
pyarrow as any process does (`tests/test_forkserver.py`; 300 forks in a row all finished).
The Dagster layer (`mdh_assets`) builds its definitions from the configuration, so each
command imports it itself. A library setting read on import rather than on use keeps the
value of the command that started the server (polars and pyarrow read theirs, such as
POLARS_MAX_THREADS, when first used).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IDLE_SECONDS = 900
ENV_SWITCH = "MDH_FORKSERVER"
_HEADER = struct.Struct("!I")
_PACKAGES = ("mdh_lib", "mdh_assets")
ROOT = Path(__file__).resolve().parent.parent


def _key(root: Path = ROOT) -> str:
    """This interpreter, its import path, its installed packages (the site-packages folder
    changes when one is installed) and every source file of the project, as a short hash."""
    h = hashlib.sha256(f"{sys.executable}\0{sys.version}\0{os.getuid()}\0{os.environ.get('PYTHONPATH', '')}".encode())
    for folder in {Path(p) for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)}:
        h.update(f"{folder}\0{folder.stat().st_mtime_ns}".encode())
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            st = path.stat()
            h.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}".encode())
    return h.hexdigest()[:20]


# A Unix socket's path holds at most 107 bytes; the server binds a longer temporary name first.
_MAX_SOCKET_PATH = 90


def _socket_path(key: str) -> Path:
    """The server's socket in a folder private to this user: ``$XDG_RUNTIME_DIR/mdh-UID``, or
    the system's temporary folder when that path would be too long for a socket."""
    name = f"forkserver-{key}.sock"
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    if len(str(base / f"mdh-{os.getuid()}" / name)) > _MAX_SOCKET_PATH:
        base = Path(tempfile.gettempdir())
    folder = base / f"mdh-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise PermissionError(f"{folder} is not private to this user")
    return folder / name


def _failed_marker(path: Path) -> Path:
    """Written by a server that could not serve (its reason inside): no command starts
    another for the same key."""
    return path.with_name(path.name + ".failed")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


# ---------------------------------------------------------------- the client (the console script)


def client(argv: list[str], path: Path) -> int | None:
    """Run ``argv`` in a child of the server at ``path``: its exit status, or None when no
    server answers (the caller then runs the command itself)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    try:
        socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        (pid,) = _HEADER.unpack(_recv_exact(conn, _HEADER.size))
    except OSError:
        conn.close()
        return None  # a server going away: run in-process

    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except OSError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        status = struct.unpack("!i", _recv_exact(conn, 4))[0]
    except OSError:
        print("mdh: the mdh fork server went away while the command ran", file=sys.stderr)
        return 1
    if status < 0:  # killed by a signal: die the same way
        try:
            signal.signal(-status, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP keep their default action anyway
        os.kill(os.getpid(), -status)
    return status


def _start_server(path: Path) -> None:
    """Start a server in the background, detached from this terminal and its signals."""
    subprocess.Popen([sys.executable, "-m", "mdh_assets.forkserver", "--serve", str(path)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, cwd="/")


def main() -> None:
    """The ``mdh`` console script: through a warm server when one answers, else in this
    process (starting a server for the next command)."""
    argv = sys.argv[1:]
    if os.environ.get(ENV_SWITCH, "1") != "0":
        try:
            path = _socket_path(_key())
        except OSError:
            path = None
        if path is not None:
            status = client(argv, path)
            if status is not None:
                sys.exit(status)
            if not _failed_marker(path).exists():
                _start_server(path)
    from mdh_assets.cli import run

    run()


# ---------------------------------------------------------------- the server


# Settings read when a library loads that keep it from starting a thread: OpenBLAS's worker
# threads (NumPy uses no BLAS routine in this project) and the background purging threads of
# pyarrow's and polars' jemalloc (memory is then purged during allocations instead). A value
# the user set wins; OpenBLAS threads then keep the server from serving (commands run
# in-process).
_QUIET_THREADS = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false",
                  "_RJEM_MALLOC_CONF": "background_thread:false"}
# Threads a fork may leave behind: polars' spill-file cleaner, started on import, holds no
# lock while the server waits (it blocks on its channel, and serves only the streaming
# engine's spilling); jemalloc takes every lock of its own before a fork and restarts its
# background threads in the child (its pthread_atfork handlers), should one start despite
# `_QUIET_THREADS` (seen under load). Names as the kernel keeps them (15 characters).
_PARKED_THREADS = frozenset({"polars-ooc-clea", "jemalloc_bg_thd"})


def _warm() -> None:
    """Import what every command imports, and open (then close) a throw-away SQLite Dagster
    instance so its storage modules (SQLAlchemy, Alembic) are loaded too. Nothing here reads
    this project's configuration."""
    for name, value in _QUIET_THREADS.items():
        os.environ.setdefault(name, value)
    import numpy  # noqa: F401
    import pandas  # noqa: F401  (pyarrow loads it on its first conversion of Python values)
    import polars  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import mdh_lib.ingest  # noqa: F401
    import mdh_lib.manifest  # noqa: F401
    import mdh_lib.processing  # noqa: F401
    import mdh_lib.retention  # noqa: F401
    import mdh_lib.warehouse.loads  # noqa: F401

    import aiohttp  # noqa: F401
    import dagster as dg
    import rich.console  # noqa: F401
    import rich.table  # noqa: F401
    import tardis_dev  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="mdh-forkserver-") as home:
        with dg.DagsterInstance.local_temp(home):
            pass


def _busy_threads() -> list[str]:
    """The names of this process's threads besides the main one and `_PARKED_THREADS`."""
    if not os.path.isdir("/proc/self/task"):
        return []
    names = []
    for task in os.listdir("/proc/self/task"):
        if int(task) != os.getpid():
            with open(f"/proc/self/task/{task}/comm") as fh:
                names.append(fh.read().strip())
    return [n for n in names if n not in _PARKED_THREADS]


def _child(conn: socket.socket, listener: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: become the command (its descriptors, folder, environment)."""
    listener.close()
    conn.close()
    os.setpgid(0, 0)  # its own process group: the client's signals reach its subprocesses too
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    sys.argv = ["mdh", *request["argv"]]
    # New streams over the client's descriptors (line-buffered on a terminal, as at start-up).
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    from mdh_assets.cli import run

    run()  # leaves with os._exit


def serve(path: Path) -> None:
    """Accept commands until `IDLE_SECONDS` pass without one; fork a child per command and
    report its exit status (negative: the signal that killed it) to its client. A server
    that cannot serve says why in `_failed_marker`, so commands stop starting it."""
    try:
        _warm()
        # What the imports made stays out of the children's garbage collections: a collection
        # walks every tracked object, so each child would copy the server's whole heap page by
        # page (Python's documented use of `gc.freeze` before forking).
        gc.collect()
        gc.freeze()
        busy = _busy_threads()
        if busy:
            raise RuntimeError(f"threads {', '.join(busy)} after the imports: forking could copy a held lock")
        listener, mine = _listen(path)
    except Exception as exc:
        _failed_marker(path).write_text(f"{type(exc).__name__}: {exc}\n")
        return
    if listener is not None:
        _loop(path, listener, mine)


def _listen(path: Path) -> tuple[socket.socket | None, int]:
    """A listening socket under ``path`` and the inode of that name (None when another live
    server holds it)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    listener.bind(str(tmp))
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)  # fails when another server has just taken the name
    except FileExistsError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            probe.close()
            os.unlink(tmp)
            listener.close()
            return None, 0  # that one serves
        except OSError:
            os.replace(tmp, path)  # a dead server's socket
    else:
        os.unlink(tmp)
    listener.listen(64)
    return listener, os.stat(path).st_ino  # the socket file's inode, while the name is ours


class _Child:
    """A running command: its client's connection, and a descriptor that becomes readable
    when it exits (a pidfd), so its status reaches the client at once, not at the next tick."""

    def __init__(self, conn: socket.socket, pid: int):
        self.conn = conn
        try:
            self.exited = os.pidfd_open(pid)
        except (AttributeError, OSError):  # before Linux 5.3: the loop polls instead
            self.exited = None

    def close(self) -> None:
        self.conn.close()
        if self.exited is not None:
            os.close(self.exited)


def _loop(path: Path, listener: socket.socket, mine: int) -> None:
    children: dict[int, _Child] = {}
    last = time.monotonic()
    try:
        while children or time.monotonic() - last < IDLE_SECONDS:
            exits = [c.exited for c in children.values() if c.exited is not None]
            tick = 1.0 if len(exits) == len(children) else 0.02
            readable, _, _ = select.select([listener, *(c.conn for c in children.values()), *exits], [], [], tick)
            for sock in readable:
                if sock is listener:
                    last = time.monotonic()
                    _accept(listener, children)
                elif isinstance(sock, socket.socket):  # the client closed its end before its command finished: it died
                    pid = next(p for p, c in children.items() if c.conn is sock)
                    if not sock.recv(1, socket.MSG_PEEK):
                        _kill_group(pid)
            _reap(children)
            last = time.monotonic() if children else last
            if not _owns(path, mine):
                break  # another server took the name (or it was removed)
    finally:
        for pid in list(children):
            _kill_group(pid)
        if _owns(path, mine):
            os.unlink(path)


def _owns(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _accept(listener: socket.socket, children: dict[int, _Child]) -> None:
    conn, _ = listener.accept()
    try:
        conn.settimeout(10)
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        if len(header) != _HEADER.size or len(fds) != 3:
            raise ConnectionError("bad request")
        request = json.loads(_recv_exact(conn, _HEADER.unpack(header)[0]))
        conn.settimeout(None)
    except (OSError, ValueError):
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        try:
            _child(conn, listener, fds, request)
        finally:
            os._exit(1)  # never back into the server's loop
    try:
        os.setpgid(pid, pid)  # also here: a signal forwarded before the child sets it still arrives
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(_HEADER.pack(pid))
    except OSError:
        _kill_group(pid)
    children[pid] = _Child(conn, pid)


def _reap(children: dict[int, _Child]) -> None:
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 1 << 8
        if not done:
            continue
        child = children.pop(pid)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        try:
            child.conn.sendall(struct.pack("!i", code))
        except OSError:
            pass
        child.close()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
    else:
        main()
