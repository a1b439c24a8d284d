"""Who owns a run or a temporary file, and whether that process still lives.

A process is named by host, pid and a start token (the boot id and the process's start time
in clock ticks from ``/proc``), so a pid reused after a crash or a reboot is never taken for
the dead owner. Only a process on this host can be judged; elsewhere `alive` says None.

Crash recovery builds on it: a Dagster run started by `mdh` carries its owner's tags
(`mdh_assets.recovery`), and scratch files carry the owner in their name (`scratch_dir`),
so the next command can tell what a killed process (``kill -9``, the OOM killer, a reboot)
left behind from what a live one is still using.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SCRATCH_PREFIX = "mdh-"
_SCRATCH = re.compile(rf"^{SCRATCH_PREFIX}[a-z]+-(\d+)-([0-9a-f]+)-")


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return "0"


def _started(pid: int) -> str | None:
    """The start token of a running process, None when there is none with that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished
        return None
    return f"{_boot_id()}{int(fields[19]):x}"


class SlotWaitTimeout(RuntimeError):
    """Another process kept what this one waits for (a pool slot, partitions it is
    writing) longer than MDH_SLOT_WAIT."""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(), _started(os.getpid()) or "0")

    def alive(self) -> bool | None:
        """True or False for a process of this host; None (unknown) for another host."""
        if self.host != socket.gethostname():
            return None
        return _started(self.pid) == self.start

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def scratch_dir(kind: str, base: str | None = None) -> str:
    """A fresh temporary folder named after this process (``mdh-{kind}-{pid}-{start}-…``)
    in ``base`` (the system's temporary folder by default), so `clean_scratch` can remove
    it once the process is gone."""
    me = Owner.current()
    if base:
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{kind}-{me.pid}-{me.start}-", dir=base)


def clean_scratch(base: str | None = None) -> int:
    """Remove the scratch folders in ``base`` whose process has died; returns how many."""
    folder = Path(base or tempfile.gettempdir())
    if not folder.is_dir():
        return 0
    host, removed = socket.gethostname(), 0
    for entry in folder.iterdir():
        match = _SCRATCH.match(entry.name)
        if match and Owner(host, int(match[1]), match[2]).alive() is False:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
