"""Celery tasks: load inputs from SQL, run the engine, store the result in one transaction.

``run_job`` runs a job: ``solve`` (``wedgenet.solve``; optionally warm-started, with its full
scans split over workers, with the l2 bound for p=2) or ``polish`` (``wedgenet.polish`` of an
uploaded weight set). ``price_part`` prices one part of a distributed scan (worker/scan.py).

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
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

import wedgenet  # imported before the pool forks, so a first job pays no import cost
from app.broker import PRICE_PART_TASK, RUN_JOB_TASK
from app.core.config import Settings, get_settings
from app.db import session_scope
from app.models import Dataset, Job, Network, Neuron, NeuronSample, WeightSet, utcnow
from app.schemas import JobResult, L2BoundRecord, WarmStartRecord
from app.storage import get_array
from worker.celery_app import celery_app
from worker.scan import (
    DistributedPricer,
    ScanAborted,
    delete_job_rounds,
    price_parts_now,
)

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
    """Keeps the job's heartbeat fresh; sets :attr:`lost` when the job was cancelled or
    taken over. Then the engine stops at its next checkpoint (``wedgenet.stop_when``); if
    the job has not returned ``settings.cancel_grace`` seconds later, ``hard_stop`` runs
    (in a pool worker process: exit, so that the pool replaces it and its memory is freed)."""

    def __init__(self, job_id: str, token: str, settings: Settings,
                 hard_stop: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.token, self.settings = job_id, token, settings
        self.stop_event = threading.Event()
        self.lost = threading.Event()
        self.hard_stop = hard_stop

    def run(self) -> None:
        while not self.stop_event.wait(self.settings.heartbeat_interval):
            if self.lost.is_set():
                break
            try:
                with session_scope(self.settings.database_url) as s:
                    res = s.execute(update(Job).where(_owned(self.job_id, self.token))
                                    .values(heartbeat_at=utcnow()))
                    if res.rowcount != 1:  # type: ignore[attr-defined]
                        self.lost.set()  # cancelled, or re-queued and taken over
                        break
            except Exception as exc:
                log.warning("heartbeat for %s failed: %s", self.job_id, exc)
        if self.lost.is_set() and not self.stop_event.wait(self.settings.cancel_grace):
            log.warning("job %s did not stop within %.0f s of its cancellation", self.job_id,
                        self.settings.cancel_grace)
            if self.hard_stop is not None:
                self.hard_stop()


def _exit_pool_process() -> None:  # pragma: no cover - ends the process
    """Hard stop of a job that does not yield: leave the pool worker process at once (the
    pool starts a replacement; the late-acknowledged message goes back to the broker and
    its next claim finds the job cancelled)."""
    logging.shutdown()
    os._exit(75)


def _in_pool_process() -> bool:
    """True in a Celery prefork pool child (where exiting frees the job's memory and the
    pool replaces the process); False in tests and solo workers."""
    try:
        from billiard.process import current_process
    except ImportError:  # pragma: no cover - billiard comes with Celery
        return False
    return bool(current_process().name.startswith("ForkPoolWorker"))


def _finish(job_id: str, token: str, settings: Settings, **values: Any) -> None:
    with session_scope(settings.database_url) as s:
        s.execute(update(Job).where(_owned(job_id, token))
                  .values(finished_at=utcnow(), worker_id=None, **values))


def _store_network(job_id: str, token: str, record: JobResult, settings: Settings) -> bool:
    """Write network, neurons and index-set membership and mark the job succeeded, atomically
    (only while this attempt owns the job; a job never gets two networks)."""
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
            owner=job.owner, job_id=job_id, dataset_id=job.dataset_id, kind=record.kind,
            n_features=record.n_features, n_outputs=record.n_outputs,
            n_neurons=len(record.neurons), output_bias=record.output_bias,
            primal_objective=record.primal_objective, dual_objective=record.dual_objective,
            relative_gap=record.relative_gap, certified=record.certified,
            summary=record.summary.stored(),
            layers=([ly.model_dump(mode="json") for ly in record.layers]
                    if record.layers else None),
        )
        s.add(network)
        s.flush()
        neurons = [
            Neuron(network_id=network.id, position=pos, weight=nd.weight, bias=nd.bias,
                   output_weight=nd.output_weight,
                   index_set=(nd.index_set.model_dump(exclude_defaults=True)
                              if nd.index_set else None),
                   formula=nd.formula, residual=nd.residual, extra=nd.extra_record().stored())
            for pos, nd in enumerate(record.neurons)
        ]
        s.add_all(neurons)
        s.flush()
        rows = [
            {"neuron_id": nr.id, "sample_index": int(i)}
            for nr, nd in zip(neurons, record.neurons, strict=True)
            for i in nd.sample_indices()
        ]
        if rows:
            s.execute(insert(NeuronSample), rows)
        job.state, job.finished_at, job.worker_id = "succeeded", utcnow(), None
        job.progress, job.stage = 1.0, "done"
        job.error_code = job.error_message = None
    return True


def solve_record(result: Any, summary_extra: dict[str, Any] | None = None) -> JobResult:
    """The :class:`JobResult` of a ``wedgenet.SolveResult``: the network's neurons and the
    result's description (without the network) as the summary, plus ``summary_extra``."""
    rdict = _jsonable(result.to_dict())
    ndict = rdict.pop("network")
    return JobResult.model_validate({
        "kind": "solve", "n_features": ndict["n_features"], "n_outputs": ndict["n_outputs"],
        "output_bias": ndict["output_bias"], "primal_objective": rdict["primal_objective"],
        "dual_objective": rdict["dual_objective"], "relative_gap": rdict["relative_gap"],
        "certified": rdict["certified"],
        "summary": {**rdict, **_jsonable(summary_extra or {})},
        "neurons": ndict["neurons"],
    })


def three_layer_record(result: Any, summary_extra: dict[str, Any] | None = None) -> JobResult:
    """The :class:`JobResult` of a ``wedgenet.ThreeLayerResult``: the network as its three
    layers (``W1``, a diagonal ``W2``, ``w3``: predictions and exports run them unchanged) and
    the blocks as neurons (first-layer weights and bias, ``w3`` as the output weight, the
    first-layer index set and formula; ``l``, ``j0``, shape, ``w2`` and ``b2`` in the neuron's
    extra fields); the result without the network as the summary (``depth`` 3)."""
    rdict = _jsonable(result.to_dict())
    rdict.pop("network")
    network = result.network
    neurons = [
        {"weight": _jsonable(blk.w1), "bias": float(blk.b1), "output_weight": [float(blk.w3)],
         "index_set": None if blk.index_set is None else _jsonable(blk.index_set.to_dict()),
         "formula": blk.formula, "residual": float(blk.residual),
         "bias_sample": blk.bias_sample, "threshold_sample": blk.threshold_sample,
         "shape": blk.shape, "second_layer_weight": float(blk.w2),
         "second_layer_bias": float(blk.b2)}
        for blk in network.blocks
    ]
    summary = {**rdict, "depth": 3, "params": {**rdict["params"], "depth": 3}}
    return JobResult.model_validate({
        "kind": "solve", "n_features": int(network.n_features), "n_outputs": 1,
        "output_bias": [float(network.output_bias)],
        "primal_objective": rdict["primal_objective"],
        "dual_objective": rdict["dual_objective"], "relative_gap": rdict["relative_gap"],
        "certified": rdict["certified"],
        "summary": {**summary, **_jsonable(summary_extra or {})},
        "neurons": neurons,
        "layers": [{"W": _jsonable(W), "b": _jsonable(b)} for W, b in network.to_layers()],
    })


def polish_record(result: Any) -> JobResult:
    """The :class:`JobResult` of a ``wedgenet.PolishResult``: a two-layer result as neurons
    (polished ones with their index sets, original ones with ``index_set=None``); a deep one as
    its layers. The polish report (objectives, metrics, per-neuron report) is the summary."""
    rdict = _jsonable(result.to_dict())
    summary = {k: v for k, v in rdict.items() if k not in ("network", "layers")}
    W_last, b_last = result.layers[-1]
    record: dict[str, Any] = {
        "kind": "polish", "n_features": int(result.layers[0][0].shape[0]),
        "n_outputs": int(W_last.shape[1]), "output_bias": _jsonable(b_last),
        "primal_objective": rdict["objective_after"], "summary": summary,
    }
    if result.network is not None:
        record["neurons"] = rdict["network"]["neurons"]
        record["output_bias"] = rdict["network"]["output_bias"]
    else:
        record["layers"] = rdict["layers"]
    return JobResult.model_validate(record)


def _store_result(job_id: str, token: str, result: Any, settings: Settings,
                  summary_extra: dict[str, Any] | None = None) -> bool:
    """Store a solve result (``wedgenet.SolveResult`` or ``wedgenet.ThreeLayerResult``); see
    :func:`_store_network`."""
    record = (three_layer_record(result, summary_extra)
              if isinstance(result, wedgenet.ThreeLayerResult)
              else solve_record(result, summary_extra))
    return _store_network(job_id, token, record, settings)


def _store_polish(job_id: str, token: str, result: Any, settings: Settings) -> bool:
    """Store a ``wedgenet.PolishResult``; see :func:`_store_network`."""
    return _store_network(job_id, token, polish_record(result), settings)


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


#: job parameters the service interprets itself (not passed to ``wedgenet.solve``)
SERVICE_PARAMS = ("scan_parts", "warm_start", "l2_bound", "depth")


def run_job_now(job_id: str, settings: Settings | None = None,
                hard_stop: Callable[[], None] | None = None) -> str:
    """Run one job in this process (the body of the Celery task). Returns what happened.

    ``hard_stop``: what to do when a cancelled job does not stop within
    ``settings.cancel_grace`` seconds (the Celery task passes a process exit)."""
    settings = settings or get_settings()
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not _claim(job_id, token, settings):
        return "skipped"
    hb = Heartbeat(job_id, token, settings, hard_stop)
    hb.start()
    distributed = False
    try:
        with session_scope(settings.database_url) as s:
            job = s.get(Job, job_id)
            assert job is not None
            kind = job.kind
            params = dict(job.params)
            ds = s.get(Dataset, job.dataset_id) if job.dataset_id else None
            if ds is None:
                _finish(job_id, token, settings, state="failed", error_code="dataset_missing",
                        error_message="the job's dataset was deleted")
                return "failed"
            X = get_array(s, ds.x_sha256).astype(np.float64)
            y = get_array(s, ds.y_sha256)
            layers = None
            if kind == "polish":
                ws = s.get(WeightSet, job.weight_set_id) if job.weight_set_id else None
                if ws is None:
                    _finish(job_id, token, settings, state="failed",
                            error_code="weights_missing",
                            error_message="the job's weight set was deleted")
                    return "failed"
                layers = [(get_array(s, w), get_array(s, b)) for w, b in ws.layer_blobs]
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
            with wedgenet.stop_when(hb.lost.is_set):  # checkpoints raise once cancelled
                if kind == "polish":
                    assert layers is not None
                    progress(0.05, f"polishing a {len(layers)}-layer network")
                    presult = wedgenet.polish(
                        X, y, layers, loss=params.get("loss", "squared"), lam=params["lam"],
                        p=params.get("p", 1), bias=params.get("bias", True),
                        refit=params.get("refit", "union"),
                        validation_fraction=params.get("validation_fraction"),
                        seed=params.get("seed", 0))
                else:
                    distributed = int(params.get("scan_parts", 1)) > 1
                    result, extra = _solve(job_id, token, X, y, params, settings, hb, progress)
        except (JobAborted, ScanAborted, wedgenet.SolveAborted):
            return "aborted"
        except wedgenet.DictionaryTooLarge as exc:
            _finish(job_id, token, settings, state="failed", error_code="dictionary_too_large",
                    error_message=str(exc))
            return "failed"
        except wedgenet.WedgeNetError as exc:
            _finish(job_id, token, settings, state="failed", error_code="invalid_input",
                    error_message=str(exc))
            return "failed"
        except SoftTimeLimitExceeded:
            _finish(job_id, token, settings, state="failed", error_code="timeout",
                    error_message=f"the job exceeded {settings.task_soft_time_limit} s")
            return "failed"
        if hb.lost.is_set():
            return "aborted"
        try:
            if kind == "polish":
                stored = _store_polish(job_id, token, presult, settings)
            else:
                stored = _store_result(job_id, token, result, settings, extra)
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
        if distributed:
            try:
                delete_job_rounds(job_id, token, settings)
            except Exception as exc:  # the sweeper removes leftovers
                log.warning("could not clean up the pricing rounds of %s: %s", job_id, exc)


def _solve(job_id: str, token: str, X: np.ndarray, y: np.ndarray, params: dict[str, Any],
           settings: Settings, hb: Heartbeat, progress: Any) -> tuple[Any, dict[str, Any]]:
    """A solve job: optional warm start, optional distributed pricing, optional l2 bound;
    ``depth=3``: ``wedgenet.solve_three_layer``. Returns the ``SolveResult`` (or
    ``ThreeLayerResult``) and what to add to the network's summary."""
    engine = {k: v for k, v in params.items() if k not in SERVICE_PARAMS}
    extra: dict[str, Any] = {}
    if int(params.get("depth", 2)) == 3:  # check_solve refused what this path ignores
        progress(0.0, "three-layer dictionary")
        result3 = wedgenet.solve_three_layer(
            X, y, lam=float(engine["lam"]), bias=bool(engine.get("bias", True)),
            loss=engine.get("loss", "squared"), tol=float(engine.get("tol", 1e-6)),
            max_time=engine.get("max_time"), progress=progress)
        return result3, extra
    want_l2 = int(engine.get("p", 1)) == 2 and bool(params.get("l2_bound", True))
    scale = 0.9 if want_l2 else 1.0

    def solve_progress(fraction: float, stage: str) -> None:
        progress(fraction * scale, stage)

    initial = None
    warm = params.get("warm_start", "none")
    if warm in ("polish", "sample"):
        t0 = time.perf_counter()
        p_ = int(engine.get("p", 1))
        bias_ = bool(engine.get("bias", True))
        seed_ = int(engine.get("seed", 0))
        try:
            if warm == "polish":
                progress(0.0, "warm start: training and polishing a quick network")
                initial = wedgenet.seed_index_sets(
                    X, y, loss=engine.get("loss", "squared"), p=p_, bias=bias_,
                    lam=float(engine["lam"]), seed=seed_)
            else:
                progress(0.0, "warm start: sampling hyperplanes")
                initial = wedgenet.sample_index_sets(X, 256, p=p_, bias=bias_, seed=seed_)
            extra["warm_start"] = WarmStartRecord(
                kind=warm, n_index_sets=len(initial), time=time.perf_counter() - t0).stored()
        except Exception as exc:  # only a warm start: solve without it
            log.warning("warm start of job %s failed: %s", job_id, exc)
            extra["warm_start"] = WarmStartRecord(
                kind=warm, n_index_sets=0, error=f"{type(exc).__name__}: {exc}"[:500]).stored()
    pricer = None
    if int(params.get("scan_parts", 1)) > 1:
        pricer = DistributedPricer(job_id, token, X, engine, int(params["scan_parts"]),
                                   settings, lost=hb.lost)
    result = wedgenet.solve(X, y, progress=solve_progress, initial=initial, pricer=pricer,
                            **engine)
    if pricer is not None:
        extra.update(pricer.summary())
    if want_l2:
        progress(0.9, "l2 bound: hyperplane-arrangement program")
        extra["l2_bound"] = l2_bound(X, y, result, engine, settings).stored()
    return result, extra


def l2_bound(X: np.ndarray, y: np.ndarray, result: Any, params: dict[str, Any],
             settings: Settings) -> L2BoundRecord:
    """``wedgenet.l2_gap_report`` of a p=2 result: exact (a certified lower bound) when the
    arrangement has at most ``l2_bound_max_patterns`` patterns, else sampled (an estimate);
    a ``"skipped"`` record saying why when neither applies."""
    loss = params.get("loss", "squared")

    def skipped(note: str) -> L2BoundRecord:
        return L2BoundRecord(label="skipped", certified=False, mode=None, note=note)

    def report(rep: Any, mode: str, note: str | None) -> L2BoundRecord:
        return L2BoundRecord.model_validate({**_jsonable(rep.to_dict()), "mode": mode,
                                             "note": note})

    if loss not in ("squared", "logistic"):
        return skipped(f"no l2 bound for loss={loss!r} (squared and logistic only)")
    if y.ndim > 1 and y.shape[1] > 1:
        return skipped("no l2 bound for vector outputs")
    if X.shape[0] > settings.l2_bound_max_samples:
        return skipped(f"n={X.shape[0]} samples is over the limit of "
                       f"{settings.l2_bound_max_samples} (WEDGENET_L2_BOUND_MAX_SAMPLES)")
    kw: dict[str, Any] = {"loss": loss, "wedge_value": result}
    lam, bias = float(params["lam"]), bool(params.get("bias", True))
    try:
        rep = wedgenet.l2_gap_report(X, y, lam, bias, mode="exact",
                                     max_patterns=settings.l2_bound_max_patterns, **kw)
        return report(rep, "exact", None)
    except wedgenet.TooManyPatterns as exc:
        note = f"exact arrangement too large: {exc}"
    except wedgenet.WedgeNetError as exc:
        return skipped(f"{exc}")
    try:
        rep = wedgenet.l2_gap_report(X, y, lam, bias, mode="sampled",
                                     n_patterns=settings.l2_bound_sampled_patterns,
                                     seed=int(params.get("seed", 0)), **kw)
        return report(rep, "sampled", note)
    except wedgenet.WedgeNetError as exc:
        return skipped(f"{note}; sampled mode failed: {exc}")


@celery_app.task(name=RUN_JOB_TASK, bind=True)
def run_job(self: Any, job_id: str) -> str:
    return run_job_now(job_id, hard_stop=_exit_pool_process if _in_pool_process() else None)


@celery_app.task(name=PRICE_PART_TASK, bind=True)
def price_part(self: Any, part_id: int) -> int:
    """Price one part of a distributed scan (and any other unclaimed part of its round)."""
    return price_parts_now(int(part_id))
