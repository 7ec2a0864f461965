"""Content-addressed array blobs: canonical ``.npy`` bytes stored in the database."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from sqlalchemy.orm import Session

from app.models import Blob


def to_npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def from_npy_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def put_array(session: Session, arr: np.ndarray) -> Blob:
    """Store ``arr`` (deduplicated by the sha256 of its ``.npy`` bytes) and return its blob."""
    data = to_npy_bytes(arr)
    sha = hashlib.sha256(data).hexdigest()
    blob = session.get(Blob, sha)
    if blob is None:
        blob = Blob(sha256=sha, dtype=str(arr.dtype), shape=list(arr.shape), nbytes=len(data),
                    data=data)
        session.add(blob)
        session.flush()
    return blob


def get_array(session: Session, sha256: str) -> np.ndarray:
    blob = session.get(Blob, sha256)
    if blob is None:
        raise KeyError(sha256)
    return from_npy_bytes(blob.data)


def get_blob_bytes(session: Session, sha256: str) -> bytes:
    blob = session.get(Blob, sha256)
    if blob is None:
        raise KeyError(sha256)
    return blob.data


def delete_if_orphan(session: Session, sha256s: list[str]) -> None:
    """Delete blobs no dataset or weight set refers to any more."""
    from sqlalchemy import or_, select

    from app.models import Dataset, WeightSet

    for sha in set(sha256s):
        used = session.scalar(
            select(Dataset.id).where(or_(Dataset.x_sha256 == sha, Dataset.y_sha256 == sha))
            .limit(1)
        )
        if used is not None:
            continue
        ws_used = False
        for (layers,) in session.execute(select(WeightSet.layer_blobs)):
            if any(sha in pair for pair in layers):
                ws_used = True
                break
        if not ws_used:
            blob = session.get(Blob, sha)
            if blob is not None:
                session.delete(blob)
