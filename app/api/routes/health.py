from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import SessionDep
from app.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(session: SessionDep) -> Health | JSONResponse:
    """Liveness and database reachability (no API key needed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("wedgenet")
    except PackageNotFoundError:
        ver = "0.1.0"
    try:
        session.execute(text("SELECT 1"))
        ok = True
    except Exception:
        ok = False
    body = Health(status="ok" if ok else "degraded", database=ok, version=ver)
    if not ok:
        return JSONResponse(body.model_dump(), status_code=503)
    return body
