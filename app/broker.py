"""The broker seam between the API and the workers.

The API only *sends* messages, by task name, through a send-only Celery app (no task code, no
``worker`` import); the worker (``worker/celery_app.py``) consumes them. Both read the broker
and queue settings from :func:`celery_config`, so producer and consumer cannot drift apart.
Messages carry ids only; the database is the record of every job.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import filesystem as kombu_filesystem
from kombu.utils.json import dumps as kombu_dumps

from app.core.config import Settings, get_settings

log = logging.getLogger("wedgenet.broker")

#: task names (the worker registers its tasks under these names)
RUN_JOB_TASK = "wedgenet.run_job"
PRICE_PART_TASK = "wedgenet.price_part"
#: the one queue every message goes to (workers consume it: ``celery worker -Q wedgenet``)
QUEUE = "wedgenet"


#: digits of the microsecond timestamp that starts a message's file name (enough until 5138)
TIME_DIGITS = 17


class FilesystemChannel(kombu_filesystem.Channel):
    """kombu's filesystem channel with an atomic publish.

    kombu writes a message straight into its final ``<time>_<uuid>.<queue>.msg`` file, so a
    consumer listing the folder between the file's creation and its write takes an empty
    message (its read takes no lock) and the worker's consumer dies on the JSON error. Here
    the message is written under a name no consumer reads (``... .msg.part``) and renamed into
    place: a consumer sees a whole message or none. A message that still cannot be decoded
    (written by another program, or a disk error) is logged and dropped instead of stopping
    the worker; its job is still queued in the database, and the recovery sweep re-publishes
    it (see :func:`waiting_job_ids`).
    """

    # kombu names the argument `payload` here and `message` in its base class
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # consumers take messages in the order of their names: a zero-padded wall-clock time
        # keeps that order across a digit boundary and a reboot (kombu's own names, unpadded
        # monotonic milliseconds, keep it across neither)
        name = f"{time.time_ns() // 1000:0{TIME_DIGITS}d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        try:
            with open(partial, "wb") as f:
                f.write(kombu_dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        while True:  # each failed message is gone from the folder: this ends
            try:
                return super()._get(queue)
            except ValueError as exc:
                log.error("dropped an unreadable message from the %r queue (%s); the "
                          "recovery sweep re-publishes its job", queue, exc)


class FilesystemTransport(kombu_filesystem.Transport):
    """kombu's filesystem transport with :class:`FilesystemChannel` (atomic publish)."""

    Channel = FilesystemChannel


#: the URL scheme under which kombu finds :class:`FilesystemTransport`; ``filesystem://`` in
#: the settings is translated to it by :func:`celery_config` (kombu's own alias is left alone)
FILESYSTEM_SCHEME = "wedgenet-filesystem"
TRANSPORT_ALIASES.setdefault(FILESYSTEM_SCHEME, f"{__name__}:FilesystemTransport")


def kombu_broker_url(settings: Settings) -> str:
    """The broker URL given to Celery: ``filesystem://`` names :class:`FilesystemTransport`."""
    if is_filesystem(settings):
        return FILESYSTEM_SCHEME + settings.broker_url[len("filesystem"):]
    return settings.broker_url


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker, queue and serialization settings shared by the producer and the worker.

    No result backend: results live in SQL. The filesystem broker (embedded default) keeps
    its folders under ``WEDGENET_BROKER_DIR``; see :meth:`Settings.broker_transport_options`.
    """
    return {
        "broker_url": kombu_broker_url(settings),
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



#: most messages :func:`waiting_job_ids` reads; with a longer queue it says it cannot tell
PEEK_LIMIT = 20_000
#: kombu's Redis transport keeps priority levels in separate lists ``<queue><sep><pri>``
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


def waiting_job_ids(settings: Settings, limit: int = PEEK_LIMIT) -> set[str] | None:
    """Ids of the jobs whose ``run_job`` message is waiting in the broker queue (published,
    not yet taken by a worker), read without consuming anything; ``None`` when that cannot be
    told (another broker, a broker error, more than ``limit`` messages waiting).

    The recovery sweep (:func:`app.jobs.recover_jobs`) re-publishes a long-queued job only
    when its message is not waiting here: a job that merely waits behind busy workers keeps
    its one message. A message a worker has taken is either claimed within moments (workers
    prefetch only what they run) or was lost with that worker."""
    waiting = waiting_run_jobs(settings, limit)
    return None if waiting is None else set(waiting)


def waiting_run_jobs(settings: Settings, limit: int = PEEK_LIMIT) -> list[str] | None:
    """The job id of every waiting ``run_job`` message, duplicates included (see
    :func:`waiting_job_ids`)."""
    try:
        if is_filesystem(settings):
            raw = _filesystem_messages(settings, limit)
        elif settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
            raw = _redis_messages(settings, limit)
        else:
            return None
    except Exception as exc:  # the broker is down or unreadable: the caller falls back
        log.warning("could not inspect the broker queue: %s", exc)
        return None
    if raw is None:
        return None
    return [job_id for job_id in map(_run_job_id, raw) if job_id is not None]


def _filesystem_messages(settings: Settings, limit: int) -> list[bytes] | None:
    folder = Path(str(settings.broker_transport_options()["data_folder_in"]))
    suffix = f".{QUEUE}.msg"
    try:
        names = [n for n in os.listdir(folder) if n.endswith(suffix)]
    except FileNotFoundError:
        return []
    if len(names) > limit:
        return None
    out = []
    for name in names:
        try:
            out.append((folder / name).read_bytes())
        except OSError:  # taken by a worker meanwhile
            continue
    return out


def _redis_messages(settings: Settings, limit: int) -> list[bytes] | None:
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5,
                                  socket_connect_timeout=5)
    try:
        keys = [QUEUE if pri == 0 else f"{QUEUE}{_REDIS_PRIORITY_SEP}{pri}"
                for pri in _REDIS_PRIORITY_STEPS]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        if sum(int(n) for n in pipe.execute()) > limit:
            return None
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.lrange(key, 0, limit)
        return [m for chunk in pipe.execute() for m in chunk]
    finally:
        client.close()


_TASK_HEADER = f'"task": "{RUN_JOB_TASK}"'.encode()
_ARGSREPR = re.compile(rb'"argsrepr": "\[\'([0-9a-f]{32})\'\]"')


def _run_job_id(raw: bytes) -> str | None:
    """The job id of a ``run_job`` message in kombu's JSON envelope, else None."""
    if _TASK_HEADER in raw:  # fast path (6x): the headers as Celery writes them
        found = _ARGSREPR.search(raw)
        if found is not None:
            return found.group(1).decode()
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != RUN_JOB_TASK:
            return None
        body: Any = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0] if isinstance(body, str | bytes) else body[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None

