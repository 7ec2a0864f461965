"""Datasets: upload X and y, list, read metadata, download, delete."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS, FormatParam, not_found, npz_bytes, page
from app.core.config import Settings
from app.models import Dataset
from app.quotas import check_storage
from app.schemas import DatasetOut, DatasetRename, Page
from app.storage import delete_if_orphan, get_array, get_blob_bytes, put_array
from app.uploads import (
    UploadError,
    check_text,
    open_upload,
    pick_single,
    read_table,
    read_upload,
    run_upload,
    split_target,
    validate_dataset,
)

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=ERRORS)

def dataset_out(ds: Dataset) -> DatasetOut:
    return DatasetOut(
        id=ds.id, name=ds.name, content_hash=ds.content_hash, x_sha256=ds.x_sha256,
        y_sha256=ds.y_sha256, n=ds.n, d=ds.d, outputs=ds.outputs, x_dtype=ds.x_dtype,
        y_dtype=ds.y_dtype, created_at=ds.created_at,
        links={"self": f"/datasets/{ds.id}", "download": f"/datasets/{ds.id}/download"},
    )


def get_owned(session: SessionDep, owner: str, dataset_id: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None or ds.owner != owner:
        raise not_found("dataset", dataset_id)
    return ds


@router.post(
    "", status_code=201, response_model=DatasetOut,
    responses={200: {"model": DatasetOut, "description": "identical dataset already stored"},
               413: {"description": "upload too large"}, 415: {"description": "unknown format"},
               422: {"description": "malformed arrays"}},
)
async def upload_dataset(
    session: SessionDep, owner: OwnerDep, settings: SettingsDep,
    X: Annotated[UploadFile | None, File(description="inputs, shape (n, d)")] = None,
    y: Annotated[UploadFile | None, File(description="targets, shape (n,) or (n, c)")] = None,
    file: Annotated[UploadFile | None, File(
        description="one .npz/.safetensors/.json holding arrays X and y, or one table (CSV "
        "with an optional header row, 2-D .npy or .json) whose 'target' column is y")] = None,
    target: Annotated[str | None, Form(
        max_length=200, description="single-table uploads: the column that is y, by header "
        "name or index (default: the last column)")] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    x_format: Annotated[FormatParam | None, Form()] = None,
    y_format: Annotated[FormatParam | None, Form()] = None,
) -> DatasetOut | JSONResponse:
    """Upload a dataset as two files ``X`` and ``y``, one file holding both arrays, or one
    table (``file`` + ``target``, as the command line reads CSV files).

    Formats: ``.npy``, ``.npz``, ``.csv``, ``.json``, ``.safetensors`` (by extension, by the
    ``x_format``/``y_format`` fields, or sniffed). Arrays are validated (numeric, finite,
    rectangular, matching n) and stored as content-addressed ``.npy`` blobs. Uploading the
    same content again returns the existing dataset with 200 (its name is kept: a different
    ``name`` in the re-upload is not applied, and the response's ``name`` shows the stored
    one; rename with ``PATCH /datasets/{id}``). The files are parsed and stored in a worker
    thread: a big upload does not hold up other requests.
    """
    check_text(name, "name")
    check_text(target, "target")
    if target is not None and file is None:
        raise UploadError(422, "'target' names a column of a single-table 'file' upload")
    if file is not None:
        if X is not None or y is not None:
            raise UploadError(422, "send either 'file' or both 'X' and 'y', not both")
    elif X is None or y is None:
        raise UploadError(422, "both files 'X' and 'y' are required (or one 'file')")
    return await run_upload(settings, store_dataset, session, owner, settings, X, y, file, name,
                            x_format, y_format, target)


def store_dataset(
    session: Session, owner: str, settings: Settings, X: UploadFile | None,
    y: UploadFile | None, file: UploadFile | None, name: str | None, x_format: str | None,
    y_format: str | None, target: str | None = None,
) -> DatasetOut | JSONResponse:
    """Parse, validate and store an uploaded dataset (synchronous: runs in a worker thread)."""
    if file is not None and (target is not None or _is_table(file, x_format, settings)):
        table, names = read_table(file.file, file.filename, x_format, settings, "file")
        x_arr, y_arr = split_target(table, names, target, "file")
        del table
    elif file is not None:
        arrays = read_upload(file.file, file.filename, x_format, settings, "file")
        keys = {k.lower(): k for k in arrays}
        if "x" not in keys or "y" not in keys:
            raise UploadError(
                422, f"file must hold arrays named 'X' and 'y', or be one table with a "
                f"'target' column; found {sorted(arrays)[:8]}")
        x_arr, y_arr = arrays[keys["x"]], arrays[keys["y"]]
        del arrays
    else:
        assert X is not None and y is not None
        x_arr = pick_single(read_upload(X.file, X.filename, x_format, settings, "X"), "X")
        y_arr = pick_single(read_upload(y.file, y.filename, y_format, settings, "y"), "y")
    Xc, yc = validate_dataset(x_arr, y_arr)
    del x_arr, y_arr
    xb = put_array(session, Xc)
    yb = put_array(session, yc)
    content_hash = hashlib.sha256(f"{xb.sha256}:{yb.sha256}".encode()).hexdigest()
    existing = session.scalar(select(Dataset).where(Dataset.owner == owner,
                                                    Dataset.content_hash == content_hash))
    if existing is not None:
        session.commit()
        return JSONResponse(dataset_out(existing).model_dump(mode="json"), status_code=200)
    check_storage(session, owner, settings, (xb.sha256, yb.sha256))  # 429: nothing stored
    ds = Dataset(owner=owner, name=name, content_hash=content_hash, x_sha256=xb.sha256,
                 y_sha256=yb.sha256, n=int(Xc.shape[0]), d=int(Xc.shape[1]),
                 outputs=1 if yc.ndim == 1 else int(yc.shape[1]),
                 x_dtype=str(Xc.dtype), y_dtype=str(yc.dtype))
    session.add(ds)
    session.commit()
    return dataset_out(ds)


def _is_table(file: UploadFile, fmt: str | None, settings: Settings) -> bool:
    """A single-file upload in a one-table format (CSV): split by its target column."""
    kind, _ = open_upload(file.file, file.filename, fmt, settings, "file")
    return kind == "csv"


@router.get("", response_model=Page[DatasetOut])
def list_datasets(
    session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[DatasetOut]:
    q = select(Dataset).where(Dataset.owner == owner)
    total, rows = page(session, q, (Dataset.created_at.desc(), Dataset.id), limit, offset)
    return Page[DatasetOut](items=[dataset_out(r) for r in rows], total=total, limit=limit,
                            offset=offset)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> DatasetOut:
    return dataset_out(get_owned(session, owner, dataset_id))


@router.get(
    "/{dataset_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}},
                     "description": ".npy of one array, or .npz with X and y"}},
)
def download_dataset(
    dataset_id: str, session: SessionDep, owner: OwnerDep,
    array: Annotated[Literal["X", "y"] | None, Query(description="one array as .npy")] = None,
) -> Response:
    ds = get_owned(session, owner, dataset_id)
    if array is not None:
        data = get_blob_bytes(session, ds.x_sha256 if array == "X" else ds.y_sha256)
        name = f"{dataset_id}-{array}.npy"
    else:
        data = npz_bytes({"X": get_array(session, ds.x_sha256),
                          "y": get_array(session, ds.y_sha256)})
        name = f"{dataset_id}.npz"
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.patch("/{dataset_id}", response_model=DatasetOut)
def rename_dataset(dataset_id: str, body: DatasetRename, session: SessionDep,
                   owner: OwnerDep) -> DatasetOut:
    """Rename a dataset (uploading the same content again never renames it)."""
    check_text(body.name, "name")
    ds = get_owned(session, owner, dataset_id)
    ds.name = body.name
    session.commit()
    return dataset_out(ds)


@router.delete("/{dataset_id}", status_code=204, response_class=Response)
def delete_dataset(dataset_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    ds = get_owned(session, owner, dataset_id)
    from sqlalchemy import update

    from app.models import Job

    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.dataset_id == ds.id, Job.state.in_(("queued", "running"))))
    if active:
        raise HTTPException(409, f"dataset {dataset_id!r} has {active} queued or running jobs")
    blobs = [ds.x_sha256, ds.y_sha256]
    session.execute(update(Job).where(Job.dataset_id == ds.id).values(dataset_id=None))
    session.delete(ds)
    session.flush()
    delete_if_orphan(session, blobs)
    session.commit()
    return Response(status_code=204)


