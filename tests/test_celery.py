"""Steps on other machines: the Celery executor (`dagster-celery`, MDH_EXECUTOR=celery).

Real parts only, all on 127.0.0.1 and started here: Debian's ``redis-server`` (the Celery
broker and result backend), a real PostgreSQL (the Dagster instance, `tests/services.py`),
two ``dagster-celery worker`` processes with their own names (``w1@host``, ``w2@host``,
one step at a time each, started with ``deploy/celery-worker.yaml``), the sample server as
Tardis, and ``gcp-storage-emulator`` as the data root (``gs://``): the steps share nothing
but the instance, the broker and the bucket, as they would on separate machines.

One venue-day of the whole pipeline after the instrument definitions (raw data, options
features, candles, book and MFT features, warehouse tables) runs once through
``dagster asset materialize`` with the Celery executor, and once more with Dagster's
in-process executor into a local folder and a SQLite instance. The event log shows both
workers executing steps (dagster-celery's engine event names the worker of each step), and
every output file and warehouse row of the two runs is equal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from services import postgres_server  # noqa: F401 (the module's PostgreSQL fixture)

from mdh_lib.storage import Storage
from mdh_lib.warehouse import open_warehouse

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAY, VENUE = "2024-01-02", "binance-futures"
PIPELINE = "group:raw or group:features or group:candles or group:book or group:warehouse"
WORKERS = ("w1", "w2")
UNIVERSE = ('[universe]\nstart_date = "2024-01-01"\n'
            '[[universe.venues]]\nexchange = "binance-futures"\nsymbols = ["BTCUSDT"]\n')

pytestmark = pytest.mark.timeout(420)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to the process group this test started (a worker's CLI and its Celery
    children), SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """Debian's redis-server on a free 127.0.0.1 port, no persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing (.ci/run installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does it)")
    import redis

    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    with open(folder / "redis.log", "wb") as log:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text()[-1000:]}")
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    _stop(proc)


def _env(tmp_path: Path, server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MDH_", "DAGSTER_", "TARDIS_", "STORAGE_EMULATOR", "BIGQUERY_EMULATOR"))}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "mdh.toml").write_text(UNIVERSE)
    env |= {"MDH_CONFIG": str(tmp_path / "mdh.toml"), "TARDIS_DATASETS_ENDPOINT": server.endpoint,
            "TARDIS_API_ENDPOINT": server.endpoint, "TARDIS_API_KEY": "", "MDH_RAW_RETENTION_DAYS": "0",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the worker CLI runs `celery`
    return env | extra


def _run(cmd: list[str], env: dict[str, str], cwd: Path, what: str, timeout: float = 240) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise AssertionError(f"{what} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out.stdout + out.stderr


def _pipeline(env: dict[str, str], cwd: Path, *extra: str) -> None:
    """Instrument definitions through `mdh` (in its process), then one Dagster run of the
    venue-day's pipeline launched with `dagster asset materialize` (the executor that the
    environment and ``extra`` choose)."""
    _run([str(BIN / "mdh"), "instruments", "--start-date", DAY, "--end-date", DAY], env, cwd, "mdh instruments")
    _run([str(BIN / "dagster"), "asset", "materialize", "-m", "mdh_assets.definitions", "--select", PIPELINE,
          "--partition", f"{DAY}|{VENUE}", *extra], env, cwd, "dagster asset materialize")


def _files(storage: Storage) -> dict[str, pa.Table]:
    """Every Parquet file under the root; manifests without their run ids."""
    found = {}
    for rel in storage.list(""):
        if rel.startswith(".mdh-tmp") or not rel.endswith(".parquet"):
            continue
        table = storage.read_parquet(rel)
        if rel.startswith("_manifests/"):  # the run and the root differ; what they name may not
            source = table["source"]
            for prefix in (storage.uri("x")[:-1], storage.path("x")[:-1]):
                source = pc.replace_substring(source, prefix, "ROOT/")
            table = table.drop_columns(["run_id"]).set_column(table.schema.get_field_index("source"), "source", source)
        found[rel] = table
    return found


def _warehouse(url: str) -> dict[str, pa.Table]:
    with open_warehouse(url) as wh:
        return {t: wh.query(f"SELECT * FROM {wh.table_ref(t)} ORDER BY ALL").to_arrow() for t in wh.tables()}


def _wait_for_workers(broker: str, names: set[str], procs: list[subprocess.Popen], logs: list[Path]) -> None:
    from celery import Celery

    app = Celery(broker=broker, backend=broker)
    deadline = time.monotonic() + 120
    try:
        while True:
            replies = app.control.ping(timeout=1.0) or []
            seen = {name for reply in replies for name in reply}
            if names <= seen:
                return
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise AssertionError("Celery workers did not come up: " + " | ".join(
                    log.read_text()[-1500:] for log in logs))
    finally:
        app.close()


def test_two_celery_workers_run_the_pipeline_steps_with_single_process_results(
        tmp_path, monkeypatch, server, redis_url, postgres_server, gcs_emulator):  # noqa: F811 (fixture)
    host = socket.gethostname()
    bucket_root = f"gs://mdh-test/celery-{tmp_path.name}"
    celery_env = _env(tmp_path / "celery", server, **{
        "DAGSTER_HOME": str(tmp_path / "celery" / "dagster"), "MDH_DAGSTER_POSTGRES_URL": postgres_server.url,
        "MDH_DATA_ROOT": bucket_root, "STORAGE_EMULATOR_HOST": gcs_emulator, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "MDH_WAREHOUSE": f"duckdb:///{tmp_path / 'celery' / 'warehouse.duckdb'}",
        "MDH_EXECUTOR": "celery", "MDH_CELERY_BROKER": redis_url, "MDH_CELERY_BACKEND": redis_url})
    local_env = _env(tmp_path / "local", server, **{
        "DAGSTER_HOME": str(tmp_path / "local" / "dagster"), "MDH_DATA_ROOT": str(tmp_path / "local" / "data"),
        "MDH_WAREHOUSE": f"duckdb:///{tmp_path / 'local' / 'warehouse.duckdb'}"})

    # The in-process reference runs meanwhile (its own root, warehouse and SQLite instance).
    reference: dict[str, object] = {}

    def run_reference() -> None:
        started = time.monotonic()
        try:
            _pipeline(local_env, tmp_path / "local", "--config-json",
                      json.dumps({"execution": {"config": {"in_process": {}}}}))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            reference["error"] = exc
        reference["seconds"] = time.monotonic() - started

    in_process = threading.Thread(target=run_reference, name="in-process reference")
    in_process.start()
    # The workers open the instance (its dagster.yaml, written by mdh) when they start.
    from mdh_assets.runs import write_instance_yaml
    from mdh_lib.config import load_settings

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # write_instance_yaml exports its folder
    # the yaml follows this process's MDH_DAGSTER_POSTGRES_URL: without it the workers would
    # start on a SQLite instance (and race each other creating it)
    monkeypatch.setenv("MDH_DAGSTER_POSTGRES_URL", celery_env["MDH_DAGSTER_POSTGRES_URL"])
    write_instance_yaml(load_settings(env=celery_env))
    assert "postgres" in (tmp_path / "celery" / "dagster" / "dagster.yaml").read_text()
    workers, logs = [], []
    try:
        for name in WORKERS:
            logs.append(tmp_path / f"{name}.log")
            with open(logs[-1], "wb") as log:
                workers.append(subprocess.Popen(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(REPO / "deploy" / "celery-worker.yaml"), "-n", name, "--loglevel", "WARNING",
                     "--", "--concurrency=1", "--without-gossip", "--without-mingle"],
                    env=celery_env, cwd=tmp_path / "celery", stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        started = time.monotonic()
        _run([str(BIN / "mdh"), "instruments", "--start-date", DAY, "--end-date", DAY], celery_env,
             tmp_path / "celery", "mdh instruments")
        _wait_for_workers(redis_url, {f"{n}@{host}" for n in WORKERS}, workers, logs)
        _run([str(BIN / "dagster"), "asset", "materialize", "-m", "mdh_assets.definitions", "--select", PIPELINE,
              "--partition", f"{DAY}|{VENUE}"], celery_env, tmp_path / "celery", "the Celery run")
        celery_seconds = time.monotonic() - started
    finally:
        for proc in workers:
            _stop(proc)
        in_process.join()
    if "error" in reference:
        raise reference["error"]

    # Who ran what: dagster-celery's engine event for each step names the Celery worker.
    monkeypatch.setenv("MDH_DAGSTER_POSTGRES_URL", postgres_server.url)  # the yaml names the variable
    instance = dg.DagsterInstance.from_config(str(tmp_path / "celery" / "dagster"))
    try:
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/partition") == f"{DAY}|{VENUE}"]
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS, [(r.run_id, r.status) for r in runs]
        records = instance.all_logs(runs[0].run_id)
    finally:
        instance.dispose()
    worker_of = {}
    for record in records:
        event = record.dagster_event
        if event and event.event_type == dg.DagsterEventType.ENGINE_EVENT and "in celery worker" in record.message:
            worker_of[event.step_key] = event.engine_event_data.metadata["Celery worker"].value
    succeeded = {r.dagster_event.step_key for r in records
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
    print(f"Celery: {celery_seconds:.1f} s with worker start-up; in process: {reference['seconds']:.1f} s "
          "(side by side on the same cores); "
          f"steps per worker: { {w: sorted(k for k, v in worker_of.items() if v == w) for w in set(worker_of.values())} }")
    assert len(succeeded) >= 8 and succeeded <= set(worker_of), (succeeded, worker_of)  # every step in a worker
    assert set(worker_of.values()) == {f"{n}@{host}" for n in WORKERS}, worker_of  # and both workers ran steps

    celery_files = _files(Storage(bucket_root, emulator_host=gcs_emulator))
    local_files = _files(Storage(str(tmp_path / "local" / "data")))
    assert sorted(celery_files) == sorted(local_files), set(celery_files) ^ set(local_files)
    for prefix in ("raw/", "candles/", "book/", "features/mft/", "_manifests/"):
        assert any(rel.startswith(prefix) for rel in local_files), prefix
    for rel, table in local_files.items():
        assert celery_files[rel].equals(table), rel
    celery_tables = _warehouse(celery_env["MDH_WAREHOUSE"])
    local_tables = _warehouse(local_env["MDH_WAREHOUSE"])
    assert sorted(celery_tables) == sorted(local_tables) and "candles_1m" in local_tables
    for name, table in local_tables.items():
        assert table.num_rows and celery_tables[name].equals(table), name


def test_deploy_files_agree_with_the_code(monkeypatch):
    """deploy/: the worker config is what the executor uses, the Helm values name only
    settings mdh reads and the run limits that mdh writes locally, the image installs the
    packages that pyproject.toml ships."""
    import tomllib

    import yaml
    from dagster_celery.cli import get_validated_config

    from mdh_assets.execution import CELERY_SETTINGS
    from mdh_assets.runs import MAX_CONCURRENT_RUNS
    from mdh_lib.config import SETTING_NAMES

    deploy = REPO / "deploy"
    monkeypatch.setenv("MDH_CELERY_BROKER", "redis://broker:6379/0")
    monkeypatch.setenv("MDH_CELERY_BACKEND", "redis://broker:6379/1")
    worker = get_validated_config(str(deploy / "celery-worker.yaml"))
    assert (worker["broker"], worker["backend"]) == ("redis://broker:6379/0", "redis://broker:6379/1")
    assert worker["config_source"] == CELERY_SETTINGS

    values = yaml.safe_load((deploy / "helm-values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert code["includeConfigInLaunchedRuns"]["enabled"] and {"name": "mdh-secrets"} in code["envSecrets"]
    assert code["codeServerArgs"] == ["-m", "mdh_assets.definitions"]
    commented = [line.split("name:")[1].strip() for line in (deploy / "helm-values.yaml").read_text().splitlines()
                 if line.strip().startswith("# - name:")]
    known = {*SETTING_NAMES, "MDH_CONFIG"}
    for name in [e["name"] for e in code["env"]] + commented:
        assert name in known, name
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == MAX_CONCURRENT_RUNS
    assert values["concurrency"]["pools"] == {"defaultLimit": 1, "granularity": "run"}
    assert not values["postgresql"].get("postgresqlPassword")  # the password lives in a Kubernetes secret

    docs = list(yaml.safe_load_all((deploy / "celery-workers.k8s.yaml").read_text()))
    (worker_pod,) = [d for d in docs if d["metadata"]["name"] == "mdh-celery-worker"]
    (container,) = worker_pod["spec"]["template"]["spec"]["containers"]
    assert "task_acks_late: true, worker_prefetch_multiplier: 1" in container["args"][0]
    assert {e["name"] for e in container["env"]} - {"DAGSTER_PG_PASSWORD"} <= known

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    dockerfile = (deploy / "Dockerfile").read_text()
    for package in packages:
        assert f"COPY {package.rstrip('*')}/ " in dockerfile, package
    assert 'pip install ".[dagster]" "dagster-k8s==0.29.*"' in dockerfile
