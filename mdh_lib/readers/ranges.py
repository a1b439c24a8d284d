"""Time arguments of the readers: UTC datetimes, half-open ranges and the days they touch.

A naive datetime is taken as UTC, a ``date`` (or ``YYYY-MM-DD``) as its midnight UTC, so
``start_date=2024-01-02, end_date=2024-01-03`` is exactly one day. Every range is [start, end):
an empty or reversed one is a ValueError rather than a silently empty frame.
"""

from __future__ import annotations

import datetime as dt

from mdh_lib.instruments import InstrumentKey
from mdh_lib.layout import dataset_path

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = dt.timedelta(microseconds=1)

TimeLike = dt.datetime | dt.date | str


class MissingPartitionError(FileNotFoundError):
    """A partition inside the requested range has not been written (``allow_missing=True``
    returns what exists instead). Names the dataset, instrument, dates and paths."""

    def __init__(self, dataset: tuple[str, ...], dates: list[dt.date], key: InstrumentKey | None = None):
        self.dataset, self.dates = tuple(dataset), list(dates)
        self.instrument_key = None if key is None else str(key)
        self.paths = [dataset_path(self.dataset, d, key) for d in self.dates]
        what = "/".join(self.dataset) + ("" if key is None else f" of {key}")
        days = ", ".join(d.isoformat() for d in self.dates)
        super().__init__(f"{what} is missing for {days} ({self.paths[0]}{', ...' if len(self.paths) > 1 else ''}); "
                         "pass allow_missing=True to read what exists")


def as_utc(value: TimeLike) -> dt.datetime:
    """A timezone-aware UTC datetime (naive = UTC, a date = its midnight UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), UTC)
    raise TypeError(f"not a date or datetime: {value!r}")


def as_date(value: TimeLike) -> dt.date:
    """The UTC day of a date or datetime."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    return as_utc(value).date()


def micros(value: dt.datetime) -> int:
    return (value - EPOCH) // ONE_US


def from_micros(value: int) -> dt.datetime:
    return EPOCH + value * ONE_US


def utc_range(start: TimeLike, end: TimeLike) -> tuple[dt.datetime, dt.datetime]:
    lo, hi = as_utc(start), as_utc(end)
    if hi <= lo:
        raise ValueError(f"empty range [{lo.isoformat()}, {hi.isoformat()}): the end is exclusive, "
                         "so one day is start=D, end=D+1")
    return lo, hi


def days(lo: dt.datetime, hi: dt.datetime) -> list[dt.date]:
    """The UTC days that [lo, hi) touches."""
    first, last = lo.date(), (hi - ONE_US).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def instrument(instrument_id: InstrumentKey | str) -> InstrumentKey:
    """The parsed key; a malformed one is a ValueError (`InstrumentError`) naming the format."""
    return instrument_id if isinstance(instrument_id, InstrumentKey) else InstrumentKey.parse(instrument_id)
