"""Celery tasks: load inputs from SQL, run the engine, store the result in one transaction.

Idempotent: a job is claimed with a conditional UPDATE (only a queued job, or a running job
whose heartbeat is stale, can be claimed); the result is written only while this attempt still
owns the job, and ``networks.job_id`` is unique, so a job never has two results and re-running a
finished job is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

import wedgenet  # imported before the pool forks, so a first job pays no import cost
from app.core.config import Settings, get_settings
from app.db import session_scope
from app.models import Dataset, Job, Network, Neuron, NeuronSample, utcnow
from app.storage import get_array
from worker.celery_app import celery_app

log = logging.getLogger("wedgenet.worker")


class JobAborted(Exception):
    """Raised from the progress callback when the job was cancelled or taken over."""


def _claim(job_id: str, token: str, settings: Settings) -> bool:
    now = utcnow()
    cut = now - timedelta(seconds=settings.stale_after)
    with session_scope(settings.database_url) as s:
        res = s.execute(
            update(Job)
            .where(
                Job.id == job_id,
                or_(
                    Job.state == "queued",
                    and_(Job.state == "running",
                         or_(Job.heartbeat_at < cut, Job.heartbeat_at.is_(None))),
                ),
            )
            .values(state="running", worker_id=token, attempts=Job.attempts + 1,
                    heartbeat_at=now, stage="starting", progress=0.0)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        s.execute(update(Job).where(Job.id == job_id, Job.started_at.is_(None))
                  .values(started_at=now))
    return True


def _owned(job_id: str, token: str) -> Any:
    return and_(Job.id == job_id, Job.worker_id == token, Job.state == "running")


class Heartbeat(threading.Thread):
    def __init__(self, job_id: str, token: str, settings: Settings) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.token, self.settings = job_id, token, settings
        self.stop_event = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.settings.heartbeat_interval):
            try:
                with session_scope(self.settings.database_url) as s:
                    res = s.execute(update(Job).where(_owned(self.job_id, self.token))
                                    .values(heartbeat_at=utcnow()))
                    if res.rowcount != 1:  # type: ignore[attr-defined]
                        self.lost.set()  # cancelled, or re-queued and taken over
                        return
            except Exception as exc:
                log.warning("heartbeat for %s failed: %s", self.job_id, exc)


def _finish(job_id: str, token: str, settings: Settings, **values: Any) -> None:
    with session_scope(settings.database_url) as s:
        s.execute(update(Job).where(_owned(job_id, token))
                  .values(finished_at=utcnow(), worker_id=None, **values))


def _store_result(job_id: str, token: str, result: Any, settings: Settings) -> bool:
    """Write network, neurons and index-set membership and mark the job succeeded, atomically."""
    net = result.network
    rdict = result.to_dict()
    summary = {k: v for k, v in rdict.items() if k != "network"}
    ndict = net.to_dict()
    with session_scope(settings.database_url) as s:
        q = select(Job).where(Job.id == job_id)
        if s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update()
        job = s.execute(q).scalar_one_or_none()
        if job is None or job.state != "running" or job.worker_id != token:
            return False
        if s.scalar(select(Network.id).where(Network.job_id == job_id)) is not None:
            job.state, job.finished_at, job.worker_id = "succeeded", utcnow(), None
            return True
        network = Network(
            owner=job.owner, job_id=job_id, dataset_id=job.dataset_id,
            n_features=int(ndict["n_features"]), n_outputs=int(ndict["n_outputs"]),
            n_neurons=int(ndict["n_neurons"]),
            output_bias=[float(v) for v in ndict["output_bias"]],
            primal_objective=_f(rdict.get("primal_objective")),
            dual_objective=_f(rdict.get("dual_objective")),
            relative_gap=_f(rdict.get("relative_gap")),
            certified=bool(rdict.get("certified", False)),
            summary=_jsonable(summary),
        )
        s.add(network)
        s.flush()
        keys = {"weight", "bias", "output_weight", "index_set", "formula", "residual"}
        neurons = []
        for pos, nd in enumerate(ndict["neurons"]):
            neurons.append(Neuron(
                network_id=network.id, position=pos,
                weight=[float(v) for v in nd["weight"]], bias=float(nd["bias"]),
                output_weight=[float(v) for v in nd["output_weight"]],
                index_set=nd.get("index_set"), formula=str(nd.get("formula", "")),
                residual=float(nd.get("residual", 0.0)),
                extra=_jsonable({k: v for k, v in nd.items() if k not in keys}),
            ))
        s.add_all(neurons)
        s.flush()
        rows = [
            {"neuron_id": nr.id, "sample_index": int(i)}
            for nr in neurons if nr.index_set
            for i in sorted(set(nr.index_set.get("samples", [])))
        ]
        if rows:
            s.execute(insert(NeuronSample), rows)
        job.state, job.finished_at, job.worker_id = "succeeded", utcnow(), None
        job.progress, job.stage = 1.0, "done"
        job.error_code = job.error_message = None
    return True


def _f(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def run_job_now(job_id: str, settings: Settings | None = None) -> str:
    """Run one job in this process (the body of the Celery task). Returns what happened."""
    settings = settings or get_settings()
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not _claim(job_id, token, settings):
        return "skipped"
    hb = Heartbeat(job_id, token, settings)
    hb.start()
    try:
        with session_scope(settings.database_url) as s:
            job = s.get(Job, job_id)
            assert job is not None
            params = dict(job.params)
            ds = s.get(Dataset, job.dataset_id) if job.dataset_id else None
            if ds is None:
                _finish(job_id, token, settings, state="failed", error_code="dataset_missing",
                        error_message="the job's dataset was deleted")
                return "failed"
            X = get_array(s, ds.x_sha256).astype(np.float64)
            y = get_array(s, ds.y_sha256)
        if params.get("loss") != "softmax":
            y = y.astype(np.float64)

        last = [0.0]

        def progress(fraction: float, stage: str) -> None:
            if hb.lost.is_set():
                raise JobAborted("job was cancelled or taken over")
            now = time.monotonic()
            if now - last[0] < 0.25 and fraction < 1.0:
                return
            last[0] = now
            with session_scope(settings.database_url) as s:
                res = s.execute(update(Job).where(_owned(job_id, token)).values(
                    progress=float(min(max(fraction, 0.0), 1.0)), stage=str(stage)[:200],
                    heartbeat_at=utcnow()))
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    hb.lost.set()
                    raise JobAborted("job was cancelled or taken over")

        try:
            result = wedgenet.solve(X, y, progress=progress, **params)
        except JobAborted:
            return "aborted"
        except wedgenet.DictionaryTooLarge as exc:
            _finish(job_id, token, settings, state="failed", error_code="dictionary_too_large",
                    error_message=f"{exc}; use source='sample' with n_columns")
            return "failed"
        except wedgenet.WedgeNetError as exc:
            _finish(job_id, token, settings, state="failed", error_code="invalid_input",
                    error_message=str(exc))
            return "failed"
        except SoftTimeLimitExceeded:
            _finish(job_id, token, settings, state="failed", error_code="timeout",
                    error_message=f"the solve exceeded {settings.task_soft_time_limit} s")
            return "failed"
        if hb.lost.is_set():
            return "aborted"
        try:
            stored = _store_result(job_id, token, result, settings)
        except IntegrityError:  # a concurrent attempt stored it first: exactly one result
            return "duplicate"
        return "succeeded" if stored else "aborted"
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        _finish(job_id, token, settings, state="failed", error_code="internal_error",
                error_message=f"{type(exc).__name__}: {exc}"[:2000])
        return "failed"
    finally:
        hb.stop_event.set()


@celery_app.task(name="wedgenet.run_job", bind=True)
def run_job(self: Any, job_id: str) -> str:
    return run_job_now(job_id)
