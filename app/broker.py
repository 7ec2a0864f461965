"""The broker seam between the API and the workers.

The API only *sends* messages, by task name, through a send-only Celery app (no task code, no
``worker`` import); the worker (``worker/celery_app.py``) consumes them. Both read the broker
and queue settings from :func:`celery_config`, so producer and consumer cannot drift apart.
Messages carry ids only; the database is the record of every job.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from celery import Celery

from app.core.config import Settings, get_settings

#: task names (the worker registers its tasks under these names)
RUN_JOB_TASK = "wedgenet.run_job"
PRICE_PART_TASK = "wedgenet.price_part"
#: the one queue every message goes to (workers consume it: ``celery worker -Q wedgenet``)
QUEUE = "wedgenet"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker, queue and serialization settings shared by the producer and the worker.

    No result backend: results live in SQL. The filesystem broker (embedded default) keeps
    its folders under ``WEDGENET_BROKER_DIR``; see :meth:`Settings.broker_transport_options`.
    """
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": settings.broker_transport_options(),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": QUEUE,
    }


def is_filesystem(settings: Settings) -> bool:
    return settings.broker_url.startswith("filesystem")


def prepare_broker(settings: Settings) -> None:
    """Create the filesystem broker's folders (a no-op for other brokers)."""
    options = settings.broker_transport_options()
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(str(options[key])).mkdir(parents=True, exist_ok=True)


_producers: dict[str, Celery] = {}
_producers_lock = threading.Lock()


def producer(settings: Settings | None = None) -> Celery:
    """The send-only Celery app for these settings' broker (one per broker configuration)."""
    settings = settings or get_settings()
    config = celery_config(settings)
    key = json.dumps(config, sort_keys=True, default=str)
    with _producers_lock:
        app = _producers.get(key)
        if app is None:
            prepare_broker(settings)
            app = Celery("wedgenet-producer", set_as_current=False)
            app.conf.update(config)
            _producers[key] = app
    return app


def send(task_name: str, args: list[Any], settings: Settings | None = None,
         retry_policy: dict[str, Any] | None = None) -> None:
    """Publish one message for ``task_name``; raises when the broker cannot be reached."""
    producer(settings).send_task(task_name, args=args, retry=retry_policy is not None,
                                 retry_policy=retry_policy)

