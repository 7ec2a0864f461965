"""Celery application. Broker from ``WEDGENET_BROKER_URL`` (Redis in production, Celery's
filesystem broker in the embedded default). No result backend: results live in SQL.

A worker started by ``celery worker`` (and so by ``wedgenet serve``) compiles or loads the
numerical kernels (:func:`wedgenet.warmup.warm_up`) in its main process before the pool starts,
so that no job pays for numba compilation; ``WEDGENET_WARMUP=false`` skips that.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

from app.core.config import get_settings

log = logging.getLogger("wedgenet.worker")


def make_celery() -> Celery:
    settings = get_settings()
    options = settings.broker_transport_options()
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)
    app = Celery("wedgenet", broker=settings.broker_url, include=["worker.tasks"])
    filesystem = settings.broker_url.startswith("filesystem")
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        # the filesystem transport has no fanout exchange for remote control/events
        worker_enable_remote_control=not filesystem,
        worker_send_task_events=False,
        task_default_queue="wedgenet",
    )
    return app


celery_app = make_celery()

_sweeper: Any = None


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


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    global _sweeper
    from app.jobs import Sweeper

    _sweeper = Sweeper()
    _sweeper.start()
    log.info("wedgenet sweeper started")


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()
