"""Start the `bqemulator` BigQuery emulator on 127.0.0.1 for tests, without DuckDB's spatial
extension.

bqemulator's start-up runs ``INSTALL spatial; LOAD spatial`` (for GEOGRAPHY only), which needs
a download from extensions.duckdb.org that this machine cannot make. The emulator therefore
runs in a child process whose only change is a no-op ``DuckDBEngine._load_spatial``; the
best-effort ``avro`` extension is switched off through its own setting. A child process also
keeps the emulator's DuckDB and event loop away from the tests' own, and the installed
package is imported there by name (this file, ``tests/bqemulator.py``, shadows it on the
tests' ``sys.path``; ``python -P`` keeps the child's working directory off its path).

    with BigQueryEmulator(project="mdh-test", dataset="market_data") as emu:
        emu.host       # "http://127.0.0.1:PORT", the value for BIGQUERY_EMULATOR_HOST
        emu.client()   # a google.cloud.bigquery.Client talking to it
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

_CHILD = """
import sys
from bqemulator.config import Settings
from bqemulator.server import EmulatorServer
from bqemulator.storage.engine import DuckDBEngine

DuckDBEngine._load_spatial = lambda self: None  # GEOGRAPHY support: needs a download
port, project = int(sys.argv[1]), sys.argv[2]
EmulatorServer(Settings(
    rest_host="127.0.0.1", rest_port=port, grpc_host="127.0.0.1", grpc_port=0,
    default_project_id=project, enable_format_extensions=False, log_level="warning",
)).run_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BigQueryEmulator:
    """A bqemulator child process serving REST on ``host``, with ``project.dataset`` created."""

    def __init__(self, project: str = "mdh-test", dataset: str | None = "market_data", *, timeout: float = 60.0):
        self.project, self.dataset, self.timeout = project, dataset, timeout
        self.port = _free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self) -> "BigQueryEmulator":
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the child
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _CHILD, str(self.port), self.project],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        if self.dataset:
            self.client().create_dataset(f"{self.project}.{self.dataset}", exists_ok=True)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"bqemulator exited at start-up: {self._log.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.host}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"bqemulator did not answer on {self.host} within {self.timeout} s")

    def client(self):
        """The real google-cloud-bigquery client, pointed at this emulator."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.host))

    def stop(self) -> None:
        """SIGTERM (the emulator shuts its servers down cleanly), then kill if it hangs."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        self._proc = None

    def __enter__(self) -> "BigQueryEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
