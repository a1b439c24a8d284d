"""Running assets through Dagster against the persistent instance, so the UI and the
missing-data report see every CLI run. One in-process run per partition, or per range of
partitions for assets with a multi-partition backfill policy (`mdh_assets.backfill`)."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg

from mdh_assets.instance_sqlite import use_for as use_sqlite_for
from mdh_assets.recovery import owner_tags
from mdh_lib.config import Settings, load_settings

# Dagster's run tags for a run over a range of partitions (what a backfill launches).
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

# The CLI prints one line per failure itself; Dagster's console logs (with tracebacks) stay
# in the instance's event log, where the UI shows them.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# The instance's dagster.yaml, written on first use (and rewritten while it carries the
# marker line, so it follows MDH_DAGSTER_POSTGRES_URL). Storage: SQLite files under
# DAGSTER_HOME (the embedded default), or PostgreSQL when MDH_DAGSTER_POSTGRES_URL is set;
# the file then names the variable, never its value, so the password stays out of the file,
# of `dagster instance info` and of the UI's instance page (every process that opens the
# instance, `dagster dev`, the daemon and the runs it launches, reads the variable).
# Runs that the daemon or the UI launch go through the queued run coordinator: at most
# `MAX_CONCURRENT_RUNS` at once, and none while a pool it uses is full. Pools count per run
# (`mdh_assets.recovery`), one run at a time by default (`dagster instance concurrency set`
# changes one): `tardis` (one raw download run at a time, each with at most 20 files in
# flight) and `warehouse_{family}` (loads into one table never overlap), so a UI backfill of
# a year queues rather than flooding Tardis or the warehouse. The CLI runs in-process and
# holds back its own runs (`mdh_assets.recovery.PoolGate`). Run monitoring lets the daemon
# fail runs that never start or never finish cancelling; a run whose process dies is failed
# by the code server that launched it (daemon and UI runs) or by the next `mdh` command
# (runs that `mdh` started).
MARKER = "# written by mdh: it rewrites this file while this line is here\n"
POSTGRES_URL_ENV = "MDH_DAGSTER_POSTGRES_URL"
MAX_CONCURRENT_RUNS = 4
_COMMON_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 2
concurrency:
  runs:
    max_concurrent_runs: %d
  pools:
    granularity: run
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
""" % MAX_CONCURRENT_RUNS
_POSTGRES_YAML = """storage:
  postgres:
    postgres_url:
      env: %s
""" % POSTGRES_URL_ENV
INSTANCE_YAML = MARKER + _COMMON_YAML  # SQLite
POSTGRES_INSTANCE_YAML = MARKER + _POSTGRES_YAML + _COMMON_YAML
# What earlier versions wrote: replaced too.
_EARLIER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
_URL = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)(?P<password>[^@\s]*)(?P<tail>@)", re.I)


class InstanceConfigError(ValueError):
    """MDH_DAGSTER_POSTGRES_URL is malformed, or its server cannot be used (password scrubbed)."""


def scrub(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL written ``***``
    (and the password of MDH_DAGSTER_POSTGRES_URL wherever it appears)."""
    text = _URL.sub(lambda m: f"{m['head']}***{m['tail']}", str(text))
    password = _password(os.environ.get(POSTGRES_URL_ENV, ""))
    return text.replace(password, "***") if password and len(password) >= 4 else text


def _password(url: str) -> str:
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def postgres_url() -> str | None:
    """MDH_DAGSTER_POSTGRES_URL, checked: ``postgresql://user:password@host:port/db`` (percent-
    encode special characters of the password); None when unset or empty."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise InstanceConfigError(f"{POSTGRES_URL_ENV} is not a URL ({scrub(str(exc))})") from None
    if parts.scheme not in ("postgresql", "postgresql+psycopg2") or not parts.hostname \
            or not parts.username or not parts.path.strip("/"):
        raise InstanceConfigError(f"{POSTGRES_URL_ENV} must look like postgresql://user:password@host:port/db, "
                                  f"not {scrub(url)}")
    return url


def instance_yaml() -> str:
    """The dagster.yaml that mdh writes for the current environment."""
    return POSTGRES_INSTANCE_YAML if postgres_url() else INSTANCE_YAML


def write_instance_yaml(settings: Settings) -> Path:
    """DAGSTER_HOME/dagster.yaml for the current environment (unless a person took it over by
    removing the marker line); the folder, which is also exported as DAGSTER_HOME."""
    home = Path(settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config, wanted = home / "dagster.yaml", instance_yaml()
    current = config.read_text() if config.exists() else None
    if current is None or (current != wanted and (current.startswith(MARKER) or current == _EARLIER_YAML)):
        config.write_text(wanted)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# The runs of `mdh` commands execute in the command's own process, whose stdout and stderr are
# the command's terminal output: they are not also captured. Dagster's capture redirects the
# process's descriptors to files for the run and starts two `tail` processes and two Python
# watchers per run (~0.5 s a command); every event is in the event log as always. Runs that
# the UI or the daemon launch capture their output as the instance's dagster.yaml says.
IN_PROCESS_OVERRIDES = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager",
                                         "class": "NoOpComputeLogManager"}}


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME (default ./.mdh/dagster) for this process's
    runs: SQLite there (used as `mdh_assets.instance_sqlite` says), or the PostgreSQL database
    of MDH_DAGSTER_POSTGRES_URL, as its dagster.yaml says, with `IN_PROCESS_OVERRIDES`. A
    server that cannot be reached or refuses the login is one line naming it, password
    scrubbed."""
    home = write_instance_yaml(settings)
    url = postgres_url()
    if url is None:
        use_sqlite_for(home)
    try:
        # What `DagsterInstance.get()` opens (DAGSTER_HOME's dagster.yaml), with the overrides.
        instance = dg.DagsterInstance.local_temp(str(home), overrides=IN_PROCESS_OVERRIDES)
        if url is not None:
            # dagster-postgres opens a connection per query by default (a fork and a password
            # exchange on the server each time: ~25 ms an event); the CLI's process keeps a
            # small pool instead, as dagster-webserver does (no statement timeout).
            instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)
        return instance
    except Exception as exc:
        if url is None:
            raise
        cause = " ".join(scrub(str(exc.__cause__ or exc)).split())
        raise InstanceConfigError(f"cannot open the Dagster instance on PostgreSQL {scrub(url)}: "
                                  f"{type(exc.__cause__ or exc).__name__}: {cause[:300]}") from None


@dataclass
class RunOutcome:
    partition: str  # a partition key, or "first..last" for a range
    assets: list[str]
    success: bool
    errors: list[str] = field(default_factory=list)
    # (asset, partition) -> metadata of each materialization
    metadata: dict[tuple[str, str | None], dict] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # "asset/key:check_name" -> passed

    @property
    def lines(self) -> list[str]:
        """What failed: the run's errors, then the instruments its venue-days name (once per
        instrument and error, not once per timeframe)."""
        seen, lines = set(), list(self.errors)
        for meta in self.metadata.values():
            for line in meta.get("failures", "").splitlines():
                what = line.split(" ", 1)[-1]  # without the dataset
                if what not in seen:
                    seen.add(what)
                    lines.append(line)
        return lines

    @property
    def complete(self) -> bool:
        return self.success and not any(meta.get("instruments_failed") for meta in self.metadata.values())

    @property
    def files(self) -> int:
        """Files written (or warehouse slices loaded); a daily asset writes one."""
        return sum(int(meta.get("written_this_run", 1)) for meta in self.metadata.values())


def _failure_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            lines += data.user_failure_data.description.splitlines()
        else:
            err = data.error
            while err is not None and err.cause is not None and err.cls_name.startswith("Dagster"):
                err = err.cause
            message = (err.message if err else "unknown error").strip().splitlines()[0]
            lines.append(f"{event.step_key}: {message}")
    return lines or ["run failed"]


def materialize(
    defs_assets: list, selection: list[dg.AssetKey], partition_key: str, *, instance: dg.DagsterInstance,
    resources: dict, last_key: str | None = None, command: str = "cli", scope: dict | None = None,
    job: dg.JobDefinition | None = None,
) -> RunOutcome:
    """One run of ``selection`` for ``partition_key``, or for the range up to ``last_key``,
    tagged with this process (`mdh_assets.recovery`); ``scope`` is the run config of the
    venue-day assets (`mdh_assets.io_managers.venue_day.Scope`)."""
    tags = {"mdh/source": "cli", "mdh/command": command, **owner_tags()}
    if last_key is not None and last_key != partition_key:
        tags |= {RANGE_START_TAG: str(partition_key), RANGE_END_TAG: str(last_key)}
        label, partition_key = f"{partition_key}..{last_key}", None
    else:
        label = str(partition_key)
    run_config = {**QUIET, "ops": _scoped(defs_assets, selection, scope)}
    if job is not None:  # the asset job of definitions built once per process (`asset_job`)
        result = job.execute_in_process(run_config=run_config, instance=instance, partition_key=partition_key,
                                        raise_on_error=False, tags=tags, asset_selection=selection)
    else:
        result = dg.materialize(defs_assets, selection=selection, partition_key=partition_key, instance=instance,
                                resources=resources, raise_on_error=False, run_config=run_config, tags=tags)
    outcome = RunOutcome(label, ["/".join(k.path) for k in selection], result.success)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            outcome.checks[f"{'/'.join(evaluation.asset_key.path)}:{evaluation.check_name}"] = evaluation.passed
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.step_materialization_data.materialization
            outcome.metadata["/".join(mat.asset_key.path), mat.partition] = {k: v.value for k, v in mat.metadata.items()}
    if not result.success:
        outcome.errors = _failure_lines(result)
    return outcome


def asset_job(defs_assets: list, resources: dict) -> dg.JobDefinition:
    """One job over every asset with ``resources`` bound, for a process's runs of any selection
    (`materialize` with ``job``): the definitions are built and checked once, not per run."""
    return dg.Definitions(assets=defs_assets, resources=resources).resolve_implicit_global_asset_job_def()


def _scoped(defs_assets: list, selection: list[dg.AssetKey], scope: dict | None) -> dict:
    """Run config giving ``scope`` to each selected asset that takes one."""
    wanted = set(selection)
    return {a.op.name: {"config": scope} for a in defs_assets
            if scope and "symbols" in (getattr(a.op.config_schema.config_type, "fields", None) or {})
            and wanted & set(a.keys)}


def pools(defs_assets: list, selection: list[dg.AssetKey]) -> list[str]:
    """The concurrency pools that a run of ``selection`` uses."""
    wanted = set(selection)
    return sorted({a.op.pool for a in defs_assets if a.op.pool and wanted & set(a.keys)})


def is_materialized(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str) -> bool:
    return partition_key in instance.get_materialized_partitions(asset_key)


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


if __name__ == "__main__":  # `make ui`: the instance file for this environment, before `dagster dev` reads it
    print(f"DAGSTER_HOME={write_instance_yaml(load_settings())} "
          f"({'PostgreSQL: ' + scrub(postgres_url()) if postgres_url() else 'SQLite'})")
