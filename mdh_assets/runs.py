"""Running assets through Dagster against the persistent instance, so the UI and the
missing-data report see every CLI run. One in-process run per partition, or per range of
partitions for assets with a multi-partition backfill policy (`mdh_assets.backfill`)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mdh_lib.config import Settings

# The CLI prints one line per failure itself; Dagster's console logs (with tracebacks) stay
# in the instance's event log, where the UI shows them.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Every Dagster pool defaults to one step at a time (`dagster instance concurrency set` changes
# one): `tardis` (one raw download step at a time, each with at most 20 files in flight) and
# `warehouse_{family}` (loads into one table never overlap). Runs that the daemon or the UI
# launch honour pools; the CLI runs its steps one after another in its own process.
INSTANCE_YAML = """telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME (default ./.mdh/dagster)."""
    home = Path(settings.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


@dataclass
class RunOutcome:
    partition: str  # a partition key, or "first..last" for a range
    assets: list[str]
    success: bool
    errors: list[str] = field(default_factory=list)
    # (asset, partition) -> metadata of each materialization
    metadata: dict[tuple[str, str | None], dict] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # "asset/key:check_name" -> passed


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
    resources: dict, last_key: str | None = None,
) -> RunOutcome:
    """One run of ``selection`` for ``partition_key``, or for the range up to ``last_key``."""
    tags = {"mdh/source": "cli"}
    if last_key is not None and last_key != partition_key:
        tags |= {ASSET_PARTITION_RANGE_START_TAG: str(partition_key), ASSET_PARTITION_RANGE_END_TAG: str(last_key)}
        label, partition_key = f"{partition_key}..{last_key}", None
    else:
        label = str(partition_key)
    result = dg.materialize(
        defs_assets, selection=selection, partition_key=partition_key, instance=instance, resources=resources,
        raise_on_error=False, run_config=QUIET, tags=tags,
    )
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


def is_materialized(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_key: str) -> bool:
    return partition_key in instance.get_materialized_partitions(asset_key)


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
