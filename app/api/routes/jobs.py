"""Jobs: submit a solve or a polish (202 + Location), poll, list, cancel, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Query, Response

from app import crud
from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS
from app.jobs import enqueue
from app.models import Job
from app.schemas import JobCreate, JobError, JobKind, JobOut, JobProgress, JobState, Page

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


def job_response(job: Job, network_id: str | None, status_code: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
    """A job as its JSON response, serialized once. For the requests clients send most
    (submit, poll) this skips FastAPI's validation of the returned model against
    ``response_model``, which for a synchronous route is one more trip through a worker
    thread; the OpenAPI schema still comes from ``response_model``."""
    return Response(job_out(job, network_id).model_dump_json(), status_code=status_code,
                    headers=headers, media_type="application/json")


@router.post(
    "", status_code=202, response_model=JobOut,
    responses={409: {"description": "Idempotency-Key reused with a different request"},
               422: {"description": "invalid parameters"}},
)
def submit_job(
    body: JobCreate, session: SessionDep, owner: OwnerDep, settings: SettingsDep,
    background: BackgroundTasks,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Queue a job: ``kind="solve"`` (the convex solve on a dataset; the default when ``kind``
    is left out) or ``kind="polish"`` (polish the weight set ``weights_id`` on a dataset).
    Answers ``202 Accepted`` with the job and a ``Location`` header; the job row is committed
    before the worker message is published. The same ``Idempotency-Key`` from the same key
    returns the same job."""
    job, created = crud.create_job(session, owner, body, settings, idempotency_key)
    if created:
        background.add_task(enqueue, job.id, settings)  # after the answer is sent
    return job_response(job, None if created else crud.network_id_of(session, job.id),
                        status_code=202, headers={"Location": f"/jobs/{job.id}"})


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep, owner: OwnerDep,
    state: JobState | None = None, kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[JobOut]:
    total, rows = crud.list_jobs(session, owner, state, kind, limit, offset)
    nets = crud.network_ids_of(session, [r.id for r in rows])
    return Page[JobOut](items=[job_out(r, nets.get(r.id)) for r in rows], total=total,
                        limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    return job_response(*crud.get_job_with_network(session, owner, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut,
             responses={409: {"description": "the job already finished"}})
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """Cancel a queued or running job (a running worker stops at its next progress check)."""
    job = crud.cancel_job(session, owner, job_id)
    return job_out(job, crud.network_id_of(session, job.id))


@router.delete("/{job_id}", status_code=204, response_class=Response,
               responses={409: {"description": "the job is queued or running: cancel it "
                                "first"}})
def delete_job(job_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a finished job (succeeded, failed or cancelled) **and its network** (neurons and
    index-set rows). 409 while it is queued or running: cancel it first."""
    crud.delete_job(session, owner, job_id)
    return Response(status_code=204)
