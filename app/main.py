"""FastAPI application: ``uvicorn app.main:app``. OpenAPI at ``/docs`` and ``/openapi.json``."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.routes import datasets, health, jobs, networks, ui, weights
from app.core.config import get_settings
from app.quotas import QuotaGuard
from app.uploads import UploadError, shutdown_parser_processes

log = logging.getLogger("wedgenet.api")

#: how much of a rejected input a 422 echoes back
_ECHO_DEPTH = 6
_ECHO_ITEMS = 20
_ECHO_CHARS = 500


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON that always serializes: non-finite floats as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``; strings with unpaired surrogates escaped
    (``"\\ud800"``); containers cut to a few levels and items, long strings to 500
    characters; anything else as its ``str``. Used for error bodies, which echo client input."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 256 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: _ECHO_CHARS * 4]).decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        if len(value) > _ECHO_CHARS:
            value = value[:_ECHO_CHARS] + "..."
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        if depth >= _ECHO_DEPTH:
            return "{...}"
        items = list(value.items())
        out = {str(json_safe(k, depth + 1)): json_safe(v, depth + 1)
               for k, v in items[:_ECHO_ITEMS]}
        if len(items) > _ECHO_ITEMS:
            out["..."] = f"{len(items) - _ECHO_ITEMS} more"
        return out
    if isinstance(value, list | tuple):
        if depth >= _ECHO_DEPTH:
            return "[...]"
        out_list = [json_safe(v, depth + 1) for v in value[:_ECHO_ITEMS]]
        if len(value) > _ECHO_ITEMS:
            out_list.append(f"... {len(value) - _ECHO_ITEMS} more")
        return out_list
    return json_safe(str(value), depth + 1)


class SafeJSONResponse(JSONResponse):
    """A JSON response whose rendering cannot fail (see :func:`json_safe`)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
            return super().render(json_safe(content))


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Reject request bodies over ``max_upload_bytes`` (+ multipart slack) while streaming:
    a declared Content-Length over the limit is refused before reading; otherwise bytes are
    counted as they arrive (chunked bodies too) and the request is answered 413 once the limit
    is passed, whatever the application made of the aborted body. The rest of the body is
    discarded by the server, so the connection stays usable."""

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
                    await _send_json(send, 413, f"request body of {declared} bytes exceeds the "
                                     f"limit of {limit} bytes")
                    return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the 413 below replaces what the app made of the cut-off body
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not exceeded:  # pragma: no cover - only counting_receive raises it
                raise
        if exceeded and not started:
            await _send_json(send, 413, f"request body exceeds the limit of {limit} bytes")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(scope: Scope) -> set[str]:
    """Every method some route of the application fully matches at ``scope``'s path (probed
    through the routes' public ``matches``, which included routers implement too); mounted
    static files (the web page) serve GET and HEAD."""
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", [])
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            if route.matches(scope)[0] != Match.NONE:
                methods |= {"GET", "HEAD"}
            continue
        methods |= {method for method in _METHODS
                    if route.matches({**scope, "method": method})[0] == Match.FULL}
    return methods


class RequestGuard:
    """Input no route should ever see, and HTTP plumbing the router lacks:

    * a NUL character in the path answers 404 (no resource has one; Postgres text cannot
      hold it), in the query string 422 (as a validation error of that parameter), in a
      header 400;
    * ``OPTIONS`` answers 204 with ``Allow`` listing every method the path supports (404 for
      an unknown path); a 405 lists them all in ``Allow`` too (the router names only the
      first matching route's methods)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await _send_json(send, 404, "not found: the path contains a NUL (0x00) character")
            return
        query = scope.get("query_string", b"")
        if b"\x00" in query or b"%00" in query:
            await _send_query_nul(send, query)
            return
        if any(b"\x00" in value for _, value in scope.get("headers", [])):
            await _send_json(send, 400, "a header contains a NUL (0x00) character")
            return
        if scope["method"] == "OPTIONS":
            methods = _allowed_methods(scope)
            if methods:
                allow = ", ".join(sorted(methods | {"OPTIONS"}))
                await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
                return

        original = dict(scope)  # routing updates the scope in place (mounts: root_path)

        async def allow_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = ", ".join(sorted(_allowed_methods(original) | {"OPTIONS"})).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        await self.app(scope, receive, allow_send)


async def _send_json(send: Send, status: int, message: str) -> None:
    resp = SafeJSONResponse({"detail": message}, status_code=status)
    await resp({"type": "http"}, _noop_receive, send)


async def _send_query_nul(send: Send, query: bytes) -> None:
    """422 in the shape of a validation error (what the OpenAPI schema documents)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    key, value = next(((k, v) for k, v in pairs if "\x00" in k + v), ("", ""))
    error = {"type": "value_error", "loc": ["query", key],
             "msg": "Value error, must not contain NUL (0x00) characters", "input": value}
    resp = SafeJSONResponse({"detail": json_safe([error])}, status_code=422)
    await resp({"type": "http"}, _noop_receive, send)


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
    # what was built while starting (modules, the app, numpy, the engine) lives as long as
    # the process: out of the collector's generations, so a full collection during a request
    # does not walk it (measured: a full collection of the ~157k objects took 36 ms, a
    # spike in the latency of whichever request triggered it)
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.stop()
        shutdown_parser_processes()
        gc.unfreeze()  # an application embedded in a longer-lived process (tests)


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
Each key has quotas (queued + running jobs, stored bytes, requests per second); a request over
one answers `429` with a `Retry-After` header.
"""


#: every operation may answer 429 (app/quotas.py)
QUOTA_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": "a quota or the request rate of the API key is exceeded; retry after "
          "the `Retry-After` header's seconds"}}


def create_app() -> FastAPI:
    app = FastAPI(title="wedgenet", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan, responses=QUOTA_RESPONSES)

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return SafeJSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return SafeJSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if not is_body_allowed_for_status_code(exc.status_code):
            return Response(status_code=exc.status_code, headers=headers)
        return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # the errors echo the client's input: NaN, unpaired surrogates, deep nesting, ...
        return SafeJSONResponse({"detail": json_safe(exc.errors())}, status_code=422)

    @app.exception_handler(DataError)
    async def _data_error(_: Request, exc: DataError) -> JSONResponse:
        # a value that passed validation but the database cannot hold or compare (Postgres:
        # NUL characters in text, numbers out of range, ...): the client's input, not a bug
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        log.warning("database refused a request value: %s", reason)
        return SafeJSONResponse({"detail": f"a value in the request cannot be stored or looked "
                                 f"up: {reason}"}, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_unavailable(_: Request, exc: DBAPIError) -> JSONResponse:
        # the database went away mid-request (a restart, a lost connection) or stayed
        # locked past its timeout: transient, and the pool reconnects for the next request
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        log.warning("database unavailable (connection invalidated: %s): %s",
                    exc.connection_invalidated, reason)
        return SafeJSONResponse({"detail": "the database is unavailable; retry shortly"},
                                status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(_: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # only client input (JSON "\ud800" escapes) holds unpaired surrogates
        log.warning("unencodable text in a request: %s", exc)
        return SafeJSONResponse({"detail": "a text value in the request is not valid Unicode "
                                 "(unpaired surrogate)"}, status_code=422)

    # jobs first: routes are matched in order, and job status is the most frequent request
    for module in (jobs, health, datasets, weights, networks):
        app.include_router(module.router)
    ui.install(app)  # the web page at /ui/ (app/ui), / redirects there
    app.add_middleware(QuotaGuard)  # type: ignore[arg-type]  # request rate, full storage
    app.add_middleware(BodySizeLimit)  # type: ignore[arg-type]
    app.add_middleware(RequestGuard)  # type: ignore[arg-type]
    return app


app = create_app()
