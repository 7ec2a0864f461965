"""Celery application. Broker from ``WEDGENET_BROKER_URL`` (Redis in production, Celery's
filesystem broker in the embedded default). No result backend: results live in SQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

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
