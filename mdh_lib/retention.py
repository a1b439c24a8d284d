"""Raw tick retention, a per-venue setting and off by default: the main job is historical
backfill, and a window counted back from today would silently skip every older day.

A venue keeps ``raw_retention_days`` days of raw ticks (its `[[universe.venues]]` entry in
mdh.toml), else `MDH_RAW_RETENTION_DAYS` (default 0: keep everything). The seed's tier 1
("all instruments, 1 month TTL") is ``raw_retention_days = 30`` on each venue (README).
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

from mdh_lib.config import Settings
from mdh_lib.instruments import RAW_DATA_TYPES, key_from_slug
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
class Retention:
    """Days of raw ticks kept per venue (Tardis exchange id); 0 keeps everything."""

    days: dict[str, int]
    default: int = 0

    @classmethod
    def of(cls, settings: Settings) -> "Retention":
        return cls({v.exchange: v.raw_retention_days for v in settings.universe.venues
                    if v.raw_retention_days is not None}, settings.raw_retention_days)

    @property
    def active(self) -> bool:
        """Whether any venue's ticks expire at all."""
        return self.default > 0 or any(self.days.values())

    def days_for(self, exchange: str) -> int:
        return self.days.get(exchange, self.default)

    def cutoff(self, exchange: str, today: dt.date | None = None) -> dt.date | None:
        """The venue's first kept day as of ``today`` (default: today, UTC); None when nothing expires."""
        return retention_cutoff(self.days_for(exchange), today)

    def expired(self, date: dt.date, exchange: str, today: dt.date | None = None) -> bool:
        return is_expired(date, self.cutoff(exchange, today))


@dataclass(frozen=True)
class Removed:
    path: str
    data_type: str
    date: dt.date
    bytes: int


def remove_expired(storage: Storage, retention: Retention, today: dt.date) -> pa.Table:
    """Delete every raw file that ``retention`` expires as of ``today``; the files removed
    (REMOVED_SCHEMA)."""
    removed = []
    for data_type in RAW_DATA_TYPES if retention.active else ():
        for rel in storage.list(dataset_folder(("raw", data_type))):
            date, key = partition_date(rel), key_from_slug(rel.rsplit("/", 1)[1].removesuffix(".parquet"))
            if retention.expired(date, key.exchange, today):
                size = storage.size(rel)
                storage.delete(rel)
                removed.append(Removed(rel, data_type, date, size))
    return pa.Table.from_pylist([asdict(r) for r in removed], schema=REMOVED_SCHEMA)
