"""Worker housekeeping: the periodic sweep, heartbeats from the main process, shutdown.

:func:`sweep` recovers lost jobs (:func:`app.jobs.recover_jobs`: stale running jobs are
re-queued, lost queued jobs re-published) and deletes the distributed-pricing rounds that a
dead coordinator left behind (:func:`sweep_pricing_rounds`).

In the worker's main process (started on ``worker_ready``, stopped on ``worker_shutdown``):

* the :class:`~app.jobs.Sweeper` thread runs :func:`sweep` every ``sweep_interval``;
* the :class:`PoolHeartbeat` thread refreshes, every ``heartbeat_interval``, the heartbeat of
  every job (and pricing part) a live pool process of this worker is running. The job's own
  heartbeat thread runs in the pool process, where a long computation that holds the GIL can
  delay it; the main process is never held up that way, so a short ``stale_after`` only ever
  fires for a job whose process is really gone.

On a warm shutdown (``worker_shutting_down``, SIGTERM) the running jobs get
``shutdown_grace`` seconds to finish; then they are handed back (re-queued and re-published,
:func:`hand_back_jobs`), their pool processes notice at their next heartbeat and stop at the
engine's next checkpoint, and the worker exits without waiting for long jobs. Every pool
process watches its parent (:func:`watch_parent`) and exits when the main process is gone, so
no pool process outlives a killed worker.

The handlers are connected when ``worker/celery_app.py`` imports this module.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown, worker_shutting_down
from sqlalchemy import delete, or_, select, update

from app.broker import PRICE_PART_TASK, RUN_JOB_TASK
from app.core.config import Settings, get_settings
from app.db import session_scope
from app.jobs import Sweeper, enqueue, recover_jobs
from app.models import Job, PricingPart, PricingRound, utcnow

log = logging.getLogger("wedgenet.worker")


def sweep_pricing_rounds(settings: Settings) -> int:
    """Delete distributed-pricing rounds left behind by a coordinator that died: rounds whose
    job finished, was re-queued or is now run by another attempt. Returns how many."""
    with session_scope(settings.database_url) as s:
        ids = list(s.scalars(
            select(PricingRound.id).join(Job, Job.id == PricingRound.job_id, isouter=True)
            .where(or_(Job.id.is_(None), Job.state != "running", Job.worker_id.is_(None),
                       Job.worker_id != PricingRound.attempt))))
        if ids:
            s.execute(delete(PricingPart).where(PricingPart.round_id.in_(ids)))
            s.execute(delete(PricingRound).where(PricingRound.id.in_(ids)))
    return len(ids)


def sweep(settings: Settings | None = None) -> list[str]:
    """One sweep of a worker: job recovery, then pricing-round cleanup. Returns the
    re-published job ids."""
    settings = settings or get_settings()
    republished = recover_jobs(settings)
    sweep_pricing_rounds(settings)
    return republished


# ------------------------------------------------------------ the main process's view


def active_work() -> tuple[list[tuple[str, int]], set[int]]:
    """What this worker's pool processes run now, from Celery's record of active requests
    (main process): ``[(job_id, pid)]`` of ``run_job`` tasks, and the pids running any
    wedgenet task (they may hold pricing parts). Only processes that are alive count."""
    from celery.worker import state

    requests: list[Any] = []
    for _ in range(5):  # the set changes under us in the consumer thread: copy again
        try:
            requests = list(state.active_requests)
            break
        except RuntimeError:
            time.sleep(0.001)
    jobs: list[tuple[str, int]] = []
    pids: set[int] = set()
    for req in requests:
        pid = getattr(req, "worker_pid", None)
        name = getattr(req, "task_name", None)
        if not pid or name not in (RUN_JOB_TASK, PRICE_PART_TASK) or not _alive(pid):
            continue
        pids.add(int(pid))
        if name == RUN_JOB_TASK and req.args:
            jobs.append((str(req.args[0]), int(pid)))
    return jobs, pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: it exists
        return True
    return True


def _token_prefix(pid: int) -> str:
    """Start of the worker token of a job run by pool process ``pid`` on this host
    (``host:pid:attempt``, see :func:`worker.tasks.run_job_now`)."""
    return f"{socket.gethostname()}:{pid}:"


def beat_active(settings: Settings) -> int:
    """Refresh the heartbeat of the jobs and pricing parts this worker's live pool processes
    are running (only while each still owns them). Returns how many rows were refreshed."""
    jobs, pids = active_work()
    if not jobs and not pids:
        return 0
    now = utcnow()
    host = socket.gethostname()
    n = 0
    with session_scope(settings.database_url) as s:
        for job_id, pid in jobs:
            res = s.execute(update(Job).where(
                Job.id == job_id, Job.state == "running",
                Job.worker_id.startswith(_token_prefix(pid), autoescape=True),
            ).values(heartbeat_at=now))
            n += int(res.rowcount or 0)  # type: ignore[attr-defined]
        if pids:
            res = s.execute(update(PricingPart).where(
                PricingPart.state == "running",
                PricingPart.worker_id.in_([f"{host}:{pid}" for pid in sorted(pids)]),
            ).values(heartbeat_at=now))
            n += int(res.rowcount or 0)  # type: ignore[attr-defined]
    return n


def hand_back_jobs(settings: Settings) -> list[str]:
    """Re-queue and re-publish the jobs this worker's pool processes are running (a shutting
    down worker gives them to the others). Each pool process finds its job taken at its next
    heartbeat and stops at the engine's next checkpoint, storing nothing. Returns the ids."""
    jobs, _ = active_work()
    handed: list[str] = []
    if not jobs:
        return handed
    with session_scope(settings.database_url) as s:
        for job_id, pid in jobs:
            res = s.execute(update(Job).where(
                Job.id == job_id, Job.state == "running",
                Job.worker_id.startswith(_token_prefix(pid), autoescape=True),
            ).values(state="queued", worker_id=None, enqueued_at=utcnow(),
                     stage="re-queued: its worker is shutting down"))
            if res.rowcount:  # type: ignore[attr-defined]
                handed.append(job_id)
    for job_id in handed:
        log.warning("worker shutting down: job %s handed back to the queue", job_id)
        enqueue(job_id, settings)
    return handed


class PoolHeartbeat(threading.Thread):
    """Main process: :func:`beat_active` every ``heartbeat_interval`` until stopped."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="wedgenet-pool-heartbeat", daemon=True)
        self.settings = settings
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.settings.heartbeat_interval):
            try:
                beat_active(self.settings)
            except Exception as exc:  # a DB hiccup: the jobs' own heartbeats go on
                log.warning("pool heartbeat failed: %s", exc)

    def stop(self) -> None:
        self.stop_event.set()


_sweeper: Sweeper | None = None
_beat: PoolHeartbeat | None = None


@worker_ready.connect
def start_sweeper(**_: Any) -> None:
    global _sweeper, _beat
    settings = get_settings()
    _sweeper = Sweeper(settings, sweep=sweep)
    _sweeper.start()
    _beat = PoolHeartbeat(settings)
    _beat.start()
    log.info("wedgenet sweeper and pool heartbeat started")


@worker_shutdown.connect
def stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
    if _beat is not None:
        _beat.stop()


@worker_shutting_down.connect
def _on_shutting_down(how: str | None = None, **_: Any) -> None:
    """Warm shutdown: hand the running jobs back after ``shutdown_grace`` seconds (a job that
    finishes sooner is stored as usual); cold shutdown: at once. Runs in a thread (this is
    called from the signal handler; the main process goes on shutting down)."""
    settings = get_settings()
    delay = settings.shutdown_grace if how == "Warm" else 0.0

    def later() -> None:
        time.sleep(delay)
        try:
            hand_back_jobs(settings)
        except Exception as exc:  # the stale-heartbeat sweep re-queues them instead
            log.warning("could not hand back the running jobs: %s", exc)

    t = threading.Thread(target=later, name="wedgenet-hand-back", daemon=True)
    t.start()
    if delay == 0.0:
        t.join(5.0)


# ------------------------------------------------------------------ pool processes


def watch_parent(interval: float = 0.5) -> threading.Thread:
    """In a pool process: exit at once when the worker's main process is gone (the process
    was re-parented), so a killed worker leaves no pool process computing on. The job is
    recovered by the stale-heartbeat sweep (its heartbeat stops with the process)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(70)

    t = threading.Thread(target=watch, name="wedgenet-parent-watch", daemon=True)
    t.start()
    return t


@worker_process_init.connect
def _pool_process_init(**_: Any) -> None:
    watch_parent()
