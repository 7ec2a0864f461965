"""Networks: reconstructed two-layer ReLU networks with per-neuron index sets, polished
networks (two-layer: neurons with index sets; deeper: the layers and the polish report);
predictions (labels and probabilities for classifiers), exports with a model card (npz,
safetensors, ONNX, JSON), plots of 2-D networks, deletion."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app import crud
from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS
from app.models import Network
from app.schemas import (
    BlockIndexSetOut,
    IndexSetOut,
    LayerOut,
    NetworkListItem,
    NetworkOut,
    NeuronHit,
    NeuronOut,
    Page,
    PredictIn,
    PredictOut,
    ResultSummary,
)

router = APIRouter(tags=["networks"], responses=ERRORS)


def _index_set(d: dict[str, Any] | None) -> IndexSetOut | None:
    if not d:
        return None
    if d.get("differences"):  # a depth-3 block
        return BlockIndexSetOut(samples=list(d.get("samples", [])),
                                directions=list(d.get("directions", [])),
                                sign=int(d.get("sign", 1)),
                                differences=[list(p) for p in d["differences"]])
    return IndexSetOut(samples=list(d.get("samples", [])),
                       directions=list(d.get("directions", [])), sign=int(d.get("sign", 1)))


def _layer_names(n: int) -> list[str]:
    if n == 2:
        return ["hidden", "output"]
    return [f"hidden{i}" for i in range(1, n)] + ["output"]


def _brief(net: Network, summary: ResultSummary, classes: list[Any] | None) -> dict[str, Any]:
    return dict(
        id=net.id, job_id=net.job_id, kind=net.kind, dataset_id=net.dataset_id,
        n_features=net.n_features, n_outputs=net.n_outputs, n_neurons=net.n_neurons,
        n_layers=len(net.layers) if net.layers else 2, loss=summary.loss, classes=classes,
        params=summary.params, scanned=summary.scanned,
        primal_objective=net.primal_objective, dual_objective=net.dual_objective,
        relative_gap=net.relative_gap, certified=net.certified, created_at=net.created_at)


def _neurons(net: Network) -> list[NeuronOut]:
    neurons = []
    for nr in net.neurons:
        extra = crud.neuron_extra(nr)
        neurons.append(NeuronOut(
            id=nr.id, position=nr.position, weight=nr.weight, bias=nr.bias,
            output_weight=nr.output_weight, index_set=_index_set(nr.index_set),
            formula=nr.formula, residual=nr.residual, kind=extra.kind, source=extra.source,
            angle_deg=extra.angle_deg, bias_sample=extra.bias_sample,
            threshold_sample=extra.threshold_sample, shape=extra.shape,
            second_layer_weight=extra.second_layer_weight,
            second_layer_bias=extra.second_layer_bias))
    return neurons


def network_out(net: Network, classes: list[Any] | None) -> NetworkOut:
    layers = crud.layers_of(net)
    summary = crud.summary_of(net)
    return NetworkOut(
        **_brief(net, summary, classes),
        output_bias=net.output_bias, summary=net.summary,
        layers=[LayerOut(name=name, W=W.tolist(), b=b.tolist())
                for name, (W, b) in zip(_layer_names(len(layers)), layers, strict=True)],
        neurons=_neurons(net),
        polish=summary.polish_report() if net.kind == "polish" else None,
        l2_bound=summary.l2_bound.out() if summary.l2_bound is not None else None,
        distributed_scan=summary.distributed_scan(),
    )


@router.get("/networks", response_model=Page[NetworkListItem])
def list_networks(
    session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    include: Annotated[list[Literal["neurons"]] | None, Query(
        description="include=neurons: also each network's neurons (weights, index sets, "
        "formulas); GET /networks/{id} has everything")] = None,
) -> Page[NetworkListItem]:
    """The caller's networks, newest first, as briefs (what, trained on what, certificate);
    weights, neurons and the engine's summary are in ``GET /networks/{id}``."""
    with_neurons = "neurons" in (include or [])
    total, rows = crud.list_networks(session, owner, limit, offset, with_neurons)
    classes = crud.classes_of_many(session, rows)
    items = [NetworkListItem(**_brief(net, crud.summary_of(net), classes[net.id]),
                             neurons=_neurons(net) if with_neurons else None) for net in rows]
    return Page[NetworkListItem](items=items, total=total, limit=limit, offset=offset)


@router.get("/networks/{network_id}", response_model=NetworkOut)
def get_network(network_id: str, session: SessionDep, owner: OwnerDep) -> NetworkOut:
    """The network, every neuron with its index set, formula, residual and output weight, and
    the certificate (primal objective, dual bound, relative gap, certified)."""
    net = crud.get_network(session, owner, network_id)
    return network_out(net, crud.classes_of(session, net))


@router.delete("/networks/{network_id}", status_code=204, response_class=Response)
def delete_network(network_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete the network with its neurons and index-set rows (``GET /neurons`` no longer
    finds them). Its job stays, finished, without a network."""
    crud.delete_network(session, owner, network_id)
    return Response(status_code=204)


@router.post("/networks/{network_id}/predict", response_model=PredictOut,
             response_model_exclude_none=True,
             responses={422: {"description": "X has the wrong shape or is not finite"}})
def predict(network_id: str, body: PredictIn, session: SessionDep, owner: OwnerDep,
            settings: SettingsDep) -> PredictOut:
    """Raw outputs for every row of ``X``; for classification networks also the predicted
    class labels, the classes and (logistic, softmax) the class probabilities."""
    net = crud.get_network(session, owner, network_id)
    out = crud.predict(net, body.X, settings)
    classes = crud.classes_of(session, net)
    labels, proba = crud.classify(out, crud.summary_of(net).loss, classes)
    outputs = out[:, 0].tolist() if net.n_outputs == 1 else out.tolist()
    return PredictOut(outputs=outputs, labels=labels,
                      probabilities=None if proba is None else proba.tolist(),
                      classes=classes if labels is not None else None)


_EXPORT_TYPES = {"npz": ("application/octet-stream", "npz"),
                 "safetensors": ("application/octet-stream", "safetensors"),
                 "onnx": ("application/octet-stream", "onnx"),
                 "card": ("application/json", "card.json")}


@router.get("/networks/{network_id}/export", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {},
                                         "application/json": {}},
                             "description": "npz: W1 (d, m), b1 (m,), W2 (m, c), b2 (c,) (and "
                             "W3, b3, ... for deep networks), (d_in, d_out) layout; safetensors: "
                             "PyTorch nn.Sequential names (0.weight (out, in), 0.bias, "
                             "2.weight, ...) with the model card in the header metadata "
                             "(wedgenet_model_card); onnx: input X (batch, d), output scores "
                             "or probabilities, the model card in the metadata; card: the "
                             "model card as JSON"},
                       501: {"description": "ONNX export is not installed on the server"}})
def export_network(
    network_id: str, session: SessionDep, owner: OwnerDep,
    format: crud.ExportFormat = "npz",
    output: Annotated[Literal["scores", "probabilities"], Query(
        description="format=onnx: the graph's output; probabilities for logistic and "
        "softmax networks")] = "scores",
) -> Response:
    net = crud.get_network(session, owner, network_id)
    data = crud.export(session, net, format, output)
    media, suffix = _EXPORT_TYPES[format]
    headers = {} if format == "card" else {
        "Content-Disposition": f'attachment; filename="{network_id}.{suffix}"'}
    return Response(data, media_type=media, headers=headers)


@router.get("/networks/{network_id}/plot", response_class=Response,
            responses={200: {"content": {"image/png": {}, "image/svg+xml": {}},
                             "description": "prediction regions, breaklines, the index-set "
                             "samples (neuron j's highlighted), axis labels and colour bar"},
                       409: {"description": "the network's training dataset was deleted"},
                       422: {"description": "not a two-layer network on 2-D inputs, or "
                             "neuron out of range"}})
def plot_network(
    network_id: str, session: SessionDep, owner: OwnerDep,
    format: Literal["png", "svg"] = "png",
    neuron: Annotated[int | None, Query(ge=0, le=2**31 - 1,
                                        description="highlight this neuron (its position)")
                      ] = None,
) -> Response:
    """The network over its training data (2-D inputs only): ``wedgenet.plot.render``."""
    net = crud.get_network(session, owner, network_id)
    data = crud.plot(session, net, format, neuron)
    return Response(data, media_type="image/png" if format == "png" else "image/svg+xml")


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
