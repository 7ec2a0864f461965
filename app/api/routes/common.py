"""Helpers shared by the route modules (no routes here): error responses and
array downloads. Data access and domain checks are in :mod:`app.crud`."""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from fastapi import HTTPException

from app.crud import NotFound, page

__all__ = ["ERRORS", "FormatParam", "not_found", "npz_bytes", "page",
           "safetensors_bytes"]

FormatParam = Literal["npy", "npz", "csv", "json", "safetensors"]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    404: {"description": "not found (or owned by another key)"},
}


def not_found(what: str, ident: str) -> HTTPException:
    return NotFound(what, ident)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})

