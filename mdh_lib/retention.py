"""Raw tick retention: the tier-1 universe (every instrument of the configured venues) keeps
`MDH_RAW_RETENTION_DAYS` days of raw ticks (default 30; 0 keeps everything).

Only raw ticks expire: candles, book and MFT features, the reports and the warehouse tables
are small and stay. The window counts back from a day's end: as of 2026-11-27 (UTC) with 30
days, 2026-10-28 .. 2026-11-26 are kept and earlier days are expired. Expired days are
neither reported missing nor downloaded (`mdh download --force` still fetches them); the
daily retention asset deletes their files and records each one it removed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import pyarrow as pa

from mdh_lib.instruments import RAW_DATA_TYPES
from mdh_lib.layout import dataset_folder, partition_date
from mdh_lib.storage import Storage

REMOVED_SCHEMA = pa.schema([("path", pa.string()), ("data_type", pa.string()), ("date", pa.date32()),
                            ("bytes", pa.int64())])


def retention_cutoff(days: int, today: dt.date | None = None) -> dt.date | None:
    """The first kept day as of ``today`` (default: today, UTC); None when nothing expires."""
    if days <= 0:
        return None
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return today - dt.timedelta(days=days)


def is_expired(date: dt.date, cutoff: dt.date | None) -> bool:
    return cutoff is not None and date < cutoff


@dataclass(frozen=True)
class Removed:
    path: str
    data_type: str
    date: dt.date
    bytes: int


def remove_expired(storage: Storage, cutoff: dt.date) -> pa.Table:
    """Delete every raw file of a day before ``cutoff``; the files removed (REMOVED_SCHEMA)."""
    removed = []
    for data_type in RAW_DATA_TYPES:
        for rel in storage.list(dataset_folder(("raw", data_type))):
            date = partition_date(rel)
            if is_expired(date, cutoff):
                size = storage.size(rel)
                storage.delete(rel)
                removed.append(Removed(rel, data_type, date, size))
    return pa.Table.from_pylist([asdict(r) for r in removed], schema=REMOVED_SCHEMA)
