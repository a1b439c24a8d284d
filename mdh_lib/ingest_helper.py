"""A helper process of `mdh_lib.ingest.fetch_raw_days`: it downloads and stages the chunks
it is sent, so a venue's thousands of small files use every core (staging a small file is
mostly Python, which one process runs on one core whatever its threads).

Started as ``python -m mdh_lib.ingest_helper`` (never by re-importing the caller's main
module, as multiprocessing's spawn would: a user's script without a main guard is safe). It
reads length-prefixed pickled requests on stdin and answers each on stdout; its staged files
stay on local disk for the caller to commit. It ends when its stdin closes, so it never
outlives its caller by more than the chunk at hand.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from typing import Any

_LENGTH = struct.Struct("!Q")


def _send(stream, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream) -> Any:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError
    size = _LENGTH.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - our own process's pipe


class Helper:
    """One helper process: `submit` a chunk, then `result` it (in that order, one at a time)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "mdh_lib.ingest_helper"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=os.environ.copy())
        self.pending = False

    def submit(self, *args) -> None:
        _send(self.proc.stdin, args)
        self.pending = True

    def result(self) -> list:
        self.pending = False
        try:
            ok, value = _receive(self.proc.stdout)
        except EOFError:
            code = self.proc.wait()
            raise RuntimeError(f"an ingest helper process died (exit status {code})") from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Let the helper end; one whose answer will not be read (the caller stopped early)
        is killed, and its staged files are left to `mdh_lib.processes.clean_scratch`."""
        if self.pending:
            self.proc.kill()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


def main() -> None:
    from mdh_lib.ingest import _fetch_chunk

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to the caller's stderr, not into the answers
    while True:
        try:
            args = _receive(stdin)
        except EOFError:
            return
        try:
            _send(stdout, (True, list(_fetch_chunk(*args))))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller
            _send(stdout, (False, exc))


if __name__ == "__main__":
    main()
