"""Data access and domain checks of the API, below the routes.

Every lookup is scoped to the caller's owner id (another key's resource is "not found"). The
checks reject what the engine would refuse, with a message saying what to change. Errors are
:class:`NotFound` (404), :class:`Invalid` (422) and :class:`Conflict` (409); they are
``HTTPException`` subclasses, so routes let them through unchanged.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, cast

import numpy as np
from fastapi import HTTPException
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app import quotas
from app.core.config import Settings
from app.models import (
    Dataset,
    Job,
    Network,
    Neuron,
    NeuronSample,
    PricingPart,
    PricingRound,
    WeightSet,
    utcnow,
)
from app.schemas import (
    JobCreate,
    NeuronExtra,
    PolishJobCreate,
    ResultSummary,
    SolveJobCreate,
    StoredLayer,
)
from app.storage import get_array

T = TypeVar("T")


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


def get_job_with_network(session: Session, owner: str, job_id: str) -> tuple[Job, str | None]:
    """A job and the id of the network it produced (``None`` while it has none), in one
    query (what ``GET /jobs/{id}``, the most frequent request, needs)."""
    row = session.execute(
        select(Job, Network.id).outerjoin(Network, Network.job_id == Job.id)
        .where(Job.id == job_id)
    ).first()
    if row is None or row[0].owner != owner:
        raise NotFound("job", job_id)
    return row[0], row[1]


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
        shape, distinct = _label_summary(session, ds.y_sha256)
        if len(shape) != 1 or distinct != 2:
            raise Invalid(f"loss={loss!r} needs a single-output y with exactly 2 distinct "
                          f"values; the dataset's y has shape {list(shape)} and {distinct} "
                          "distinct values")
        return 1
    if loss == "softmax":
        if ds.outputs != 1 or not ds.y_dtype.startswith("int"):
            raise Invalid("loss='softmax' needs integer class labels y of shape (n,)")
        n_classes = _label_summary(session, ds.y_sha256)[1]
        if n_classes < 2:
            raise Invalid(f"loss='softmax' needs at least 2 distinct class labels in y; the "
                          f"dataset's y has {n_classes}")
        return n_classes
    return int(ds.outputs)


def _dictionary_size(session: Session, ds: Dataset, p: int, bias: bool) -> int:
    """Columns of the exact dictionary, as the engine counts them: ``p = 1`` from ``n`` and
    ``d``; ``p = 2`` from the rank of the data (one small SVD, as ``wedgenet.solve`` does),
    so ``source="auto"`` resolves here exactly as in the worker."""
    import wedgenet

    if p == 1:
        return int(wedgenet.dictionary_size(ds.n, ds.d, p=1, bias=bias))
    size = _by_content.get(("p2-size", ds.x_sha256, bias),
                           lambda: _p2_size(get_array(session, ds.x_sha256), bias))
    if isinstance(size, str):
        raise Invalid(f"p=2, bias={bias} cannot be used on dataset {ds.id!r}: {size}")
    return size


class ContentFacts:
    """What a submission needs to know of a stored array (the ``p = 2`` dictionary size of
    X, the shape and distinct labels of y), kept by the array's content hash. Arrays are
    stored by that hash, so an entry never goes stale; kept so that submitting jobs on a big
    dataset does not read (and decompose) its arrays each time. At most ``kept`` entries,
    the oldest dropped first; safe to share between threads."""

    def __init__(self, kept: int = 1024) -> None:
        self.kept = kept
        self._facts: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """The fact under ``key`` (its first items: what it is, the content hash),
        ``compute()`` when missing. Two threads missing it at once both compute it."""
        with self._lock:
            if key in self._facts:
                return cast(T, self._facts[key])
        value = compute()
        with self._lock:
            self._facts[key] = value
            while len(self._facts) > self.kept:
                self._facts.pop(next(iter(self._facts)))
        return value

    def clear(self) -> None:
        with self._lock:
            self._facts.clear()


_by_content = ContentFacts()


def _label_summary(session: Session, y_sha256: str) -> tuple[tuple[int, ...], int]:
    """The shape of a stored y and its number of distinct values."""

    def summary() -> tuple[tuple[int, ...], int]:
        y = get_array(session, y_sha256)
        return tuple(y.shape), int(np.unique(y).size)

    return _by_content.get(("labels", y_sha256), summary)


def _p2_size(X: np.ndarray, bias: bool) -> int | str:
    """Columns of the exact ``p = 2`` dictionary of ``X`` (from its rank), or why the engine
    refuses ``X``."""
    import wedgenet
    from wedgenet.dictionary import WedgeDictionary

    try:
        return int(WedgeDictionary(X, p=2, bias=bias).size)
    except wedgenet.WedgeNetError as exc:
        return str(exc)


def _check_bias(bias: bool, ds: Dataset) -> None:
    if bias and ds.n < 2:
        raise Invalid(f"bias=true needs at least 2 distinct samples; dataset {ds.id!r} has "
                      f"n={ds.n} (one sample defines no hyperplane): use bias=false")


def check_solve(session: Session, body: SolveJobCreate, ds: Dataset, settings: Settings) -> None:
    """Reject parameters the engine would refuse (or silently ignore when they were asked
    for explicitly), with a message naming the parameter to change. Everything
    ``wedgenet.solve`` checks that can be checked without solving is checked here, so a
    queued job fails later only on what the engine finds while running."""
    prm = body.params
    given = prm.model_fields_set
    check_labels(session, prm.loss, ds)
    _check_bias(prm.bias, ds)
    if prm.depth == 3:
        _check_three_layer(body, ds)
        return
    if prm.source == "sample" and prm.n_columns is None:
        raise Invalid("source='sample' needs n_columns (the number of random hyperplanes "
                      "to sample)")
    if prm.scan_parts > settings.max_scan_parts:
        raise Invalid(f"scan_parts={prm.scan_parts} exceeds the limit of "
                      f"{settings.max_scan_parts}")
    if prm.solver == "cvxpy":
        if prm.scan_parts > 1:
            raise Invalid("scan_parts > 1 needs solver='auto' or 'workingset' (the cvxpy "
                          "reference solver does not scan the dictionary)")
        if prm.warm_start != "none":
            raise Invalid("warm_start needs solver='auto' or 'workingset' (the cvxpy "
                          "reference solver has no working set to seed)")
        if "max_time" in given and prm.max_time is not None:
            raise Invalid("max_time needs solver='auto' or 'workingset' (it stops column "
                          "generation; the cvxpy reference solver runs to the end)")
    if prm.n_columns is not None and prm.n_columns > settings.max_dictionary_columns:
        raise Invalid(f"n_columns={prm.n_columns} exceeds the limit of "
                      f"{settings.max_dictionary_columns}")
    if prm.source == "sample":
        return
    size = _dictionary_size(session, ds, prm.p, prm.bias)
    limit = min(prm.max_columns, settings.max_dictionary_columns)
    source = prm.source
    if source == "auto":
        source = "exhaustive" if size <= limit else "search"
    how = ("" if prm.source != "auto" else
           f"source='auto' resolves to {source!r} here (the exact dictionary has about "
           f"{size} columns, limit {limit}); ")
    if source == "exhaustive":
        if prm.n_columns is not None:
            raise Invalid(f"{how}n_columns is only used with source='sample' or 'search'")
        if size > limit:
            raise Invalid(
                f"the exhaustive dictionary for n={ds.n}, d={ds.d} (p={prm.p}, "
                f"bias={prm.bias}) has about {size} columns, over the limit of {limit} "
                "(max_columns, WEDGENET_MAX_DICTIONARY_COLUMNS); use source='search' (or "
                "'auto')")
    else:  # searched
        if prm.solver == "cvxpy":
            raise Invalid(f"{how}solver='cvxpy' needs a dictionary it can materialize; the "
                          f"dictionary (about {size} columns) is searched: use solver='auto' "
                          "or 'workingset'")
        if prm.scan_parts > 1:
            raise Invalid(f"{how}scan_parts > 1 splits full scans; the dictionary (about "
                          f"{size} columns) is searched, not scanned: use scan_parts=1")


def _check_three_layer(body: SolveJobCreate, ds: Dataset) -> None:
    """``depth=3`` (``wedgenet.solve_three_layer``): one output, the exact dictionary scanned
    by column generation; the options it does not use are refused, naming ``depth``."""
    from wedgenet.threelayer import n_direction_subsets
    from wedgenet.threelayer.solve import MAX_DIRECTIONS

    prm = body.params
    if prm.loss == "softmax" or ds.outputs != 1:
        raise Invalid(f"depth=3 networks have one output: loss must be squared (with a 1-D y), "
                      f"logistic or hinge; got loss={prm.loss!r} on a dataset with "
                      f"{ds.outputs} output column(s)")
    refused = [
        (prm.p != 1, f"p={prm.p} (depth=3 needs p=1, the exact three-layer dictionary)"),
        (prm.source not in ("auto", "exhaustive"),
         f"source={prm.source!r} (depth=3 scans the whole dictionary: 'auto' or "
         "'exhaustive')"),
        (prm.solver == "cvxpy", "solver='cvxpy' (depth=3 solves by column generation: "
         "'auto' or 'workingset')"),
        (prm.scan_parts > 1, f"scan_parts={prm.scan_parts} (depth=3 scans in one worker: 1)"),
        (prm.warm_start != "none", f"warm_start={prm.warm_start!r} (depth=3: 'none')"),
        (prm.n_columns is not None, "n_columns (not used with depth=3: leave it out)"),
    ]
    for bad, what in refused:
        if bad:
            raise Invalid(f"depth=3 does not support {what}")
    n_dirs = n_direction_subsets(ds.n, ds.d, bias=prm.bias)
    if n_dirs > MAX_DIRECTIONS:
        raise Invalid(f"depth=3: the three-layer dictionary for n={ds.n}, d={ds.d} "
                      f"(bias={prm.bias}) has {n_dirs} first-layer directions, over the "
                      f"limit of {MAX_DIRECTIONS}; use depth=2 or fewer samples")


def check_polish(session: Session, body: PolishJobCreate, ds: Dataset, ws: WeightSet) -> None:
    """The weight set must be a network on this dataset's inputs with the outputs the loss
    needs; the options must leave data to polish on."""
    prm = body.params
    outputs = check_labels(session, prm.loss, ds)
    _check_bias(prm.bias, ds)
    if prm.p == 2:  # the polished neurons' formulas need the data's rank
        _dictionary_size(session, ds, 2, prm.bias)
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
    quotas.check_active_jobs(session, owner, settings)  # 429 before any other work
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


#: job states a job can be deleted in (queued and running jobs must be cancelled first)
FINISHED = ("succeeded", "failed", "cancelled")


def delete_job(session: Session, owner: str, job_id: str) -> None:
    """Delete a finished job and its network (neurons, index-set rows) and any pricing rounds
    left behind; :class:`Conflict` while it is queued or running (cancel it first). The
    network goes with the job: it is the job's result (one per job, ``networks.job_id`` is
    unique and required)."""
    job = get_job(session, owner, job_id)
    if job.state not in FINISHED:
        raise Conflict(f"job {job_id!r} is {job.state}; cancel it first (POST "
                       f"/jobs/{job_id}/cancel), then delete it")
    _delete_networks(session, select(Network.id).where(Network.job_id == job.id))
    rounds = select(PricingRound.id).where(PricingRound.job_id == job.id)
    session.execute(delete(PricingPart).where(PricingPart.round_id.in_(rounds)),
                    execution_options={"synchronize_session": False})
    session.execute(delete(PricingRound).where(PricingRound.job_id == job.id),
                    execution_options={"synchronize_session": False})
    res = session.execute(delete(Job).where(Job.id == job.id, Job.state.in_(FINISHED)),
                          execution_options={"synchronize_session": False})
    if res.rowcount == 0:  # type: ignore[attr-defined]
        session.rollback()
        raise Conflict(f"job {job_id!r} changed state meanwhile; try again")
    session.commit()
    session.expunge_all()


# -------------------------------------------------------------------------------------- networks
def get_network(session: Session, owner: str, network_id: str,
                with_neurons: bool = True) -> Network:
    q = select(Network).where(Network.id == network_id)
    if with_neurons:
        q = q.options(selectinload(Network.neurons))
    net = session.scalar(q)
    if net is None or net.owner != owner:
        raise NotFound("network", network_id)
    return net


def list_networks(session: Session, owner: str, limit: int, offset: int,
                  with_neurons: bool = False) -> tuple[int, list[Network]]:
    """One page of the owner's networks, newest first; their neurons only when asked for."""
    q = select(Network).where(Network.owner == owner)
    if with_neurons:
        q = q.options(selectinload(Network.neurons))
    return page(session, q, (Network.created_at.desc(), Network.id), limit, offset)


def _delete_networks(session: Session, ids: Select[Any]) -> None:
    """Delete the networks whose ids ``ids`` selects, with their neurons and index-set rows
    (explicitly, child rows first: the same on every backend, foreign keys enforced or not).
    The caller commits."""
    neurons = select(Neuron.id).where(Neuron.network_id.in_(ids))
    opts = {"synchronize_session": False}
    session.execute(delete(NeuronSample).where(NeuronSample.neuron_id.in_(neurons)),
                    execution_options=opts)
    session.execute(delete(Neuron).where(Neuron.network_id.in_(ids)), execution_options=opts)
    session.execute(delete(Network).where(Network.id.in_(ids)), execution_options=opts)


def delete_network(session: Session, owner: str, network_id: str) -> None:
    """Delete a network with its neurons and index-set rows. Its job stays (finished, with
    no network any more)."""
    net = get_network(session, owner, network_id, with_neurons=False)
    _delete_networks(session, select(Network.id).where(Network.id == net.id))
    session.commit()
    session.expunge_all()


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


def _as_labels(classes: list[Any], y_dtype: str | None) -> list[Any]:
    """Class labels as the dataset stores them: the worker trains binary losses on a float
    copy of y, so integer labels come back as 3.0; integer datasets get 3 again."""
    if y_dtype is not None and y_dtype.startswith("int"):
        return [int(c) if isinstance(c, float) and c.is_integer() else c for c in classes]
    return classes


def classes_of(session: Session, net: Network) -> list[Any] | None:
    """The class labels of a classification network, in the order of its outputs (``None``
    for regression): stored with the result (``summary.classes``); for results stored
    without them, the distinct labels of the training dataset while it exists."""
    return classes_of_many(session, [net])[net.id]


def classes_of_many(session: Session, nets: Sequence[Network]) -> dict[str, list[Any] | None]:
    """:func:`classes_of` for several networks (one query for their datasets)."""
    ds_ids = {n.dataset_id for n in nets if n.dataset_id}
    dtypes: dict[str, str] = {}
    if ds_ids:
        dtypes = {i: t for i, t in session.execute(
            select(Dataset.id, Dataset.y_dtype).where(Dataset.id.in_(ds_ids)))}
    out: dict[str, list[Any] | None] = {}
    for net in nets:
        summary = summary_of(net)
        y_dtype = dtypes.get(net.dataset_id or "")
        if summary.loss not in ("logistic", "hinge", "softmax"):
            out[net.id] = None
        elif summary.classes is not None:
            out[net.id] = _as_labels(list(summary.classes), y_dtype)
        elif y_dtype is not None and net.dataset_id:
            ds = session.get(Dataset, net.dataset_id)
            assert ds is not None
            out[net.id] = [v.item() for v in np.unique(get_array(session, ds.y_sha256))]
        else:
            out[net.id] = None
    return out


def classify(scores: np.ndarray, loss: str | None, classes: list[Any] | None
             ) -> tuple[list[Any] | None, np.ndarray | None]:
    """Labels and probabilities of raw outputs ``scores`` (n, c), as
    ``wedgenet.estimator.WedgeNetClassifier`` predicts them: logistic/hinge: ``classes[1]``
    where the score is > 0, else ``classes[0]``, probabilities ``[1 - sigmoid(s), sigmoid(s)]``
    (logistic only); softmax: the class of the largest output, probabilities the softmax of
    the outputs. ``(None, None)`` for regression (or when the labels are unknown)."""
    from scipy.special import expit, softmax

    if classes is None or loss not in ("logistic", "hinge", "softmax"):
        return None, None
    if loss in ("logistic", "hinge"):
        if scores.shape[1] != 1 or len(classes) != 2:
            return None, None
        s = scores[:, 0]
        labels = [classes[1] if v > 0 else classes[0] for v in s]
        if loss == "hinge":
            return labels, None
        p1 = expit(s)
        return labels, np.column_stack([1.0 - p1, p1])
    if scores.shape[1] != len(classes):
        return None, None
    labels = [classes[int(i)] for i in np.argmax(scores, axis=1)]
    return labels, softmax(scores, axis=1)


def two_layer_network(net: Network) -> Any:
    """The stored two-layer network as a ``wedgenet.TwoLayerNetwork`` (neurons with their
    index sets and formulas); :class:`Invalid` for deep polished networks."""
    from wedgenet.network import IndexSet, TwoLayerNetwork
    from wedgenet.network import Neuron as EngineNeuron

    if net.layers:
        raise Invalid(f"network {net.id!r} has {len(net.layers)} layers; this needs a "
                      "two-layer network")
    neurons = [
        EngineNeuron(weight=np.asarray(nr.weight, dtype=float), bias=float(nr.bias),
                     output_weight=np.asarray(nr.output_weight, dtype=float),
                     index_set=IndexSet.from_dict(nr.index_set) if nr.index_set else None,
                     formula=nr.formula, residual=float(nr.residual))
        for nr in net.neurons
    ]
    return TwoLayerNetwork(neurons=neurons, output_bias=np.asarray(net.output_bias, dtype=float),
                           n_features=net.n_features)


def three_layer_network(net: Network) -> Any:
    """A stored depth-3 network as a ``wedgenet.threelayer.ThreeLayerNetwork`` (blocks with
    their first-layer index sets, ``l``, ``j0``, shape and formula)."""
    from wedgenet.threelayer.dictionary import FirstLayerIndexSet
    from wedgenet.threelayer.network import Block, ThreeLayerNetwork

    blocks = []
    for nr in net.neurons:
        extra = neuron_extra(nr)
        iset = None
        if nr.index_set:
            d = dict(nr.index_set)
            iset = FirstLayerIndexSet(
                samples=tuple(d.get("samples", ())),
                differences=tuple(tuple(p) for p in d.get("differences", ())),  # type: ignore[misc]
                directions=tuple(d.get("directions", ())), sign=int(d.get("sign", 1)))
        blocks.append(Block(
            np.asarray(nr.weight, dtype=float), float(nr.bias),
            float(extra.second_layer_weight or 0.0), float(extra.second_layer_bias or 0.0),
            float(np.asarray(nr.output_weight, dtype=float).reshape(-1)[0]), index_set=iset,
            bias_sample=extra.bias_sample, threshold_sample=extra.threshold_sample,
            shape=extra.shape, formula=nr.formula, residual=float(nr.residual)))
    bias = float(np.asarray(net.output_bias, dtype=float).reshape(-1)[0])
    return ThreeLayerNetwork(blocks, bias, int(net.n_features))


#: pyplot keeps global state: one figure at a time per process
_PLOT_LOCK = threading.Lock()


def plot(session: Session, net: Network, fmt: Literal["png", "svg"],
         neuron: int | None) -> bytes:
    """``wedgenet.plot.render`` of a two-layer network on 2-D inputs over its training data:
    prediction regions, breaklines, index-set samples (neuron ``neuron`` highlighted), axis
    labels and colour bar. :class:`Invalid` for other networks, :class:`Conflict` when the
    training dataset was deleted."""
    from wedgenet.plot import render

    if net.n_features != 2:
        raise Invalid(f"plots need 2-D inputs; network {net.id!r} has {net.n_features} "
                      "input features")
    depth3 = summary_of(net).depth == 3
    network = three_layer_network(net) if depth3 else two_layer_network(net)
    units = network.blocks if depth3 else network.neurons
    if neuron is not None and not 0 <= neuron < len(units):
        raise Invalid(f"neuron={neuron} is out of range: network {net.id!r} has "
                      f"{len(units)} {'blocks' if depth3 else 'neurons'} (0 to {len(units) - 1})")
    ds = session.get(Dataset, net.dataset_id) if net.dataset_id else None
    if ds is None:
        raise Conflict(f"the training dataset of network {net.id!r} was deleted; the plot "
                       "draws its samples and index sets over it")
    X, y = get_array(session, ds.x_sha256), get_array(session, ds.y_sha256)
    summary = summary_of(net)
    what = "polished, " if net.kind == "polish" else ""
    cert = "certified" if net.certified else "not certified"
    obj = "" if net.primal_objective is None else f", objective {net.primal_objective:.4g}"
    title = f"{what}{len(units)} {'blocks' if depth3 else 'neurons'}{obj} ({cert})"
    if neuron is not None:
        title += f"; neuron {neuron} highlighted"
    with _PLOT_LOCK:
        return render(network, X, y, format=fmt, loss=summary.loss,
                      classes=classes_of(session, net), title=title, highlight=neuron)


def model_card(session: Session, net: Network) -> dict[str, Any]:
    """The network's model card (``wedgenet.export.card_from_dict``, the keys of the CLI's
    cards): wedgenet version, parameters, dataset hash, objective, dual bound, gap, certified,
    every neuron's index set and formula; plus the service's ids."""
    from wedgenet.export import card_from_dict

    summary = dict(net.summary or {})
    if net.kind != "polish":
        units = [{"index_set": nr.index_set, "formula": nr.formula, "residual": nr.residual}
                 for nr in net.neurons]
        if summary_of(net).depth == 3:  # blocks, with l, j0 and shape
            for unit, nr in zip(units, net.neurons, strict=True):
                extra = neuron_extra(nr)
                unit.update(bias_sample=extra.bias_sample,
                            threshold_sample=extra.threshold_sample, shape=extra.shape)
        summary.update(
            primal_objective=net.primal_objective, dual_objective=net.dual_objective,
            relative_gap=net.relative_gap, certified=net.certified,
            network={"blocks": units} if summary_of(net).depth == 3 else {"neurons": units})
    summary.setdefault("params", {})
    summary.setdefault("neurons", [])
    summary["classes"] = classes_of(session, net)
    ds = session.get(Dataset, net.dataset_id) if net.dataset_id else None
    return card_from_dict(
        summary, dataset_sha256=ds.content_hash if ds is not None else None,
        extra={"network_id": net.id, "job_id": net.job_id, "dataset_id": net.dataset_id,
               "dataset_hash": "sha256 over the dataset's X and y .npy blob hashes "
                               "(GET /datasets/{id}: content_hash, x_sha256, y_sha256)"})


ExportFormat = Literal["npz", "safetensors", "onnx", "card"]


def export(session: Session, net: Network, fmt: ExportFormat,
           output: Literal["scores", "probabilities"] = "scores") -> bytes:
    """The network as ``fmt``: ``npz`` (``W1, b1, ...`` in (d_in, d_out) layout),
    ``safetensors`` (PyTorch ``nn.Sequential`` names, model card in the header), ``onnx``
    (model card in the metadata; ``output="probabilities"`` for logistic/softmax networks) or
    ``card`` (the model card as JSON)."""
    import io as _io

    from wedgenet import WedgeNetError
    from wedgenet import export as wexport

    layers = layers_of(net)
    if fmt == "npz":
        buf = _io.BytesIO()
        np.savez(buf, allow_pickle=False, **arrays_of(net))  # type: ignore[arg-type]
        return buf.getvalue()
    card = model_card(session, net)
    if fmt == "card":
        return json.dumps(card, indent=1, allow_nan=False).encode()
    if fmt == "safetensors":
        return wexport.to_safetensors(layers, card)
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        raise HTTPException(501, "ONNX export needs the onnx package on the server: pip "
                            "install 'wedgenet[export]'")
    loss = summary_of(net).loss
    if output == "probabilities" and loss not in ("logistic", "softmax"):
        raise Invalid(f"output='probabilities' needs a network trained with loss='logistic' or "
                      f"'softmax'; network {net.id!r} was trained with loss={loss!r}")
    try:
        return wexport.to_onnx(layers, output=output, loss=loss, card=card)
    except WedgeNetError as exc:
        raise Invalid(str(exc)) from None


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
