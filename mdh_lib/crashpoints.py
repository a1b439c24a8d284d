"""Named points where a test can kill this process with SIGKILL, to prove that a crash at
the worst moment loses nothing (`tests/test_crash_recovery.py`).

``MDH_CRASH_AT=name`` kills the process the first time it reaches ``crashpoint(name)``;
``name@N`` the N-th time. Unset (always, outside tests) a crash point costs one dictionary
look-up. The points: ``fetch.downloaded`` (Tardis files of a chunk on local disk, none
staged), ``storage.before_rename`` (a Parquet file complete under its temporary name),
``warehouse.in_transaction`` (a slice deleted, its new rows not yet committed).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter = Counter()


def crashpoint(name: str) -> None:
    target = os.environ.get("MDH_CRASH_AT")
    if not target:
        return
    point, _, nth = target.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
