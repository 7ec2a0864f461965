"""Helpers shared by the route modules (no routes here): error responses, upload parsing,
array downloads. Data access and domain checks are in :mod:`app.crud`."""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from fastapi import HTTPException, UploadFile

from app.core.config import Settings
from app.crud import NotFound, page
from app.uploads import UploadError, detect_format, parse_arrays, read_limited

__all__ = ["ERRORS", "FormatParam", "not_found", "npz_bytes", "page", "read_arrays",
           "safetensors_bytes"]

FormatParam = Literal["npy", "npz", "csv", "json", "safetensors"]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "not found (or owned by another key)"},
}


def not_found(what: str, ident: str) -> HTTPException:
    return NotFound(what, ident)


async def read_arrays(
    upload: UploadFile, fmt: str | None, settings: Settings, what: str
) -> dict[str, np.ndarray]:
    data = await read_limited(upload, settings.max_upload_bytes, what)
    if not data:
        raise UploadError(422, f"{what}: the uploaded file is empty")
    fmt = detect_format(upload.filename, fmt, data, what)
    return parse_arrays(data, fmt, settings, what)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})

