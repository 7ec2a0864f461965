"""Job records and the queue contract: publishing by task name, and job recovery.

The database is the single record of every job; the broker only wakes workers. A job row is
committed before its message is published (:func:`publish`, by task name through
:mod:`app.broker`, so the API never imports the worker). :func:`recover_jobs` re-queues jobs
whose worker was lost and re-publishes jobs whose message was lost, so a SIGKILLed worker
loses nothing whichever broker is used. The :class:`Sweeper` thread runs it periodically in
the API process (``WEDGENET_API_SWEEPER``); every worker runs it too, with the worker's own
housekeeping (``worker/housekeeping.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from app import broker
from app.core.config import Settings, get_settings
from app.db import session_scope
from app.models import Job, utcnow

log = logging.getLogger("wedgenet.jobs")

TERMINAL = ("succeeded", "failed", "cancelled")

#: retries of one publish before giving up (the job stays queued; recovery re-publishes)
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def publish(job_id: str) -> bool:
    """Send the wake-up message for a job; failures are logged (the sweeper retries)."""
    try:
        broker.send(broker.RUN_JOB_TASK, [job_id], retry_policy=RETRY_POLICY)
        return True
    except Exception as exc:  # broker down: the job stays queued, the sweeper re-publishes
        log.warning("could not publish job %s: %s", job_id, exc)
        return False


def mark_unpublished(job_id: str, settings: Settings) -> None:
    with session_scope(settings.database_url) as s:
        s.execute(update(Job).where(Job.id == job_id, Job.state == "queued")
                  .values(enqueued_at=None))


def enqueue(job_id: str, settings: Settings) -> bool:
    """Publish a committed job; when that fails, mark it so the next sweep re-publishes it."""
    if publish(job_id):
        return True
    mark_unpublished(job_id, settings)
    return False


def recover_jobs(settings: Settings | None = None) -> list[str]:
    """Re-queue running jobs with a stale heartbeat and re-publish queued jobs that were not
    picked up; fail jobs that ran out of attempts. Returns the re-published job ids."""
    settings = settings or get_settings()
    now = utcnow()
    run_cut = now - timedelta(seconds=settings.stale_after)
    q_cut = now - timedelta(seconds=settings.queued_stale_after)
    to_publish: list[str] = []
    with session_scope(settings.database_url) as s:
        stale = s.execute(
            select(Job.id, Job.attempts).where(
                Job.state == "running",
                or_(Job.heartbeat_at < run_cut, Job.heartbeat_at.is_(None)),
            )
        ).all()
        for job_id, attempts in stale:
            cond = and_(Job.id == job_id, Job.state == "running",
                        or_(Job.heartbeat_at < run_cut, Job.heartbeat_at.is_(None)))
            if attempts >= settings.max_attempts:
                s.execute(update(Job).where(cond).values(
                    state="failed", finished_at=now, worker_id=None,
                    error_code="too_many_attempts",
                    error_message=f"the worker was lost {attempts} times; giving up",
                ))
                continue
            res = s.execute(update(Job).where(cond).values(
                state="queued", worker_id=None, enqueued_at=now,
                stage="re-queued after a lost worker heartbeat",
            ))
            if res.rowcount:  # type: ignore[attr-defined]
                to_publish.append(job_id)
        lost = s.execute(
            select(Job.id).where(
                Job.state == "queued",
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < q_cut),
            )
        ).scalars().all()
        for job_id in lost:
            res = s.execute(update(Job).where(
                Job.id == job_id, Job.state == "queued",
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < q_cut),
            ).values(enqueued_at=now))
            if res.rowcount:  # type: ignore[attr-defined]
                to_publish.append(job_id)
    for job_id in to_publish:
        log.info("sweeper re-publishing job %s", job_id)
        if not publish(job_id):
            mark_unpublished(job_id, settings)
    return to_publish


class Sweeper(threading.Thread):
    """Runs ``sweep(settings)`` every ``sweep_interval`` seconds until stopped; by default
    :func:`recover_jobs` (what the API process needs; workers pass their fuller sweep)."""

    def __init__(self, settings: Settings | None = None,
                 sweep: Callable[[Settings], object] | None = None) -> None:
        super().__init__(name="wedgenet-sweeper", daemon=True)
        self.settings = settings or get_settings()
        self.sweep = sweep or recover_jobs
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.sweep_interval):
            try:
                self.sweep(self.settings)
            except Exception as exc:  # keep sweeping through transient DB/broker errors
                log.warning("sweep failed: %s", exc)

    def stop(self) -> None:
        self._stop_event.set()
