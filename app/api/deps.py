"""Annotated dependencies: settings, a database session, and the caller's owner id."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings, owner_of
from app.db import session_factory

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="API key; each key sees only its own resources")


def get_session() -> Iterator[Session]:
    session = session_factory()()
    try:
        yield session
    finally:
        session.close()


def current_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    api_key: Annotated[str | None, Security(api_key_header)] = None,
) -> str:
    if not api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header",
                            headers={"WWW-Authenticate": "APIKey"})
    for key in settings.api_key_list():
        if hmac.compare_digest(key.encode(), api_key.encode()):
            return owner_of(key)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key",
                        headers={"WWW-Authenticate": "APIKey"})


SessionDep = Annotated[Session, Depends(get_session)]
OwnerDep = Annotated[str, Depends(current_owner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
