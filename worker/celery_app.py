"""Celery application. Broker from ``WEDGENET_BROKER_URL`` (Redis in production, Celery's
filesystem broker in the embedded default), with the broker and queue settings of
:mod:`app.broker` (the API publishes by task name through it). No result backend: results
live in SQL. Housekeeping (the sweeper thread) is in :mod:`worker.housekeeping`.

A worker started by ``celery worker`` (and so by ``wedgenet serve``) compiles or loads the
numerical kernels (:func:`wedgenet.warmup.warm_up`) in its main process before the pool starts,
so that no job pays for numba compilation; ``WEDGENET_WARMUP=false`` skips that.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup

from app.broker import celery_config, is_filesystem, prepare_broker
from app.core.config import get_settings
from worker import housekeeping  # noqa: F401  (connects the sweeper's start/stop handlers)

log = logging.getLogger("wedgenet.worker")


def make_celery() -> Celery:
    """The worker's Celery app: the broker and queue settings the API's producer uses
    (:func:`app.broker.celery_config`) plus how this worker executes tasks."""
    settings = get_settings()
    prepare_broker(settings)
    app = Celery("wedgenet", include=["worker.tasks"])
    app.conf.update(
        celery_config(settings),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        # the filesystem transport has no fanout exchange for remote control/events
        worker_enable_remote_control=not is_filesystem(settings),
        worker_send_task_events=False,
    )
    return app


celery_app = make_celery()


def warmup_enabled() -> bool:
    """``WEDGENET_WARMUP`` (default true): warm the numerical kernels up at worker start."""
    return os.environ.get("WEDGENET_WARMUP", "true").strip().lower() not in (
        "0", "false", "no", "off")


@celeryd_after_setup.connect
def _warm_up_kernels(**_: Any) -> None:
    """Compile (first start) or load (later starts) the numerical kernels before any job.

    ``celeryd_after_setup`` runs in the worker's main process after logging is set up and
    before the pool starts and the consumer takes jobs. Prefork pool processes are forked
    from this process afterwards and inherit the compiled kernels (and the imported
    solvers), so neither the first job of a fresh worker nor a replaced pool process
    compiles anything; the compiled code is also in numba's on-disk cache, which makes the
    next worker start fast. A failure is logged and the worker starts anyway (jobs then
    compile what they need on first use).
    """
    if not warmup_enabled():
        return
    from wedgenet.warmup import kernel_stats, warm_up

    log.info("compiling numerical kernels (first start only)...")
    try:
        seconds = warm_up()
    except Exception:
        log.exception("warm-up of the numerical kernels failed; jobs compile them on first use")
        return
    stats = kernel_stats()
    cache = ", ".join(stats.cache_dirs) or "no cache"
    if stats.compiled:
        log.info("numerical kernels compiled in %.1f s (%d signatures), cached in %s",
                 seconds, stats.compiled, cache)
    else:
        log.info("numerical kernels ready in %.1f s (loaded from the cache in %s)",
                 seconds, cache)

