"""Job records: creation, publishing to the broker, the stale-job sweeper, serialization.

The database is the single record of every job; the broker only wakes workers. A job row is
committed before its message is published; the sweeper re-publishes jobs whose message or
worker was lost, so a SIGKILLed worker loses nothing whichever broker is used.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, update

from app.core.config import Settings, get_settings
from app.db import session_scope
from app.models import Job, PricingPart, PricingRound, utcnow

log = logging.getLogger("wedgenet.jobs")

TASK_NAME = "wedgenet.run_job"
TERMINAL = ("succeeded", "failed", "cancelled")


def publish(job_id: str) -> bool:
    """Send the wake-up message for a job; failures are logged (the sweeper retries)."""
    from worker.celery_app import celery_app

    try:
        celery_app.send_task(
            TASK_NAME, args=[job_id], retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        return True
    except Exception as exc:  # broker down: the job stays queued, the sweeper re-publishes
        log.warning("could not publish job %s: %s", job_id, exc)
        return False


def mark_unpublished(job_id: str, settings: Settings) -> None:
    with session_scope(settings.database_url) as s:
        s.execute(update(Job).where(Job.id == job_id, Job.state == "queued")
                  .values(enqueued_at=None))


def sweep(settings: Settings | None = None) -> list[str]:
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
    sweep_pricing_rounds(settings)
    return to_publish


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


class Sweeper(threading.Thread):
    """Runs :func:`sweep` every ``sweep_interval`` seconds until stopped."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(name="wedgenet-sweeper", daemon=True)
        self.settings = settings or get_settings()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.settings.sweep_interval):
            try:
                sweep(self.settings)
            except Exception as exc:  # keep sweeping through transient DB/broker errors
                log.warning("sweep failed: %s", exc)

    def stop(self) -> None:
        self._stop_event.set()
