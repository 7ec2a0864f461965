"""Networks: reconstructed two-layer ReLU networks with per-neuron index sets."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS, not_found, npz_bytes, page, safetensors_bytes
from app.models import Network, Neuron, NeuronSample
from app.schemas import (
    IndexSetOut,
    LayerOut,
    NetworkOut,
    NeuronHit,
    NeuronOut,
    Page,
    PredictIn,
    PredictOut,
)

router = APIRouter(tags=["networks"], responses=ERRORS)


def get_owned(session: SessionDep, owner: str, network_id: str) -> Network:
    net = session.scalar(select(Network).where(Network.id == network_id)
                         .options(selectinload(Network.neurons)))
    if net is None or net.owner != owner:
        raise not_found("network", network_id)
    return net


def arrays_of(net: Network) -> dict[str, np.ndarray]:
    """``W1`` (d, m), ``b1`` (m,), ``W2`` (m, c), ``b2`` (c,) as in ``TwoLayerNetwork``."""
    m = len(net.neurons)
    W1 = (np.array([nr.weight for nr in net.neurons], dtype=float).T if m
          else np.zeros((net.n_features, 0)))
    b1 = np.array([nr.bias for nr in net.neurons], dtype=float)
    W2 = (np.array([nr.output_weight for nr in net.neurons], dtype=float) if m
          else np.zeros((0, net.n_outputs)))
    b2 = np.array(net.output_bias, dtype=float)
    return {"W1": W1.reshape(net.n_features, m), "b1": b1, "W2": W2.reshape(m, net.n_outputs),
            "b2": b2}


def _index_set(d: dict | None) -> IndexSetOut | None:  # type: ignore[type-arg]
    if not d:
        return None
    return IndexSetOut(samples=list(d.get("samples", [])),
                       directions=list(d.get("directions", [])), sign=int(d.get("sign", 1)))


def network_out(net: Network) -> NetworkOut:
    arr = arrays_of(net)
    return NetworkOut(
        id=net.id, job_id=net.job_id, dataset_id=net.dataset_id, n_features=net.n_features,
        n_outputs=net.n_outputs, n_neurons=net.n_neurons, output_bias=net.output_bias,
        primal_objective=net.primal_objective, dual_objective=net.dual_objective,
        relative_gap=net.relative_gap, certified=net.certified, summary=net.summary,
        layers=[LayerOut(name="hidden", W=arr["W1"].tolist(), b=arr["b1"].tolist()),
                LayerOut(name="output", W=arr["W2"].tolist(), b=arr["b2"].tolist())],
        neurons=[NeuronOut(id=nr.id, position=nr.position, weight=nr.weight, bias=nr.bias,
                           output_weight=nr.output_weight, index_set=_index_set(nr.index_set),
                           formula=nr.formula, residual=nr.residual) for nr in net.neurons],
        created_at=net.created_at,
    )


@router.get("/networks", response_model=Page[NetworkOut])
def list_networks(
    session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[NetworkOut]:
    q = select(Network).where(Network.owner == owner).options(selectinload(Network.neurons))
    total, rows = page(session, q, (Network.created_at.desc(), Network.id), limit, offset)
    return Page[NetworkOut](items=[network_out(r) for r in rows], total=total, limit=limit,
                            offset=offset)


@router.get("/networks/{network_id}", response_model=NetworkOut)
def get_network(network_id: str, session: SessionDep, owner: OwnerDep) -> NetworkOut:
    """The network, every neuron with its index set, formula, residual and output weight, and
    the certificate (primal objective, dual bound, relative gap, certified)."""
    return network_out(get_owned(session, owner, network_id))


@router.post("/networks/{network_id}/predict", response_model=PredictOut,
             responses={422: {"description": "X has the wrong shape or is not finite"}})
def predict(network_id: str, body: PredictIn, session: SessionDep, owner: OwnerDep,
            settings: SettingsDep) -> PredictOut:
    net = get_owned(session, owner, network_id)
    if len(body.X) > settings.max_predict_rows:
        raise HTTPException(422, f"X has {len(body.X)} rows, over the limit of "
                            f"{settings.max_predict_rows}")
    if not body.X:
        raise HTTPException(422, "X must have at least one row")
    widths = {len(r) for r in body.X}
    if len(widths) != 1:
        raise HTTPException(422, f"X is ragged: rows have lengths {sorted(widths)[:5]}")
    X = np.array(body.X, dtype=float)
    if X.shape[1] != net.n_features:
        raise HTTPException(422, f"X has {X.shape[1]} columns; the network expects "
                            f"{net.n_features}")
    if not np.all(np.isfinite(X)):
        raise HTTPException(422, "X contains NaN or infinite values")
    a = arrays_of(net)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.maximum(X @ a["W1"] + a["b1"], 0.0) @ a["W2"] + a["b2"]
    if not np.all(np.isfinite(out)):
        raise HTTPException(422, "outputs overflow for this X")
    if net.n_outputs == 1:
        return PredictOut(outputs=out[:, 0].tolist())
    return PredictOut(outputs=out.tolist())


@router.get("/networks/{network_id}/export", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "W1 (d, m), b1 (m,), W2 (m, c), b2 (c,)"}})
def export_network(
    network_id: str, session: SessionDep, owner: OwnerDep,
    format: Literal["npz", "safetensors"] = "npz",
) -> Response:
    net = get_owned(session, owner, network_id)
    arrays = arrays_of(net)
    data = npz_bytes(arrays) if format == "npz" else safetensors_bytes(arrays)
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{network_id}.{format}"'})


@router.get("/neurons", response_model=Page[NeuronHit])
def find_neurons(
    session: SessionDep, owner: OwnerDep,
    sample: Annotated[int, Query(ge=0, le=2**31 - 1,
                                 description="row index into the training dataset")],
    network_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[NeuronHit]:
    """Every neuron of the caller's networks whose index set contains training sample
    ``sample``."""
    q = (select(Neuron, Network.job_id)
         .join(NeuronSample, NeuronSample.neuron_id == Neuron.id)
         .join(Network, Network.id == Neuron.network_id)
         .where(NeuronSample.sample_index == sample, Network.owner == owner))
    if network_id:
        q = q.where(Network.id == network_id)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.execute(q.order_by(Network.created_at, Neuron.network_id, Neuron.position)
                           .limit(limit).offset(offset)).all()
    items = [NeuronHit(neuron_id=nr.id, network_id=nr.network_id, job_id=job_id,
                       position=nr.position, index_set=_index_set(nr.index_set),
                       formula=nr.formula) for nr, job_id in rows]
    return Page[NeuronHit](items=items, total=total, limit=limit, offset=offset)
