"""A crashed run never blocks the next one.

Every run that `mdh` starts carries its process in tags (`OWNER_TAGS`, `mdh_lib.processes`).
Before a batch command claims anything, `recover` marks FAILED each run of this host that is
still active in the instance but whose process is gone (``kill -9``, the OOM killer, a
reboot), frees any concurrency slot it held and removes the scratch files it left. Its
partitions then show as failed, so the missing-data report and the planners retry them.
Runs that the daemon or the UI launched have no owner tags; the instance's run monitoring
(`mdh_assets.runs.INSTANCE_YAML`) covers those.

Pools: the instance counts pools per run (``granularity: run``): a run that uses the pool
``tardis`` holds one of its slots from start to end, and Dagster's executor claims nothing
per step (its per-step wait spins a core and ignores SIGTERM). The queued run coordinator
holds back daemon and UI runs; the CLI holds back its own with `PoolGate`: a lock file per
slot under DAGSTER_HOME (the kernel releases it when its process dies, however it dies) plus
the active runs of the pool that the daemon, the UI or another host started.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
from filelock import FileLock, Timeout

from mdh_lib.processes import Owner, SlotWaitTimeout
from mdh_lib.storage import Storage

OWNER_TAGS = ("mdh/host", "mdh/pid", "mdh/pid_start")
ACTIVE = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
          dg.DagsterRunStatus.CANCELING]
POLL_SECONDS = 0.5


def owner_tags() -> dict[str, str]:
    me = Owner.current()
    return dict(zip(OWNER_TAGS, (me.host, str(me.pid), me.start)))


def run_owner(run: dg.DagsterRun) -> Owner | None:
    host, pid, start = (run.tags.get(t) for t in OWNER_TAGS)
    return Owner(host, int(pid), start) if host and pid and start else None


def describe(record: dg.RunRecord) -> str:
    """``run 1a2b3c4d (mdh download, pid 42 on host, started 20:31:05 UTC)``."""
    run, owner = record.dagster_run, run_owner(record.dagster_run)
    started = record.start_time or record.create_timestamp.timestamp()
    since = dt.datetime.fromtimestamp(started, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    who = f"mdh {run.tags.get('mdh/command', 'cli')}, {owner}" if owner else f"job {run.job_name}"
    return f"run {run.run_id[:8]} ({who}, started {since})"


def recover(instance: dg.DagsterInstance, storage: Storage) -> list[str]:
    """Fail the orphaned runs of this host and clean dead scratch files; one line per run."""
    records = instance.get_run_records(dg.RunsFilter(statuses=ACTIVE, tags={OWNER_TAGS[0]: socket.gethostname()}))
    lines = []
    for record in records:
        owner = run_owner(record.dagster_run)
        if owner is None or owner.alive() is not False:
            continue
        what = describe(record)
        instance.report_run_failed(record.dagster_run, message=f"mdh: the process of this run ({owner}) died "
                                   "before the run ended; marked failed by the next mdh command")
        instance.event_log_storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
        lines.append(f"recovered {what}: its process died before it finished; marked failed, its partitions "
                     "are retried")
    storage.clean_scratch()
    return lines


def in_worker(run: Callable[[], object], on_interrupt: Callable[[], None]):
    """``run()`` on a worker thread, its result or its error returned or raised here.

    Dagster only installs its signal handlers on the main thread, and a signal they capture
    between steps can be lost; on a worker thread it installs none, so SIGINT/SIGTERM reach
    the main thread at once, which calls ``on_interrupt()`` (mark the run failed) and
    re-raises. The worker is a daemon thread: it ends with the process."""
    box: dict = {}

    def work() -> None:
        try:
            box["value"] = run()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="mdh-run", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        on_interrupt()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def abandon(instance: dg.DagsterInstance, why: str) -> list[str]:
    """Mark FAILED the active runs of this process (it is about to stop); their names."""
    me = Owner.current()
    records = instance.get_run_records(dg.RunsFilter(statuses=ACTIVE, tags={OWNER_TAGS[1]: str(me.pid)}))
    names = []
    for record in records:
        if run_owner(record.dagster_run) == me:
            instance.report_run_failed(record.dagster_run, message=f"mdh: {why}")
            names.append(f"run {record.dagster_run.run_id[:8]}")
    return names


class PoolGate:
    """Holds back a CLI run until each of its pools has a free slot (see the module docstring).
    Waits by sleeping (`POLL_SECONDS`), says once what it waits for, gives up after
    ``timeout`` seconds with `SlotWaitTimeout`; SIGINT/SIGTERM end the wait at once."""

    def __init__(self, instance: dg.DagsterInstance, home: str | Path, timeout: float, say: Callable[[str], None]):
        self.instance, self.timeout, self.say = instance, timeout, say
        self.folder = Path(home) / "mdh-pool-locks"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.waited = 0.0  # seconds spent waiting, over the gate's life

    def _limit(self, pool: str) -> int | None:
        limits = {p.name: p.limit for p in self.instance.event_log_storage.get_pool_limits()}
        return limits.get(pool, self.instance.global_op_concurrency_default_limit)

    def _active(self) -> list[dg.RunRecord]:
        return list(self.instance.get_run_records(dg.RunsFilter(statuses=ACTIVE)))

    def _try(self, pool: str, limit: int) -> tuple[FileLock | None, str]:
        """A slot's lock (held), or None and who holds the pool."""
        host, active = socket.gethostname(), self._active()
        # runs that hold no lock file here: started by the daemon, the UI or another host
        others = [r for r in active if r.dagster_run.tags.get(OWNER_TAGS[0]) != host
                  and pool in ((r.dagster_run.run_op_concurrency and r.dagster_run.run_op_concurrency.all_pools) or ())]
        for i in range(max(0, limit - len(others))):
            lock = FileLock(self.folder / f"{pool}.{i}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            (self.folder / f"{pool}.{i}.pid").write_text(str(Owner.current().pid))
            return lock, ""
        holders = {(self.folder / f"{pool}.{i}.pid").read_text().strip() for i in range(limit)
                   if (self.folder / f"{pool}.{i}.pid").exists()}
        local = [r for r in active if r.dagster_run.tags.get(OWNER_TAGS[0]) == host
                 and r.dagster_run.tags.get(OWNER_TAGS[1]) in holders]
        names = [describe(r) for r in others + local] or ["another mdh command"]
        return None, f"pool {pool!r} (limit {limit}) is held by {'; '.join(names)}"

    @contextmanager
    def hold(self, pools: list[str]) -> Iterator[None]:
        """A slot in every pool of ``pools`` for the body (one run)."""
        with ExitStack() as stack:
            for pool in sorted(set(pools)):
                limit = self._limit(pool)
                if limit is not None:
                    stack.callback(self._wait(pool, limit).release)
            yield

    def _wait(self, pool: str, limit: int) -> FileLock:
        holder = ""

        def attempt():
            nonlocal holder
            lock, holder = self._try(pool, limit)
            return lock

        return self.until(attempt, lambda: f"a slot: {holder}")

    def until(self, attempt: Callable[[], object], what: Callable[[], str], poll: float = POLL_SECONDS):
        """``attempt()`` every ``poll`` seconds until it returns something true, which is
        returned; says once what it waits for (``what()``), `SlotWaitTimeout` after the
        gate's timeout."""
        start, said = time.monotonic(), False
        while True:
            got = attempt()
            waited = time.monotonic() - start
            if got:
                self.waited += waited
                return got
            if waited >= self.timeout:
                self.waited += waited
                raise SlotWaitTimeout(f"gave up after waiting {waited:.0f} s for {what()}; set MDH_SLOT_WAIT "
                                      "(seconds) to wait longer")
            if not said:
                self.say(f"waiting for {what()} (at most MDH_SLOT_WAIT={self.timeout:.0f} s)")
                said = True
            time.sleep(poll)

    def running(self) -> str:
        """The active runs of the instance, named (for what a wait says)."""
        return "; ".join(describe(r) for r in self._active()) or "no run"
