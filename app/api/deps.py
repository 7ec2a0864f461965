"""Annotated dependencies: settings, a database session, and the caller's owner id."""

from __future__ import annotations

import asyncio
import hmac
import weakref
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from app.core.config import Settings, get_settings, owner_of
from app.db import get_engine

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="API key; each key sees only its own resources")


_makers: dict[Engine, sessionmaker[Session]] = {}
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Engine, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary())


def _pool_capacity(engine: Engine) -> int | None:
    """How many connections the engine's pool hands out at most (None: no limit)."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        return max(1, pool.size() + max(0, int(getattr(pool, "_max_overflow", 0))))
    return None


def _slot(engine: Engine) -> asyncio.Semaphore | None:
    """This event loop's semaphore of request sessions for ``engine`` (pool-sized)."""
    capacity = _pool_capacity(engine)
    if capacity is None:
        return None
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    sem = per_loop.get(engine)
    if sem is None:
        sem = per_loop[engine] = asyncio.Semaphore(capacity)
    return sem


async def get_session() -> AsyncIterator[Session]:
    """A session per request, at most as many at once as the engine's pool has connections.

    The request waits for a slot in the event loop, not in a worker thread: otherwise, with
    more concurrent requests than connections, every worker thread could end up waiting for a
    connection held by a request whose response still needs a worker thread to be serialized
    (measured: 64 concurrent GET /jobs/{id} on SQLite, no response within 30 s). The session
    is closed (its connection returned) off the event loop when it holds one."""
    engine = get_engine(get_settings().database_url)
    maker = _makers.get(engine)
    if maker is None:
        maker = _makers[engine] = sessionmaker(bind=engine, expire_on_commit=False)
    slot = _slot(engine)
    if slot is not None:
        await slot.acquire()
    try:
        session = maker()
        try:
            yield session
        finally:
            if session.in_transaction():
                # closing rolls back on the connection (I/O): off the event loop, with a
                # limiter of its own so it never waits behind requests for a worker thread
                await anyio.to_thread.run_sync(session.close,
                                               limiter=anyio.CapacityLimiter(1))
            else:  # committed or never used: no connection is held, closing does no I/O
                session.close()
    finally:
        if slot is not None:
            slot.release()


@lru_cache(maxsize=8)
def _keys(api_keys: str, embedded: bool) -> tuple[tuple[bytes, str], ...]:
    """The accepted keys (bytes) with their owner ids, parsed and hashed once per setting."""
    keys = Settings.model_construct(api_keys=api_keys, embedded=embedded).api_key_list()
    return tuple((k.encode(), owner_of(k)) for k in keys)


def owner_for_key(settings: Settings, api_key: str) -> str | None:
    """The owner id of an accepted API key (compared in constant time), else None."""
    given = api_key.encode("utf-8", "surrogateescape")
    owner = None
    for key, key_owner in _keys(settings.api_keys, settings.embedded):
        if hmac.compare_digest(key, given):
            owner = key_owner
    return owner


async def current_settings() -> Settings:
    """The settings, as a dependency. ``async`` (it does no I/O): FastAPI runs synchronous
    dependencies in a worker thread, a thread hop per request for nothing."""
    return get_settings()


async def current_owner(
    settings: Annotated[Settings, Depends(current_settings)],
    api_key: Annotated[str | None, Security(api_key_header)] = None,
) -> str:
    if not api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header",
                            headers={"WWW-Authenticate": "APIKey"})
    owner = owner_for_key(settings, api_key)
    if owner is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key",
                            headers={"WWW-Authenticate": "APIKey"})
    return owner


SessionDep = Annotated[Session, Depends(get_session)]
OwnerDep = Annotated[str, Depends(current_owner)]
SettingsDep = Annotated[Settings, Depends(current_settings)]
