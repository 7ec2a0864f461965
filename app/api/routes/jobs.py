"""Jobs: submit a solve or a polish (202 + Location), poll, list, cancel."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS, not_found, page
from app.api.routes.datasets import get_owned as get_owned_dataset
from app.api.routes.weights import get_owned as get_owned_weights
from app.core.config import Settings
from app.jobs import mark_unpublished, publish
from app.models import Dataset, Job, Network, WeightSet, utcnow
from app.schemas import (
    JobCreate,
    JobError,
    JobKind,
    JobOut,
    JobProgress,
    JobState,
    Page,
    PolishJobCreate,
    SolveJobCreate,
)
from app.storage import get_array

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERRORS)


def job_out(job: Job, network_id: str | None) -> JobOut:
    links = {"self": f"/jobs/{job.id}", "cancel": f"/jobs/{job.id}/cancel"}
    if network_id:
        links["network"] = f"/networks/{network_id}"
    if job.dataset_id:
        links["dataset"] = f"/datasets/{job.dataset_id}"
    if job.weight_set_id:
        links["weights"] = f"/weights/{job.weight_set_id}"
    error = (JobError(code=job.error_code, message=job.error_message or "")
             if job.error_code else None)
    return JobOut(
        id=job.id, kind=job.kind, state=job.state,  # type: ignore[arg-type]
        dataset_id=job.dataset_id, weights_id=job.weight_set_id, params=job.params,
        progress=JobProgress(fraction=job.progress, stage=job.stage), attempts=job.attempts,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at, error=error, idempotency_key=job.idempotency_key,
        network_id=network_id, links=links,
    )


def network_id_of(session: SessionDep, job_id: str) -> str | None:
    return session.scalar(select(Network.id).where(Network.job_id == job_id))


def get_owned(session: SessionDep, owner: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.owner != owner:
        raise not_found("job", job_id)
    return job


def check_labels(loss: str, ds: Dataset, session: SessionDep) -> int:
    """Reject labels the loss cannot use; return the number of network outputs it needs."""
    if loss in ("logistic", "hinge"):
        y = get_array(session, ds.y_sha256)
        vals = np.unique(y)
        if y.ndim != 1 or vals.size != 2:
            raise HTTPException(422, f"loss={loss!r} needs a single-output y with exactly "
                                f"2 distinct values; the dataset's y has shape {list(y.shape)} "
                                f"and {vals.size} distinct values")
        return 1
    if loss == "softmax":
        if ds.outputs != 1 or not ds.y_dtype.startswith("int"):
            raise HTTPException(422, "loss='softmax' needs integer class labels y of shape (n,)")
        return int(np.unique(get_array(session, ds.y_sha256)).size)
    return int(ds.outputs)


def check_solve(body: SolveJobCreate, ds: Dataset, session: SessionDep,
                settings: Settings) -> None:
    """Reject parameters the engine would refuse, with a message saying what to change."""
    import wedgenet

    prm = body.params
    check_labels(prm.loss, ds, session)
    size = int(wedgenet.dictionary_size(ds.n, ds.d, p=prm.p, bias=prm.bias))
    limit = min(prm.max_columns, settings.max_dictionary_columns)
    source = prm.source
    if source == "auto":
        source = "exhaustive" if size <= limit else "search"
    if source == "exhaustive":
        if prm.n_columns is not None:
            raise HTTPException(422, "n_columns is only used with source='sample' or 'search'")
        if size > limit:
            raise HTTPException(
                422, f"the exhaustive dictionary for n={ds.n}, d={ds.d} (p={prm.p}, "
                f"bias={prm.bias}) has about {size} columns, over the limit of {limit}; "
                "use source='search' (or 'auto')",
            )
    elif prm.n_columns is not None and prm.n_columns > settings.max_dictionary_columns:
        raise HTTPException(422, f"n_columns={prm.n_columns} exceeds the limit of "
                            f"{settings.max_dictionary_columns}")
    if source == "search":
        if prm.solver == "cvxpy":
            raise HTTPException(422, f"the dictionary (about {size} columns) is searched, not "
                                "materialized: use solver='auto' or 'workingset'")
        if prm.scan_parts > 1:
            raise HTTPException(422, f"scan_parts > 1 splits full scans; the dictionary "
                                f"(about {size} columns) is searched, not scanned")
    if prm.scan_parts > settings.max_scan_parts:
        raise HTTPException(422, f"scan_parts={prm.scan_parts} exceeds the limit of "
                            f"{settings.max_scan_parts}")
    if prm.solver == "cvxpy" and prm.scan_parts > 1:
        raise HTTPException(422, "scan_parts > 1 needs solver='auto' or 'workingset' (the "
                            "cvxpy reference solver does not scan the dictionary)")
    if prm.solver == "cvxpy" and prm.warm_start != "none":
        raise HTTPException(422, "warm_start needs solver='auto' or 'workingset' (the cvxpy "
                            "reference solver has no working set to seed)")


def check_polish(body: PolishJobCreate, ds: Dataset, ws: WeightSet, session: SessionDep) -> None:
    """The weight set must be a network on this dataset's inputs with the outputs the loss
    needs; the options must leave data to polish on. 422 with what to change otherwise."""
    prm = body.params
    outputs = check_labels(prm.loss, ds, session)
    shapes = [(int(a), int(b)) for a, b in ws.shapes]
    if len(shapes) < 2:
        raise HTTPException(422, f"weight set {ws.id!r} has {len(shapes)} layer; polishing "
                            "needs at least two (a hidden layer and an output layer)")
    for i in range(1, len(shapes)):
        if shapes[i][0] != shapes[i - 1][1]:
            raise HTTPException(
                422, f"weight set {ws.id!r}: layer shapes do not chain: layer {i} has "
                f"{shapes[i - 1][1]} outputs but layer {i + 1} expects {shapes[i][0]} inputs")
    if shapes[0][0] != ds.d:
        raise HTTPException(
            422, f"weight set {ws.id!r}: the first layer takes {shapes[0][0]} inputs but "
            f"dataset {ds.id!r} has d={ds.d} features")
    if shapes[-1][1] != outputs:
        raise HTTPException(
            422, f"weight set {ws.id!r}: the last layer has {shapes[-1][1]} outputs but "
            f"loss={prm.loss!r} on dataset {ds.id!r} needs {outputs}")
    if not prm.bias:
        for i, (_, bsha) in enumerate(ws.layer_blobs[:-1], start=1):
            if np.any(get_array(session, bsha) != 0):
                raise HTTPException(
                    422, f"bias=False but hidden layer {i} of weight set {ws.id!r} has nonzero "
                    "biases; polish with bias=True")
    if prm.validation_fraction is not None:
        n_val = int(round(prm.validation_fraction * ds.n))
        if n_val < 1 or ds.n - n_val < 2:
            raise HTTPException(
                422, f"validation_fraction={prm.validation_fraction} of n={ds.n} samples "
                f"leaves {ds.n - n_val} for training and {n_val} for validation; need at "
                "least 2 and 1")


@router.post(
    "", status_code=202, response_model=JobOut,
    responses={409: {"description": "Idempotency-Key reused with a different request"},
               422: {"description": "invalid parameters"}},
)
def submit_job(
    body: JobCreate, response: Response, session: SessionDep, owner: OwnerDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut | JSONResponse:
    """Queue a job: ``kind="solve"`` (the convex solve on a dataset; the default when ``kind``
    is left out) or ``kind="polish"`` (polish the weight set ``weights_id`` on a dataset).
    Answers ``202 Accepted`` with the job and a ``Location`` header; the job row is committed
    before the worker message is published. The same ``Idempotency-Key`` from the same key
    returns the same job."""
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    if idempotency_key:
        prior = session.scalar(select(Job).where(Job.owner == owner,
                                                 Job.idempotency_key == idempotency_key))
        if prior is not None:
            return _replay(prior, request_hash, session)
    ds = get_owned_dataset(session, owner, body.dataset_id)
    weight_set_id = None
    if isinstance(body, PolishJobCreate):
        ws = get_owned_weights(session, owner, body.weights_id)
        check_polish(body, ds, ws, session)
        weight_set_id = ws.id
        params = body.params.model_dump(mode="json")
    else:
        check_solve(body, ds, session, settings)
        params = body.params.model_dump(mode="json")
        if body.params.source == "exhaustive":
            params.pop("n_columns", None)
        # the worker resolves source='auto' against the same limit as the check above
        params["max_columns"] = min(body.params.max_columns, settings.max_dictionary_columns)
        if params.get("max_time") is None:
            params["max_time"] = settings.default_max_time
    job = Job(owner=owner, kind=body.kind, state="queued", dataset_id=ds.id,
              weight_set_id=weight_set_id, params=params,
              idempotency_key=idempotency_key or None, request_hash=request_hash,
              progress=0.0, stage="queued", attempts=0, enqueued_at=utcnow())
    session.add(job)
    try:
        session.commit()  # committed before publishing
    except IntegrityError:
        session.rollback()
        prior = session.scalar(select(Job).where(Job.owner == owner,
                                                 Job.idempotency_key == idempotency_key))
        if prior is None:
            raise
        return _replay(prior, request_hash, session)
    if not publish(job.id):
        mark_unpublished(job.id, settings)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job_out(job, None)


def _replay(prior: Job, request_hash: str, session: SessionDep) -> JSONResponse:
    if prior.request_hash != request_hash:
        raise HTTPException(409, "Idempotency-Key was already used with a different request")
    out = job_out(prior, network_id_of(session, prior.id))
    return JSONResponse(out.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/jobs/{prior.id}"})


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep, owner: OwnerDep,
    state: JobState | None = None, kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[JobOut]:
    q = select(Job).where(Job.owner == owner)
    if state:
        q = q.where(Job.state == state)
    if kind:
        q = q.where(Job.kind == kind)
    total, rows = page(session, q, (Job.created_at.desc(), Job.id), limit, offset)
    found = session.execute(select(Network.job_id, Network.id)
                            .where(Network.job_id.in_([r.id for r in rows])))
    nets: dict[str, str] = {jid: nid for jid, nid in found}
    return Page[JobOut](items=[job_out(r, nets.get(r.id)) for r in rows], total=total,
                        limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    job = get_owned(session, owner, job_id)
    return job_out(job, network_id_of(session, job.id))


@router.post("/{job_id}/cancel", response_model=JobOut,
             responses={409: {"description": "the job already finished"}})
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """Cancel a queued or running job (a running worker stops at its next progress check)."""
    job = get_owned(session, owner, job_id)
    res = session.execute(
        update(Job).where(Job.id == job.id, Job.state.in_(("queued", "running")))
        .values(state="cancelled", finished_at=utcnow(), worker_id=None,
                error_code="cancelled", error_message="cancelled by the client")
    )
    session.commit()
    session.refresh(job)
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise HTTPException(409, f"job {job_id!r} already {job.state}; cannot cancel")
    return job_out(job, network_id_of(session, job.id))
