"""Which executor runs the steps of the runs that the daemon, the UI and `dagster` commands
launch (`MDH_EXECUTOR`); the `mdh` CLI always runs its own runs in its process.

- unset: Dagster's default, each step in a subprocess of the run's process (one machine).
- ``in_process``: every step in the run's process.
- ``celery``: every step is a Celery task (`dagster-celery`), executed by whichever
  ``dagster-celery worker`` takes it, on any machine that reaches the broker
  (``MDH_CELERY_BROKER``, e.g. ``redis://host:6379/0``), the Dagster instance (PostgreSQL,
  ``MDH_DAGSTER_POSTGRES_URL``) and the data root (``gs://`` or a shared folder). Steps
  exchange nothing but the files under the data root and the instance's records, so a
  step's inputs never depend on the machine that wrote them.

A worker is started with the same broker, e.g.::

    dagster-celery worker start -A dagster_celery.app -y deploy/celery-worker.yaml -n w1

(``deploy/celery-worker.yaml`` reads ``MDH_CELERY_BROKER``/``MDH_CELERY_BACKEND`` from the
environment, with the Celery settings of `CELERY_SETTINGS`).
"""

from __future__ import annotations

import os

import dagster as dg

from mdh_lib.config import Settings

EXECUTORS = ("in_process", "multiprocess", "celery")
# Fair dispatch across workers: a worker acknowledges a step when it has run (a worker that
# dies mid-step leaves it to another) and reserves no more than the step it is running.
CELERY_SETTINGS = {"task_acks_late": True, "worker_prefetch_multiplier": 1}


def _source(variable: str, value: str) -> str | dict:
    """A URL set in the environment is passed by name (``{"env": ...}``), so a password in it
    never becomes part of the definitions that the UI shows."""
    return {"env": variable} if os.environ.get(variable) else value


def executor_for(settings: Settings) -> dg.ExecutorDefinition | None:
    """The executor that MDH_EXECUTOR names (None: Dagster's default)."""
    name = settings.executor
    if not name:
        return None
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        from dagster_celery import celery_executor

        broker = _source("MDH_CELERY_BROKER", settings.celery_broker)
        backend = _source("MDH_CELERY_BACKEND", settings.celery_backend) if settings.celery_backend else broker
        return celery_executor.configured(
            {"broker": broker, "backend": backend, "config_source": dict(CELERY_SETTINGS)}, name="celery")
    raise ValueError(f"MDH_EXECUTOR must be one of {', '.join(EXECUTORS)} (or unset), not {name!r}")
