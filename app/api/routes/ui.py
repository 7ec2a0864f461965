"""The web page: static files of ``app/ui`` at ``/ui/``; ``/`` and ``/ui`` redirect there.

Plain HTML, CSS and ES modules, no build step and nothing fetched from outside at run time.
The page talks to the public API only (``X-API-Key`` kept in ``sessionStorage``); serving it
needs no key. See docs/ui.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

UI_DIR = Path(__file__).resolve().parent.parent.parent / "ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui")
def ui_no_slash() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=307)


class UIFiles(StaticFiles):
    """Static files that browsers revalidate on every load (``no-cache``), so a page opened
    after an upgrade never mixes old and new modules."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def install(app: FastAPI) -> None:
    """Register the redirects and mount the page on ``app``."""
    app.include_router(router)
    app.mount("/ui", UIFiles(directory=UI_DIR, html=True), name="ui")
