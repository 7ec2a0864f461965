"""Per-key quotas: active jobs, stored bytes and request rate, answered ``429`` + ``Retry-After``.

Three limits per API key (each disabled by setting it to 0), checked before any work is done:

* **request rate** (``WEDGENET_RATE_LIMIT`` requests per second on average, bursts of
  ``WEDGENET_RATE_BURST``): a token bucket (GCRA) per key, checked by the :class:`QuotaGuard`
  middleware before the request body is read. The buckets live in the API process when the
  broker is the filesystem (the embedded server: one process), and in Redis when the broker is
  Redis (one atomic script per request, so every API process shares one bucket per key; if
  Redis cannot be reached the limit is not enforced and a warning is logged);
* **stored bytes** (``WEDGENET_QUOTA_STORAGE_BYTES``): the arrays of the key's datasets and
  weight sets, each distinct blob counted once. ``POST /datasets`` and ``POST /weights`` are
  refused by the middleware, before the body is read, when the key is at its quota already;
  an upload that would take it over is refused after parsing, before anything is stored
  (:func:`check_storage`);
* **active jobs** (``WEDGENET_QUOTA_ACTIVE_JOBS``): queued plus running jobs of the key, checked
  by ``crud.create_job`` before the job's inputs are even looked up (:func:`check_active_jobs`).

The job and storage counts are read without locking: concurrent requests at the limit may
overshoot it by what they bring themselves (one job, one upload each).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import anyio
from fastapi import HTTPException
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import owner_for_key
from app.core.config import Settings, get_settings
from app.db import session_factory
from app.models import Blob, Dataset, Job, WeightSet

log = logging.getLogger("wedgenet.quotas")

#: Retry-After (seconds) of a refused job: slots free up as jobs finish
JOBS_RETRY_AFTER = 5
#: Retry-After (seconds) of a refused upload: space frees up only when the key deletes data
STORAGE_RETRY_AFTER = 60
#: the upload routes the storage pre-check guards
UPLOAD_PATHS = ("/datasets", "/weights")
#: never limited (liveness checks must always answer)
EXEMPT_PATHS = ("/health",)


class QuotaExceeded(HTTPException):
    """429 with a ``Retry-After`` header (whole seconds, at least 1)."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(429, detail,
                         headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


# ------------------------------------------------------------------------------ jobs


def active_jobs(session: Session, owner: str, at_most: int | None = None) -> int:
    """The key's queued and running jobs, counted up to ``at_most`` (the index on
    ``(state, heartbeat_at)`` finds the few active rows; the limit bounds the work)."""
    rows = select(Job.id).where(Job.owner == owner, Job.state.in_(("queued", "running")))
    if at_most is not None:
        rows = rows.limit(at_most)
    return int(session.scalar(select(func.count()).select_from(rows.subquery())) or 0)


def check_active_jobs(session: Session, owner: str, settings: Settings) -> None:
    """Raise :class:`QuotaExceeded` when the key has ``quota_active_jobs`` queued or running
    jobs already (a no-op when the quota is 0)."""
    limit = settings.quota_active_jobs
    if limit <= 0:
        return
    n = active_jobs(session, owner, at_most=limit)
    if n >= limit:
        raise QuotaExceeded(
            f"this API key has {n} queued or running jobs, its quota is {limit} "
            "(WEDGENET_QUOTA_ACTIVE_JOBS): wait for some to finish or cancel some",
            JOBS_RETRY_AFTER)


# --------------------------------------------------------------------------- storage


def owner_blobs(session: Session, owner: str) -> set[str]:
    """The sha256 of every blob the key's datasets and weight sets refer to."""
    shas: set[str] = set()
    for x, y in session.execute(select(Dataset.x_sha256, Dataset.y_sha256)
                                .where(Dataset.owner == owner)):
        shas.update((x, y))
    for pairs in session.scalars(select(WeightSet.layer_blobs).where(WeightSet.owner == owner)):
        shas.update(sha for pair in pairs for sha in pair)
    return shas


def blob_bytes(session: Session, shas: Iterable[str]) -> int:
    """Total ``.npy`` size of these blobs (each counted once)."""
    todo = sorted(set(shas))
    total = 0
    for i in range(0, len(todo), 500):
        total += int(session.scalar(select(func.coalesce(func.sum(Blob.nbytes), 0))
                                    .where(Blob.sha256.in_(todo[i:i + 500]))) or 0)
    return total


def storage_used(session: Session, owner: str) -> int:
    """Bytes of arrays the key stores (datasets and weight sets, distinct blobs)."""
    return blob_bytes(session, owner_blobs(session, owner))


def _over_storage(used: int, limit: int) -> str:
    return (f"this API key stores {used} bytes of datasets and weight sets, its quota is "
            f"{limit} bytes (WEDGENET_QUOTA_STORAGE_BYTES): delete datasets or weight sets "
            "first")


def check_storage(session: Session, owner: str, settings: Settings,
                  new_blobs: Iterable[str]) -> None:
    """Raise :class:`QuotaExceeded` when the key's stored bytes together with ``new_blobs``
    (blobs of an upload, added to the session but not committed; ones the key has already
    count once) exceed ``quota_storage_bytes``. Nothing of the upload is stored then (the
    session is not committed)."""
    limit = settings.quota_storage_bytes
    if limit <= 0:
        return
    used = blob_bytes(session, owner_blobs(session, owner) | set(new_blobs))
    if used > limit:
        raise QuotaExceeded(_over_storage(used, limit) + " (or upload less)",
                            STORAGE_RETRY_AFTER)


def _storage_full(owner: str, settings: Settings) -> int | None:
    """The key's stored bytes when they reach its quota, else None (for the pre-check)."""
    session = session_factory(settings.database_url)()
    try:
        used = storage_used(session, owner)
    finally:
        session.close()
    return used if used >= settings.quota_storage_bytes else None


# ------------------------------------------------------------------------------ rate


class MemoryBuckets:
    """Token buckets of this process (GCRA: one "theoretical arrival time" per key)."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    async def acquire(self, key: str, rate: float, burst: int) -> float:
        """Take a token; returns 0 when granted, else the seconds until one is available."""
        interval = 1.0 / rate
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, now), now)
            new_tat = tat + interval
            wait = new_tat - burst * interval - now
            if wait > 0:
                return wait
            self._tat[key] = new_tat
            return 0.0


#: the same GCRA in Redis, atomic: KEYS[1] the key's bucket, ARGV rate and burst
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = 1 / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tonumber(ARGV[2]) * interval - now
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""


class RedisBuckets:
    """Token buckets in Redis, shared by every API process on the same Redis. Fails open:
    while Redis cannot be reached every request is let through (a warning every minute)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary())
        self._warned = 0.0

    def _script(self) -> Any:
        loop = asyncio.get_running_loop()
        script = self._clients.get(loop)
        if script is None:  # redis.asyncio connections belong to one event loop
            import redis.asyncio as aredis

            client = aredis.Redis.from_url(self.url, socket_timeout=1.0,
                                           socket_connect_timeout=1.0)
            script = client.register_script(_GCRA)
            self._clients[loop] = script
        return script

    async def acquire(self, key: str, rate: float, burst: int) -> float:
        try:
            wait = await self._script()(keys=[f"wedgenet:rate:{key}"], args=[rate, burst])
            return float(wait)
        except Exception as exc:
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate limit not enforced: Redis at %s failed: %s", self.url, exc)
            return 0.0


_redis_buckets: dict[str, RedisBuckets] = {}
_redis_lock = threading.Lock()


def redis_buckets(url: str) -> RedisBuckets:
    """The shared buckets in the Redis at ``url`` (one client set per URL and event loop)."""
    with _redis_lock:
        b = _redis_buckets.get(url)
        if b is None:
            b = _redis_buckets[url] = RedisBuckets(url)
    return b


# ------------------------------------------------------------------------ middleware


class QuotaGuard:
    """ASGI middleware: the per-key request rate, and the storage quota of uploads, checked
    before the application reads the request body. Requests without a valid key pass through
    (the route answers 401)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.memory = MemoryBuckets()  # this application's buckets (filesystem broker)

    def buckets(self, settings: Settings) -> MemoryBuckets | RedisBuckets:
        """Redis buckets when the broker is Redis (shared by every API process), else this
        process's."""
        if settings.broker_url.startswith(("redis://", "rediss://")):
            return redis_buckets(settings.broker_url)
        return self.memory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        owner = None
        if settings.rate_limit > 0 or settings.quota_storage_bytes > 0:
            key = next((v for k, v in scope.get("headers", []) if k == b"x-api-key"), None)
            owner = owner_for_key(settings, key.decode("latin-1")) if key else None
        if owner is not None:
            refusal = await self._refusal(scope, owner, settings)
            if refusal is not None:
                await JSONResponse({"detail": refusal.detail}, status_code=429,
                                   headers=refusal.headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope, owner: str,
                       settings: Settings) -> QuotaExceeded | None:
        if settings.rate_limit > 0:
            wait = await self.buckets(settings).acquire(owner, settings.rate_limit,
                                                   settings.rate_burst)
            if wait > 0:
                return QuotaExceeded(
                    f"rate limit: this API key may make {settings.rate_limit:g} requests per "
                    f"second (bursts of {settings.rate_burst}; WEDGENET_RATE_LIMIT, "
                    "WEDGENET_RATE_BURST)", wait)
        if (settings.quota_storage_bytes > 0 and scope["method"] == "POST"
                and scope["path"].rstrip("/") in UPLOAD_PATHS):
            used = await anyio.to_thread.run_sync(_storage_full, owner, settings)
            if used is not None:
                return QuotaExceeded(_over_storage(used, settings.quota_storage_bytes),
                                     STORAGE_RETRY_AFTER)
        return None
