"""Worker housekeeping: the periodic sweep every worker runs.

:func:`sweep` recovers lost jobs (:func:`app.jobs.recover_jobs`: stale running jobs are
re-queued, lost queued jobs re-published) and deletes the distributed-pricing rounds that a
dead coordinator left behind (:func:`sweep_pricing_rounds`). The sweeper thread starts when the
worker is ready (``worker_ready``) and stops with it (``worker_shutdown``); the handlers are
connected when ``worker/celery_app.py`` imports this module.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import delete, or_, select

from app.core.config import Settings, get_settings
from app.db import session_scope
from app.jobs import Sweeper, recover_jobs
from app.models import Job, PricingPart, PricingRound

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


_sweeper: Sweeper | None = None


@worker_ready.connect
def start_sweeper(**_: Any) -> None:
    global _sweeper
    _sweeper = Sweeper(get_settings(), sweep=sweep)
    _sweeper.start()
    log.info("wedgenet sweeper started")


@worker_shutdown.connect
def stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
