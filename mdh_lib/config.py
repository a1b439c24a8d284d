"""Settings and the configured universe, read once from the environment and `mdh.toml`.

Precedence: command-line flags > environment variables > the config file > defaults.
The config file is `$MDH_CONFIG` if set, else `./mdh.toml` when it exists. Its
`[settings]` table takes the same names as the environment variables (`MDH_DATA_ROOT = ...`)
and its `[universe]` table describes what the pipeline covers (see `Universe`).
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_DATA_ROOT = "./.mdh/data"
DEFAULT_WAREHOUSE = "duckdb:///./.mdh/warehouse.duckdb"
DEFAULT_DAGSTER_HOME = "./.mdh/dagster"
DEFAULT_DATASETS_ENDPOINT = "https://datasets.tardis.dev/v1"
DEFAULT_API_ENDPOINT = "https://api.tardis.dev/v1"

SETTING_NAMES = (
    "MDH_DATA_ROOT",
    "MDH_WAREHOUSE",
    "TARDIS_API_KEY",
    "TARDIS_API_KEY_SECRET",
    "SECRET_MANAGER_EMULATOR_HOST",
    "TARDIS_DATASETS_ENDPOINT",
    "TARDIS_API_ENDPOINT",
    "GCP_PROJECT_ID",
    "GCS_BUCKET",
    "STORAGE_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_HOST",
    "DAGSTER_HOME",
    "MDH_RAW_RETENTION_DAYS",
    "MDH_SLOT_WAIT",
    "MDH_BQ_LOCATION",
    "MDH_EXECUTOR",
    "MDH_CELERY_BROKER",
    "MDH_CELERY_BACKEND",
)
DEFAULT_RAW_RETENTION_DAYS = 0  # keep everything (`mdh_lib.retention`)
# The earliest day Tardis serves: the default first partition day, so any historical day
# can be backfilled with no setting changed.
FIRST_TARDIS_DAY = dt.date(2019, 3, 30)
DEFAULT_SLOT_WAIT = 600.0


class Secret(str):
    """A string that never shows its value in repr() or logs (the Tardis API key)."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class VenueUniverse:
    """One Tardis exchange of the universe: its exchange symbols and option underlyings."""

    exchange: str
    symbols: tuple[str, ...] = ()
    instrument_types: tuple[str, ...] = ()  # empty = every type the symbols resolve to
    option_underlyings: tuple[str, ...] = ()
    raw_retention_days: int | None = None  # None: MDH_RAW_RETENTION_DAYS (`mdh_lib.retention`)


DEFAULT_VENUES = (
    VenueUniverse("binance", ("BTCUSDT", "ETHUSDT")),
    VenueUniverse("binance-futures", ("BTCUSDT", "ETHUSDT")),
    VenueUniverse("deribit", ("BTC-PERPETUAL",), option_underlyings=("BTC",)),
)


@dataclass(frozen=True)
class Universe:
    """What the pipeline covers: the first partition date and the venues' symbols.

    ``[universe]`` in mdh.toml::

        start_date = "2019-03-30"          # the default: the earliest day Tardis serves
        [[universe.venues]]
        exchange = "binance"
        symbols = ["BTCUSDT", "ETHUSDT"]
        raw_retention_days = 30            # optional; default MDH_RAW_RETENTION_DAYS (0: keep all)
        [[universe.venues]]
        exchange = "deribit"
        symbols = ["BTC-PERPETUAL"]
        option_underlyings = ["BTC"]
    """

    start_date: dt.date = FIRST_TARDIS_DAY
    venues: tuple[VenueUniverse, ...] = DEFAULT_VENUES

    def venue(self, exchange: str) -> VenueUniverse | None:
        return next((v for v in self.venues if v.exchange == exchange), None)

    @property
    def exchanges(self) -> tuple[str, ...]:
        return tuple(v.exchange for v in self.venues)


@dataclass(frozen=True)
class Settings:
    data_root: str = DEFAULT_DATA_ROOT
    warehouse: str = DEFAULT_WAREHOUSE
    tardis_api_key_value: Secret = field(default=Secret(""), repr=False)  # TARDIS_API_KEY
    tardis_api_key_secret: str = ""  # TARDIS_API_KEY_SECRET: a Secret Manager version name
    secret_manager_emulator_host: str = ""
    bq_location: str = "US"  # MDH_BQ_LOCATION: where a missing BigQuery dataset is created
    executor: str = ""  # MDH_EXECUTOR (`mdh_assets.execution`): "" = Dagster's default
    celery_broker: str = "redis://localhost:6379/0"  # MDH_CELERY_BROKER
    celery_backend: str = ""  # MDH_CELERY_BACKEND: "" = the broker
    datasets_endpoint: str = DEFAULT_DATASETS_ENDPOINT
    api_endpoint: str = DEFAULT_API_ENDPOINT
    gcp_project_id: str = ""
    storage_emulator_host: str = ""
    bigquery_emulator_host: str = ""
    dagster_home: str = DEFAULT_DAGSTER_HOME
    raw_retention_days: int = DEFAULT_RAW_RETENTION_DAYS  # 0 keeps every day (`mdh_lib.retention`)
    slot_wait: float = DEFAULT_SLOT_WAIT  # seconds a command waits for a pool slot (`mdh_assets.recovery`)
    universe: Universe = field(default_factory=Universe)

    @property
    def tardis_api_key(self) -> Secret:
        """The Tardis API key, resolved when a request needs it: from Google Secret Manager
        when TARDIS_API_KEY_SECRET names a version (`mdh_lib.secrets`), else TARDIS_API_KEY
        (the environment, which a Kubernetes secret can fill, or the config file)."""
        if self.tardis_api_key_secret:
            from mdh_lib.secrets import access_secret

            return access_secret(self.tardis_api_key_secret, emulator_host=self.secret_manager_emulator_host)
        return self.tardis_api_key_value


def _config_file(env: dict[str, str]) -> dict:
    path = env.get("MDH_CONFIG") or ("mdh.toml" if Path("mdh.toml").exists() else "")
    if not path:
        return {}
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _universe(raw: dict) -> Universe:
    if not raw:
        return Universe()
    venues = tuple(
        VenueUniverse(
            exchange=v["exchange"],
            symbols=tuple(v.get("symbols", ())),
            instrument_types=tuple(t.upper() for t in v.get("instrument_types", ())),
            option_underlyings=tuple(u.upper() for u in v.get("option_underlyings", ())),
            raw_retention_days=None if v.get("raw_retention_days") is None else non_negative(
                f"raw_retention_days of venue {v['exchange']}", str(v["raw_retention_days"]), int,
                " (days; 0 keeps everything)"),
        )
        for v in raw.get("venues", ())
    )
    start = raw.get("start_date", Universe.start_date)
    if isinstance(start, str):
        start = dt.date.fromisoformat(start)
    return Universe(start_date=start, venues=venues or DEFAULT_VENUES)


def non_negative(name: str, text: str, kind: type = float, hint: str = ""):
    """A setting that must be a number >= 0 (``kind`` int or float): its value, or one clear
    ValueError naming it."""
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0:
        noun = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {noun} >= 0{hint}, not {text!r}")
    return value


def load_settings(env: dict[str, str] | None = None, **overrides) -> Settings:
    """Build the settings; ``overrides`` (from command-line flags) win over everything."""
    env = dict(os.environ if env is None else env)
    raw = _config_file(env)
    merged = {k: str(v) for k, v in raw.get("settings", {}).items() if k in SETTING_NAMES}
    merged.update({k: v for k, v in env.items() if k in SETTING_NAMES and v != ""})

    data_root = merged.get("MDH_DATA_ROOT") or (
        f"gs://{merged['GCS_BUCKET']}" if merged.get("GCS_BUCKET") else DEFAULT_DATA_ROOT
    )
    values = dict(
        data_root=data_root,
        warehouse=merged.get("MDH_WAREHOUSE", DEFAULT_WAREHOUSE),
        tardis_api_key_value=Secret(merged.get("TARDIS_API_KEY", "")),
        tardis_api_key_secret=merged.get("TARDIS_API_KEY_SECRET", ""),
        secret_manager_emulator_host=merged.get("SECRET_MANAGER_EMULATOR_HOST", ""),
        bq_location=merged.get("MDH_BQ_LOCATION", "US"),
        executor=merged.get("MDH_EXECUTOR", "").strip().lower().replace("-", "_"),
        celery_broker=merged.get("MDH_CELERY_BROKER", Settings.celery_broker),
        celery_backend=merged.get("MDH_CELERY_BACKEND", ""),
        datasets_endpoint=merged.get("TARDIS_DATASETS_ENDPOINT", DEFAULT_DATASETS_ENDPOINT).rstrip("/"),
        api_endpoint=merged.get("TARDIS_API_ENDPOINT", DEFAULT_API_ENDPOINT).rstrip("/"),
        gcp_project_id=merged.get("GCP_PROJECT_ID", ""),
        storage_emulator_host=merged.get("STORAGE_EMULATOR_HOST", ""),
        bigquery_emulator_host=merged.get("BIGQUERY_EMULATOR_HOST", ""),
        dagster_home=merged.get("DAGSTER_HOME", DEFAULT_DAGSTER_HOME),
        raw_retention_days=non_negative("MDH_RAW_RETENTION_DAYS",
                                        merged.get("MDH_RAW_RETENTION_DAYS", str(DEFAULT_RAW_RETENTION_DAYS)),
                                        int, " (days; 0 keeps everything)"),
        slot_wait=non_negative("MDH_SLOT_WAIT", merged.get("MDH_SLOT_WAIT", str(DEFAULT_SLOT_WAIT)), float,
                               " (seconds)"),
        universe=_universe(raw.get("universe", {})),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def bypass_proxy_for_local(*urls: str) -> None:
    """tardis-dev honours proxy variables; a local server must never go through a proxy."""
    hosts = {urlparse(u).hostname for u in urls} & {"127.0.0.1", "localhost", "::1"}
    if not hosts:
        return
    current = [h for h in os.environ.get("NO_PROXY", "").split(",") if h]
    wanted = current + [h for h in ("127.0.0.1", "localhost") if h not in current]
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(wanted)
