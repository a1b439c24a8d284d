"""The storage layout under MDH_DATA_ROOT (SPEC section 5). Nobody else builds paths by hand.

Hive-style folders (``date=YYYY-MM-DD``), one Parquet file per partition::

    instruments/date=YYYY-MM-DD/instruments.parquet
    raw/{data_type}/date=YYYY-MM-DD/{instrument_slug}.parquet
    candles/{timeframe}/date=YYYY-MM-DD/{instrument_slug}.parquet
    book/{timeframe}/date=YYYY-MM-DD/{instrument_slug}.parquet
    features/mft/{timeframe}/date=YYYY-MM-DD/{instrument_slug}.parquet
    features/options/date=YYYY-MM-DD/{underlying_slug}.parquet
    reports/missing/date=YYYY-MM-DD/report.parquet
    reports/retention/date=YYYY-MM-DD/removed.parquet

Paths are relative to the root; `mdh_lib.storage.Storage` joins them to a local folder or gs://.
The instrument slug is defined in `mdh_lib.instruments` (``:`` written ``_``).
"""

from __future__ import annotations

import datetime as dt

from mdh_lib.instruments import InstrumentKey


# Datasets of one file per day (no instrument dimension) and the name of that file.
DAILY_FILE_NAMES = {("instruments",): "instruments", ("reports", "missing"): "report",
                    ("reports", "retention"): "removed"}
DAY_FOLDER = "date="
# Under a local root, where writes in progress live until their atomic rename
# (`mdh_lib.storage`); hidden, and holding no ``*.parquet`` name, so no glob picks it up.
SCRATCH_FOLDER = ".mdh-tmp"


def dataset_folder(dataset: tuple[str, ...] | list[str]) -> str:
    """The folder holding every partition of ``dataset``."""
    return "/".join(dataset)


def partition_date(rel: str) -> dt.date:
    """The day of a partition file, from its ``date=YYYY-MM-DD`` folder."""
    for part in rel.split("/"):
        if part.startswith(DAY_FOLDER):
            return dt.date.fromisoformat(part[len(DAY_FOLDER):])
    raise ValueError(f"{rel} is not a daily partition file")


def dataset_path(dataset: tuple[str, ...] | list[str], date: dt.date | str, key: InstrumentKey | str | None = None) -> str:
    """The file of one partition of ``dataset`` (its folder parts, which are also the Dagster
    asset key): ``{dataset}/date=YYYY-MM-DD/{instrument_slug or daily file name}.parquet``."""
    dataset = tuple(dataset)
    day = f"{DAY_FOLDER}{date if isinstance(date, str) else date.isoformat()}"
    if key is None:
        if dataset not in DAILY_FILE_NAMES:
            raise ValueError(f"dataset {'/'.join(dataset)} is partitioned by instrument: a key is needed")
        name = DAILY_FILE_NAMES[dataset]
    else:
        name = (key if isinstance(key, InstrumentKey) else InstrumentKey.parse(key)).slug
    return f"{dataset_folder(dataset)}/{day}/{name}.parquet"


MANIFESTS = "_manifests"  # a leading underscore: Hive-style readers skip the folder


def manifest_path(dataset: tuple[str, ...] | list[str], date: dt.date | str, venue: str) -> str:
    """The manifest of one venue-day materialization of ``dataset`` (`mdh_lib.manifest`):
    ``_manifests/{dataset}/date=YYYY-MM-DD/{venue}.parquet``."""
    day = f"{DAY_FOLDER}{date if isinstance(date, str) else date.isoformat()}"
    return f"{MANIFESTS}/{dataset_folder(dataset)}/{day}/{venue}.parquet"


def raw_path(data_type: str, date: dt.date | str, key: InstrumentKey | str) -> str:
    return dataset_path(("raw", data_type), date, key)


def candles_path(timeframe: str, date: dt.date | str, key: InstrumentKey | str) -> str:
    return dataset_path(("candles", timeframe), date, key)


def missing_report_path(date: dt.date | str) -> str:
    return dataset_path(("reports", "missing"), date)
