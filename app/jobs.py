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
import time
from collections.abc import Callable
from datetime import datetime, timedelta

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
    to_publish += _republish_lost(settings, now)
    broker_down = False
    for job_id in to_publish:
        log.info("sweeper re-publishing job %s", job_id)
        # once the broker failed, the rest wait for the next sweep (no retries per job)
        if broker_down or not publish(job_id):
            broker_down = True
            mark_unpublished(job_id, settings)
    return to_publish


#: without a view of the broker queue, a queued job's message is re-published only after this
#: long (and then at most once per this long), whatever ``queued_stale_after`` says
BLIND_REPUBLISH_AFTER = 120.0


#: a process spends at most this share of its time reading the broker queue (a backlog of
#: 10,000 waiting messages takes ~0.1-0.3 s to read: then at most every few seconds)
PEEK_SHARE = 0.05
_SKIPPED: set[str] = {"<skipped>"}
_last_peek = [0.0, 0.0]  # monotonic start, duration


def _peek(settings: Settings) -> set[str] | None:
    """:func:`app.broker.waiting_job_ids`, unless this process read the queue less than
    ``duration / PEEK_SHARE`` seconds ago (then :data:`_SKIPPED`)."""
    start, duration = _last_peek
    if time.monotonic() - start < duration / PEEK_SHARE:
        return _SKIPPED
    t0 = time.monotonic()
    waiting = broker.waiting_job_ids(settings)
    _last_peek[:] = [t0, time.monotonic() - t0]
    return waiting


def _republish_lost(settings: Settings, now: datetime) -> list[str]:
    """Queued jobs whose message was lost: never published (``enqueued_at`` NULL: publishing
    failed), or published more than ``queued_stale_after`` seconds ago and no longer waiting
    in the broker queue (taken by a worker that died before claiming the job). A job that
    merely waits behind busy workers still has its message in the queue and is left alone,
    so a backlog is never duplicated; each re-publication resets ``enqueued_at``, so a job
    gets at most one new message per ``queued_stale_after``. Marks them re-published
    (``enqueued_at = now``) and returns their ids; the caller publishes."""
    q_cut = now - timedelta(seconds=settings.queued_stale_after)
    old = or_(Job.enqueued_at.is_(None), Job.enqueued_at < q_cut)
    with session_scope(settings.database_url) as s:
        candidates = s.execute(
            select(Job.id, Job.enqueued_at).where(Job.state == "queued", old)
        ).all()
    if not candidates:
        return []
    waiting: set[str] | None = set()
    if any(at is not None for _, at in candidates):
        waiting = _peek(settings)
    if waiting is _SKIPPED:  # looked a moment ago: only the never-published ones now
        old = Job.enqueued_at.is_(None)
        waiting = set()
    elif waiting is None:  # cannot see the queue: only the never-published and the very old
        blind_cut = now - timedelta(seconds=max(settings.queued_stale_after,
                                                BLIND_REPUBLISH_AFTER))
        old = or_(Job.enqueued_at.is_(None), Job.enqueued_at < blind_cut)
        waiting = set()
    republished = []
    with session_scope(settings.database_url) as s:
        for job_id, _ in candidates:
            if job_id in waiting:
                continue
            res = s.execute(update(Job).where(Job.id == job_id, Job.state == "queued", old)
                            .values(enqueued_at=now))
            if res.rowcount:  # type: ignore[attr-defined]
                republished.append(job_id)
    return republished


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
