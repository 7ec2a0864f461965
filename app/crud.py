"""Data access and domain checks of the API, below the routes.

Every lookup is scoped to the caller's owner id (another key's resource is "not found"). The
checks reject what the engine would refuse, with a message saying what to change. Errors are
:class:`NotFound` (404), :class:`Invalid` (422) and :class:`Conflict` (409); they are
``HTTPException`` subclasses, so routes let them through unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import HTTPException
from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.core.config import Settings
from app.models import Dataset, Job, Network, Neuron, NeuronSample, WeightSet, utcnow
from app.schemas import (
    JobCreate,
    NeuronExtra,
    PolishJobCreate,
    ResultSummary,
    SolveJobCreate,
    StoredLayer,
)
from app.storage import get_array


class NotFound(HTTPException):
    """404: no such resource, or one owned by another key."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(404, f"{what} {ident!r} not found")


class Invalid(HTTPException):
    """422: the request is well-formed but cannot be run; the message says what to change."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail)


class Conflict(HTTPException):
    """409: the request conflicts with the resource's state."""

    def __init__(self, detail: str) -> None:
        super().__init__(409, detail)


def page(session: Session, q: Select[Any], order: Any, limit: int,
         offset: int) -> tuple[int, list[Any]]:
    """Total count and one page of a select, in a stable order."""
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.scalars(q.order_by(*order).limit(limit).offset(offset)).all()
    return int(total), list(rows)


# ------------------------------------------------------------------------------ datasets, weights
def get_dataset(session: Session, owner: str, dataset_id: str) -> Dataset:
    ds = session.get(Dataset, dataset_id)
    if ds is None or ds.owner != owner:
        raise NotFound("dataset", dataset_id)
    return ds


def get_weight_set(session: Session, owner: str, weights_id: str) -> WeightSet:
    ws = session.get(WeightSet, weights_id)
    if ws is None or ws.owner != owner:
        raise NotFound("weight set", weights_id)
    return ws


# ------------------------------------------------------------------------------------------ jobs
def get_job(session: Session, owner: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.owner != owner:
        raise NotFound("job", job_id)
    return job


def network_id_of(session: Session, job_id: str) -> str | None:
    """The id of the network a job produced (``None`` while it has none)."""
    return session.scalar(select(Network.id).where(Network.job_id == job_id))


def network_ids_of(session: Session, job_ids: Sequence[str]) -> dict[str, str]:
    """``{job_id: network_id}`` for the jobs that produced a network."""
    found = session.execute(select(Network.job_id, Network.id)
                            .where(Network.job_id.in_(list(job_ids))))
    return {jid: nid for jid, nid in found}


def list_jobs(session: Session, owner: str, state: str | None, kind: str | None, limit: int,
              offset: int) -> tuple[int, list[Job]]:
    q = select(Job).where(Job.owner == owner)
    if state:
        q = q.where(Job.state == state)
    if kind:
        q = q.where(Job.kind == kind)
    return page(session, q, (Job.created_at.desc(), Job.id), limit, offset)


def check_labels(session: Session, loss: str, ds: Dataset) -> int:
    """Reject labels the loss cannot use; return the number of network outputs it needs."""
    if loss in ("logistic", "hinge"):
        y = get_array(session, ds.y_sha256)
        vals = np.unique(y)
        if y.ndim != 1 or vals.size != 2:
            raise Invalid(f"loss={loss!r} needs a single-output y with exactly 2 distinct "
                          f"values; the dataset's y has shape {list(y.shape)} and {vals.size} "
                          "distinct values")
        return 1
    if loss == "softmax":
        if ds.outputs != 1 or not ds.y_dtype.startswith("int"):
            raise Invalid("loss='softmax' needs integer class labels y of shape (n,)")
        return int(np.unique(get_array(session, ds.y_sha256)).size)
    return int(ds.outputs)


def check_solve(session: Session, body: SolveJobCreate, ds: Dataset, settings: Settings) -> None:
    """Reject parameters the engine would refuse, with a message saying what to change."""
    import wedgenet

    prm = body.params
    check_labels(session, prm.loss, ds)
    size = int(wedgenet.dictionary_size(ds.n, ds.d, p=prm.p, bias=prm.bias))
    limit = min(prm.max_columns, settings.max_dictionary_columns)
    source = prm.source
    if source == "auto":
        source = "exhaustive" if size <= limit else "search"
    if source == "exhaustive":
        if prm.n_columns is not None:
            raise Invalid("n_columns is only used with source='sample' or 'search'")
        if size > limit:
            raise Invalid(
                f"the exhaustive dictionary for n={ds.n}, d={ds.d} (p={prm.p}, "
                f"bias={prm.bias}) has about {size} columns, over the limit of {limit}; "
                "use source='search' (or 'auto')")
    elif prm.n_columns is not None and prm.n_columns > settings.max_dictionary_columns:
        raise Invalid(f"n_columns={prm.n_columns} exceeds the limit of "
                      f"{settings.max_dictionary_columns}")
    if source == "search":
        if prm.solver == "cvxpy":
            raise Invalid(f"the dictionary (about {size} columns) is searched, not "
                          "materialized: use solver='auto' or 'workingset'")
        if prm.scan_parts > 1:
            raise Invalid(f"scan_parts > 1 splits full scans; the dictionary (about {size} "
                          "columns) is searched, not scanned")
    if prm.scan_parts > settings.max_scan_parts:
        raise Invalid(f"scan_parts={prm.scan_parts} exceeds the limit of "
                      f"{settings.max_scan_parts}")
    if prm.solver == "cvxpy" and prm.scan_parts > 1:
        raise Invalid("scan_parts > 1 needs solver='auto' or 'workingset' (the cvxpy "
                      "reference solver does not scan the dictionary)")
    if prm.solver == "cvxpy" and prm.warm_start != "none":
        raise Invalid("warm_start needs solver='auto' or 'workingset' (the cvxpy reference "
                      "solver has no working set to seed)")


def check_polish(session: Session, body: PolishJobCreate, ds: Dataset, ws: WeightSet) -> None:
    """The weight set must be a network on this dataset's inputs with the outputs the loss
    needs; the options must leave data to polish on."""
    prm = body.params
    outputs = check_labels(session, prm.loss, ds)
    shapes = [(int(a), int(b)) for a, b in ws.shapes]
    if len(shapes) < 2:
        raise Invalid(f"weight set {ws.id!r} has {len(shapes)} layer; polishing needs at "
                      "least two (a hidden layer and an output layer)")
    for i in range(1, len(shapes)):
        if shapes[i][0] != shapes[i - 1][1]:
            raise Invalid(
                f"weight set {ws.id!r}: layer shapes do not chain: layer {i} has "
                f"{shapes[i - 1][1]} outputs but layer {i + 1} expects {shapes[i][0]} inputs")
    if shapes[0][0] != ds.d:
        raise Invalid(f"weight set {ws.id!r}: the first layer takes {shapes[0][0]} inputs but "
                      f"dataset {ds.id!r} has d={ds.d} features")
    if shapes[-1][1] != outputs:
        raise Invalid(f"weight set {ws.id!r}: the last layer has {shapes[-1][1]} outputs but "
                      f"loss={prm.loss!r} on dataset {ds.id!r} needs {outputs}")
    if not prm.bias:
        for i, (_, bsha) in enumerate(ws.layer_blobs[:-1], start=1):
            if np.any(get_array(session, bsha) != 0):
                raise Invalid(f"bias=False but hidden layer {i} of weight set {ws.id!r} has "
                              "nonzero biases; polish with bias=True")
    if prm.validation_fraction is not None:
        n_val = int(round(prm.validation_fraction * ds.n))
        if n_val < 1 or ds.n - n_val < 2:
            raise Invalid(
                f"validation_fraction={prm.validation_fraction} of n={ds.n} samples leaves "
                f"{ds.n - n_val} for training and {n_val} for validation; need at least 2 "
                "and 1")


def request_hash(body: JobCreate) -> str:
    """Fingerprint of a job request (the same Idempotency-Key must come with the same one)."""
    return hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _replay(prior: Job, digest: str) -> Job:
    if prior.request_hash != digest:
        raise Conflict("Idempotency-Key was already used with a different request")
    return prior


def _by_idempotency_key(session: Session, owner: str, key: str | None) -> Job | None:
    if not key:
        return None
    return session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))


def create_job(session: Session, owner: str, body: JobCreate, settings: Settings,
               idempotency_key: str | None = None) -> tuple[Job, bool]:
    """Check and commit a queued job. Returns ``(job, created)``: ``created`` is False when
    the same ``idempotency_key`` from the same owner already made this job (the same request
    again: the prior job; a different request: :class:`Conflict`). The caller publishes a
    created job (``app.jobs.enqueue``) only after this commit."""
    digest = request_hash(body)
    prior = _by_idempotency_key(session, owner, idempotency_key)
    if prior is not None:
        return _replay(prior, digest), False
    ds = get_dataset(session, owner, body.dataset_id)
    weight_set_id = None
    if isinstance(body, PolishJobCreate):
        ws = get_weight_set(session, owner, body.weights_id)
        check_polish(session, body, ds, ws)
        weight_set_id = ws.id
        params = body.params.model_dump(mode="json")
    else:
        check_solve(session, body, ds, settings)
        params = solve_params(body, settings)
    job = Job(owner=owner, kind=body.kind, state="queued", dataset_id=ds.id,
              weight_set_id=weight_set_id, params=params,
              idempotency_key=idempotency_key or None, request_hash=digest,
              progress=0.0, stage="queued", attempts=0, enqueued_at=utcnow())
    session.add(job)
    try:
        session.commit()  # committed before publishing
    except IntegrityError:  # a concurrent request with the same Idempotency-Key won
        session.rollback()
        prior = _by_idempotency_key(session, owner, idempotency_key)
        if prior is None:
            raise
        return _replay(prior, digest), False
    return job, True


def solve_params(body: SolveJobCreate, settings: Settings) -> dict[str, Any]:
    """The parameters stored with a solve job (what the worker passes to the engine)."""
    params = body.params.model_dump(mode="json")
    if body.params.source == "exhaustive":
        params.pop("n_columns", None)
    # the worker resolves source='auto' against the same limit as check_solve
    params["max_columns"] = min(body.params.max_columns, settings.max_dictionary_columns)
    if params.get("max_time") is None:
        params["max_time"] = settings.default_max_time
    return params


def cancel_job(session: Session, owner: str, job_id: str) -> Job:
    """Cancel a queued or running job (a running worker stops at its next progress check);
    :class:`Conflict` when it already finished."""
    job = get_job(session, owner, job_id)
    res = session.execute(
        update(Job).where(Job.id == job.id, Job.state.in_(("queued", "running")))
        .values(state="cancelled", finished_at=utcnow(), worker_id=None,
                error_code="cancelled", error_message="cancelled by the client")
    )
    session.commit()
    session.refresh(job)
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise Conflict(f"job {job_id!r} already {job.state}; cannot cancel")
    return job


# -------------------------------------------------------------------------------------- networks
def get_network(session: Session, owner: str, network_id: str) -> Network:
    net = session.scalar(select(Network).where(Network.id == network_id)
                         .options(selectinload(Network.neurons)))
    if net is None or net.owner != owner:
        raise NotFound("network", network_id)
    return net


def list_networks(session: Session, owner: str, limit: int,
                  offset: int) -> tuple[int, list[Network]]:
    q = select(Network).where(Network.owner == owner).options(selectinload(Network.neurons))
    return page(session, q, (Network.created_at.desc(), Network.id), limit, offset)


def summary_of(net: Network) -> ResultSummary:
    """The network's stored summary, typed."""
    return ResultSummary.model_validate(net.summary or {})


def neuron_extra(nr: Neuron) -> NeuronExtra:
    """A stored neuron's extra fields, typed."""
    return NeuronExtra.model_validate(nr.extra or {})


def layers_of(net: Network) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W, b), ...]`` in (d_in, d_out) layout: the stored layers of a deep network, or
    ``W1`` (d, m), ``b1`` (m,), ``W2`` (m, c), ``b2`` (c,) from the neurons."""
    if net.layers:
        layers = [StoredLayer.model_validate(ly) for ly in net.layers]
        return [(np.array(ly.W, dtype=float).reshape(len(ly.W), len(ly.b)),
                 np.array(ly.b, dtype=float)) for ly in layers]
    m = len(net.neurons)
    W1 = (np.array([nr.weight for nr in net.neurons], dtype=float).T if m
          else np.zeros((net.n_features, 0)))
    b1 = np.array([nr.bias for nr in net.neurons], dtype=float)
    W2 = (np.array([nr.output_weight for nr in net.neurons], dtype=float) if m
          else np.zeros((0, net.n_outputs)))
    b2 = np.array(net.output_bias, dtype=float)
    return [(W1.reshape(net.n_features, m), b1), (W2.reshape(m, net.n_outputs), b2)]


def arrays_of(net: Network) -> dict[str, np.ndarray]:
    """``W1, b1, W2, b2, ...`` as in ``TwoLayerNetwork`` (more layers for deep networks)."""
    out: dict[str, np.ndarray] = {}
    for i, (W, b) in enumerate(layers_of(net), start=1):
        out[f"W{i}"], out[f"b{i}"] = W, b
    return out


def predict(net: Network, rows: list[list[float]], settings: Settings) -> np.ndarray:
    """The network's outputs ``(n, c)`` on ``rows``; :class:`Invalid` for inputs of the wrong
    shape, non-finite inputs or outputs that overflow."""
    if len(rows) > settings.max_predict_rows:
        raise Invalid(f"X has {len(rows)} rows, over the limit of {settings.max_predict_rows}")
    if not rows:
        raise Invalid("X must have at least one row")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise Invalid(f"X is ragged: rows have lengths {sorted(widths)[:5]}")
    X = np.array(rows, dtype=float)
    if X.shape[1] != net.n_features:
        raise Invalid(f"X has {X.shape[1]} columns; the network expects {net.n_features}")
    if not np.all(np.isfinite(X)):
        raise Invalid("X contains NaN or infinite values")
    layers = layers_of(net)
    with np.errstate(over="ignore", invalid="ignore"):
        out = X
        for W, b in layers[:-1]:
            out = np.maximum(out @ W + b, 0.0)
        out = out @ layers[-1][0] + layers[-1][1]
    if not np.all(np.isfinite(out)):
        raise Invalid("outputs overflow for this X")
    return np.asarray(out)


def find_neurons(session: Session, owner: str, sample: int, network_id: str | None, limit: int,
                 offset: int) -> tuple[int, list[tuple[Neuron, str]]]:
    """Every neuron of the owner's networks whose index set contains training sample
    ``sample``, with its network's job id."""
    q = (select(Neuron, Network.job_id)
         .join(NeuronSample, NeuronSample.neuron_id == Neuron.id)
         .join(Network, Network.id == Neuron.network_id)
         .where(NeuronSample.sample_index == sample, Network.owner == owner))
    if network_id:
        q = q.where(Network.id == network_id)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.execute(q.order_by(Network.created_at, Neuron.network_id, Neuron.position)
                           .limit(limit).offset(offset)).all()
    return int(total), [(nr, job_id) for nr, job_id in rows]
