"""FastAPI application: ``uvicorn app.main:app``. OpenAPI at ``/docs`` and ``/openapi.json``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.routes import datasets, health, jobs, networks, ui, weights
from app.core.config import get_settings
from app.uploads import UploadError

log = logging.getLogger("wedgenet.api")


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Reject request bodies over ``max_upload_bytes`` (+ multipart slack) while streaming:
    a declared Content-Length over the limit is refused before reading; otherwise bytes are
    counted as they arrive and the request is aborted with 413 once the limit is passed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        limit = 2 * settings.max_upload_bytes + 1024 * 1024  # X and y in one multipart body
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _send_413(send, f"request body of {declared} bytes exceeds the "
                                    f"limit of {limit} bytes")
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if not started:
                await _send_413(send, str(exc))


async def _send_413(send: Send, message: str) -> None:
    resp = JSONResponse({"detail": message}, status_code=413)
    await resp({"type": "http"}, _noop_receive, send)  # type: ignore[arg-type]


async def _noop_receive() -> Message:  # pragma: no cover
    return {"type": "http.disconnect"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if settings.migrate_on_start:
        from app.db import migrate

        migrate(settings)
    sweeper = None
    if settings.api_sweeper:
        from app.jobs import Sweeper

        sweeper = Sweeper(settings)
        sweeper.start()
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.stop()


DESCRIPTION = """
Certifiably optimal, interpretable two-layer ReLU networks by convex optimization.

Upload a dataset (`POST /datasets`), submit a solve (`POST /jobs`, answered `202` with a
`Location`), poll `GET /jobs/{id}`, then read `GET /networks/{id}`: every hidden neuron with its
index set (the training samples whose hyperplane it is), closed-form formula, residual and output
weight, plus the primal objective, dual bound, relative gap and certificate.

Or upload trained weights (`POST /weights`, `W1, b1, ...` or a PyTorch `state_dict`) and submit
`{"kind": "polish", ...}`: each neuron is replaced by the hyperplane through its nearest training
samples and the output layer is refit, never worse than the upload; the network's `polish`
report gives the objective before and after, metrics and every neuron's index set and angle.

Objective: `f(x) = sum_j a_j relu(w_j . x + b_j) + c`, trained on
`L(f(X), y) + (lam/2) sum_j (||w_j||_p^2 + ||a_j||_2^2)`; biases are not regularized; squared
loss is `0.5 * sum_i (f(x_i) - y_i)^2` (summed, not averaged).

Every request except `/health` needs an `X-API-Key` header; a key sees only its own resources.
"""


def create_app() -> FastAPI:
    app = FastAPI(title="wedgenet", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    for module in (health, datasets, weights, jobs, networks):
        app.include_router(module.router)
    ui.install(app)  # the web page at /ui/ (app/ui), / redirects there
    app.add_middleware(BodySizeLimit)  # type: ignore[arg-type]
    return app


app = create_app()


