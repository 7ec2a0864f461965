"""Networks: reconstructed two-layer ReLU networks with per-neuron index sets, polished
networks (two-layer: neurons with index sets; deeper: the layers and the polish report)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app import crud
from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS, npz_bytes, safetensors_bytes
from app.models import Network
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


def _index_set(d: dict[str, Any] | None) -> IndexSetOut | None:
    if not d:
        return None
    return IndexSetOut(samples=list(d.get("samples", [])),
                       directions=list(d.get("directions", [])), sign=int(d.get("sign", 1)))


def _layer_names(n: int) -> list[str]:
    if n == 2:
        return ["hidden", "output"]
    return [f"hidden{i}" for i in range(1, n)] + ["output"]


def network_out(net: Network) -> NetworkOut:
    layers = crud.layers_of(net)
    summary = crud.summary_of(net)
    neurons = []
    for nr in net.neurons:
        extra = crud.neuron_extra(nr)
        neurons.append(NeuronOut(
            id=nr.id, position=nr.position, weight=nr.weight, bias=nr.bias,
            output_weight=nr.output_weight, index_set=_index_set(nr.index_set),
            formula=nr.formula, residual=nr.residual, kind=extra.kind, source=extra.source,
            angle_deg=extra.angle_deg))
    return NetworkOut(
        id=net.id, job_id=net.job_id, kind=net.kind,  # type: ignore[arg-type]
        dataset_id=net.dataset_id, n_features=net.n_features,
        n_outputs=net.n_outputs, n_neurons=net.n_neurons, n_layers=len(layers),
        output_bias=net.output_bias,
        primal_objective=net.primal_objective, dual_objective=net.dual_objective,
        relative_gap=net.relative_gap, certified=net.certified, summary=net.summary,
        layers=[LayerOut(name=name, W=W.tolist(), b=b.tolist())
                for name, (W, b) in zip(_layer_names(len(layers)), layers, strict=True)],
        neurons=neurons,
        polish=summary.polish_report() if net.kind == "polish" else None,
        l2_bound=summary.l2_bound.out() if summary.l2_bound is not None else None,
        distributed_scan=summary.distributed_scan(),
        created_at=net.created_at,
    )


@router.get("/networks", response_model=Page[NetworkOut])
def list_networks(
    session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Page[NetworkOut]:
    total, rows = crud.list_networks(session, owner, limit, offset)
    return Page[NetworkOut](items=[network_out(r) for r in rows], total=total, limit=limit,
                            offset=offset)


@router.get("/networks/{network_id}", response_model=NetworkOut)
def get_network(network_id: str, session: SessionDep, owner: OwnerDep) -> NetworkOut:
    """The network, every neuron with its index set, formula, residual and output weight, and
    the certificate (primal objective, dual bound, relative gap, certified)."""
    return network_out(crud.get_network(session, owner, network_id))


@router.post("/networks/{network_id}/predict", response_model=PredictOut,
             responses={422: {"description": "X has the wrong shape or is not finite"}})
def predict(network_id: str, body: PredictIn, session: SessionDep, owner: OwnerDep,
            settings: SettingsDep) -> PredictOut:
    net = crud.get_network(session, owner, network_id)
    out = crud.predict(net, body.X, settings)
    if net.n_outputs == 1:
        return PredictOut(outputs=out[:, 0].tolist())
    return PredictOut(outputs=out.tolist())


@router.get("/networks/{network_id}/export", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}},
                             "description": "W1 (d, m), b1 (m,), W2 (m, c), b2 (c,) (and W3, "
                             "b3, ... for deep networks), (d_in, d_out) layout"}})
def export_network(
    network_id: str, session: SessionDep, owner: OwnerDep,
    format: Literal["npz", "safetensors"] = "npz",
) -> Response:
    arrays = crud.arrays_of(crud.get_network(session, owner, network_id))
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
    total, rows = crud.find_neurons(session, owner, sample, network_id, limit, offset)
    items = [NeuronHit(neuron_id=nr.id, network_id=nr.network_id, job_id=job_id,
                       position=nr.position, index_set=_index_set(nr.index_set),
                       formula=nr.formula) for nr, job_id in rows]
    return Page[NeuronHit](items=items, total=total, limit=limit, offset=offset)
