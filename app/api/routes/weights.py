"""Weight sets: trained networks as a list of layers (W, b), stored for later polishing."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS, FormatParam, not_found, npz_bytes, page
from app.api.routes.datasets import get_owned as get_owned_dataset
from app.core.config import Settings
from app.models import Job, WeightSet
from app.quotas import check_storage
from app.schemas import LayerShape, Page, WeightSetOut
from app.storage import delete_if_orphan, get_array, put_array
from app.uploads import (
    UploadError,
    check_text,
    read_layers,
    read_upload,
    run_upload,
    validate_layers,
)

router = APIRouter(prefix="/weights", tags=["weights"], responses=ERRORS)

def weights_out(ws: WeightSet) -> WeightSetOut:
    return WeightSetOut(
        id=ws.id, name=ws.name, dataset_id=ws.dataset_id, content_hash=ws.content_hash,
        n_layers=len(ws.shapes), layers=[LayerShape(d_in=a, d_out=b) for a, b in ws.shapes],
        created_at=ws.created_at,
    )


def get_owned(session: SessionDep, owner: str, weight_set_id: str) -> WeightSet:
    ws = session.get(WeightSet, weight_set_id)
    if ws is None or ws.owner != owner:
        raise not_found("weight set", weight_set_id)
    return ws


@router.post("", status_code=201, response_model=WeightSetOut,
             responses={413: {"description": "upload too large"},
                        415: {"description": "unknown format"},
                        422: {"description": "malformed weights or wrong layer shapes"}})
async def upload_weights(
    session: SessionDep, owner: OwnerDep, settings: SettingsDep,
    file: Annotated[UploadFile | None, File(
        description=".npz/.safetensors/.json with W1, b1, W2, b2, ... (W_i of shape (d_in, "
        "d_out)), or with PyTorch state_dict names 0.weight, 0.bias, 2.weight, ... (weights "
        "of shape (out, in), transposed on upload), or .json "
        '{"layers": [{"W": ..., "b": ...}]} with W of shape (d_in, d_out)')] = None,
    W: Annotated[list[UploadFile] | None, File(description="one file per layer, in order")] = None,
    b: Annotated[list[UploadFile] | None, File(description="one bias file per layer")] = None,
    dataset_id: Annotated[str | None, Form(max_length=64)] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
    format: Annotated[FormatParam | None, Form()] = None,
    layer_names: Annotated[str | None, Form(
        max_length=2000,
        description="state_dict uploads: comma-separated layer prefixes in forward order, "
        "for names that do not tell the order (e.g. 'hidden,out')")] = None,
) -> WeightSetOut:
    """Upload trained weights; layer shapes must chain, and the first layer's input size must
    equal the dataset's ``d`` when ``dataset_id`` is given. Stored (and downloaded) as
    ``W1, b1, W2, b2, ...`` in (d_in, d_out) layout whatever the upload's naming. Parsed and
    stored in a worker thread."""
    for value, field in ((dataset_id, "dataset_id"), (name, "name"), (layer_names, "layer_names")):
        check_text(value, field)
    order = [p.strip() for p in layer_names.split(",") if p.strip()] if layer_names else None
    if file is not None:
        if W or b:
            raise UploadError(422, "send either 'file' or per-layer 'W'/'b' files, not both")
    else:
        if not W or not b:
            raise UploadError(422, "weights required: 'file', or per-layer files 'W' and 'b'")
        if order:
            raise UploadError(422, "layer_names applies to a state_dict 'file', not to "
                              "per-layer 'W'/'b' files (which are in order already)")
        if len(W) != len(b):
            raise UploadError(422, f"{len(W)} W files but {len(b)} b files")
        if len(W) > settings.max_layers:
            raise UploadError(422, f"{len(W)} layers exceed the limit of {settings.max_layers}")
    return await run_upload(settings, store_weights, session, owner, settings, file, W, b,
                            dataset_id, name, format, order)


def store_weights(
    session: Session, owner: str, settings: Settings, file: UploadFile | None,
    W: list[UploadFile] | None, b: list[UploadFile] | None, dataset_id: str | None,
    name: str | None, format: str | None, order: list[str] | None,
) -> WeightSetOut:
    """Parse, validate and store uploaded weights (synchronous: runs in a worker thread)."""
    d = None
    if dataset_id:
        d = get_owned_dataset(session, owner, dataset_id).d
    if file is not None:
        layers = read_layers(file.file, file.filename, format, settings, "file", order)
    else:
        assert W is not None and b is not None
        layers = []
        for i, (wf, bf) in enumerate(zip(W, b, strict=True)):
            wa = read_upload(wf.file, wf.filename, format, settings, f"W[{i}]")
            ba = read_upload(bf.file, bf.filename, format, settings, f"b[{i}]")
            if len(wa) != 1 or len(ba) != 1:
                raise UploadError(422, f"layer {i + 1}: each W/b file must hold one array")
            layers.append((next(iter(wa.values())), next(iter(ba.values()))))
    checked = validate_layers(layers, settings, d)
    pairs = []
    for Wl, bl in checked:
        pairs.append([put_array(session, Wl).sha256, put_array(session, bl).sha256])
    content_hash = hashlib.sha256("|".join(":".join(p) for p in pairs).encode()).hexdigest()
    check_storage(session, owner, settings, [sha for p in pairs for sha in p])  # 429: no rows
    ws = WeightSet(owner=owner, name=name, dataset_id=dataset_id or None,
                   content_hash=content_hash, layer_blobs=pairs,
                   shapes=[[int(Wl.shape[0]), int(Wl.shape[1])] for Wl, _ in checked])
    session.add(ws)
    session.commit()
    return weights_out(ws)


@router.get("", response_model=Page[WeightSetOut])
def list_weights(
    session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[WeightSetOut]:
    q = select(WeightSet).where(WeightSet.owner == owner)
    total, rows = page(session, q, (WeightSet.created_at.desc(), WeightSet.id), limit, offset)
    return Page[WeightSetOut](items=[weights_out(r) for r in rows], total=total, limit=limit,
                              offset=offset)


@router.get("/{weight_set_id}", response_model=WeightSetOut)
def get_weights(weight_set_id: str, session: SessionDep, owner: OwnerDep) -> WeightSetOut:
    return weights_out(get_owned(session, owner, weight_set_id))


@router.get("/{weight_set_id}/download", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": ".npz with W1, b1, W2, b2, ..."}})
def download_weights(weight_set_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    ws = get_owned(session, owner, weight_set_id)
    arrays = {}
    for i, (wsha, bsha) in enumerate(ws.layer_blobs, start=1):
        arrays[f"W{i}"] = get_array(session, wsha)
        arrays[f"b{i}"] = get_array(session, bsha)
    return Response(npz_bytes(arrays), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{ws.id}.npz"'})


@router.delete("/{weight_set_id}", status_code=204, response_class=Response,
               responses={409: {"description": "queued or running jobs use the weight set"}})
def delete_weights(weight_set_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    ws = get_owned(session, owner, weight_set_id)
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.weight_set_id == ws.id, Job.state.in_(("queued", "running"))))
    if active:
        raise HTTPException(409, f"weight set {weight_set_id!r} has {active} queued or running "
                            "jobs")
    blobs = [sha for pair in ws.layer_blobs for sha in pair]
    session.execute(update(Job).where(Job.weight_set_id == ws.id).values(weight_set_id=None))
    session.delete(ws)
    session.flush()
    delete_if_orphan(session, blobs)
    session.commit()
    return Response(status_code=204)
