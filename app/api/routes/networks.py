"""Networks: reconstructed two-layer ReLU networks with per-neuron index sets, polished
networks (two-layer: neurons with index sets; deeper: the layers and the polish report)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from app.api.deps import OwnerDep, SessionDep, SettingsDep
from app.api.routes.common import ERRORS, not_found, npz_bytes, page, safetensors_bytes
from app.models import Network, Neuron, NeuronSample
from app.schemas import (
    DistributedScan,
    IndexSetOut,
    L2Bound,
    LayerOut,
    NetworkOut,
    NeuronHit,
    NeuronOut,
    Page,
    PolishReport,
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


def layers_of(net: Network) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W, b), ...]`` in (d_in, d_out) layout: the stored layers of a deep network, or
    ``W1`` (d, m), ``b1`` (m,), ``W2`` (m, c), ``b2`` (c,) from the neurons."""
    if net.layers:
        return [(np.array(ly["W"], dtype=float).reshape(len(ly["W"]), len(ly["b"])),
                 np.array(ly["b"], dtype=float)) for ly in net.layers]
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


def _index_set(d: dict | None) -> IndexSetOut | None:  # type: ignore[type-arg]
    if not d:
        return None
    return IndexSetOut(samples=list(d.get("samples", [])),
                       directions=list(d.get("directions", [])), sign=int(d.get("sign", 1)))


def _layer_names(n: int) -> list[str]:
    if n == 2:
        return ["hidden", "output"]
    return [f"hidden{i}" for i in range(1, n)] + ["output"]


def _polish_report(net: Network) -> PolishReport | None:
    sm: dict[str, Any] = net.summary or {}
    if net.kind != "polish" or "objective_after" not in sm:
        return None
    extra = sm.get("extra") or {}
    return PolishReport(
        objective_before=sm["objective_before"],
        objective_rebalanced=sm.get("objective_rebalanced"),
        objective_after=sm["objective_after"], price=sm.get("price", 0.0),
        refit=sm.get("refit", "union"), selected=str(sm.get("selected", "")),
        refit_gap=sm.get("refit_gap"), n_layers=int(extra.get("n_layers", 2)),
        metrics=sm.get("metrics") or {}, neurons=sm.get("neurons") or [],
    )


def _l2_bound(net: Network) -> L2Bound | None:
    rep = (net.summary or {}).get("l2_bound")
    if not isinstance(rep, dict):
        return None
    bound = rep.get("bound") or {}
    return L2Bound(
        label=str(rep.get("label", "")), certified=bool(rep.get("certified", False)),
        mode=rep.get("mode"), wedge_value=rep.get("wedge_value"),
        lower_bound=bound.get("lower_bound"), value=bound.get("value"),
        relative_gap=rep.get("relative_gap"), estimated_gap=rep.get("estimated_gap"),
        n_patterns=bound.get("n_patterns"), note=rep.get("note"),
    )


def _distributed_scan(net: Network) -> DistributedScan | None:
    sm = net.summary or {}
    if not sm.get("scan_parts") or int(sm["scan_parts"]) <= 1:
        return None
    return DistributedScan(parts=int(sm["scan_parts"]), workers=int(sm.get("scan_workers", 0)),
                           worker_ids=list(sm.get("scan_worker_ids", [])),
                           parts_by_worker=dict(sm.get("scan_parts_by_worker") or {}),
                           rounds=int(sm.get("scan_rounds", 0)))


def _neuron_kind(extra: dict[str, Any] | None) -> Any:
    kind = (extra or {}).get("kind")
    return kind if kind in ("polished", "original") else None


def network_out(net: Network) -> NetworkOut:
    layers = layers_of(net)
    return NetworkOut(
        id=net.id, job_id=net.job_id, kind=net.kind,  # type: ignore[arg-type]
        dataset_id=net.dataset_id, n_features=net.n_features,
        n_outputs=net.n_outputs, n_neurons=net.n_neurons, n_layers=len(layers),
        output_bias=net.output_bias,
        primal_objective=net.primal_objective, dual_objective=net.dual_objective,
        relative_gap=net.relative_gap, certified=net.certified, summary=net.summary,
        layers=[LayerOut(name=name, W=W.tolist(), b=b.tolist())
                for name, (W, b) in zip(_layer_names(len(layers)), layers, strict=True)],
        neurons=[NeuronOut(id=nr.id, position=nr.position, weight=nr.weight, bias=nr.bias,
                           output_weight=nr.output_weight, index_set=_index_set(nr.index_set),
                           formula=nr.formula, residual=nr.residual,
                           kind=_neuron_kind(nr.extra),
                           source=(nr.extra or {}).get("source"),
                           angle_deg=(nr.extra or {}).get("angle_deg"))
                 for nr in net.neurons],
        polish=_polish_report(net), l2_bound=_l2_bound(net),
        distributed_scan=_distributed_scan(net),
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
    layers = layers_of(net)
    with np.errstate(over="ignore", invalid="ignore"):
        out = X
        for W, b in layers[:-1]:
            out = np.maximum(out @ W + b, 0.0)
        out = out @ layers[-1][0] + layers[-1][1]
    if not np.all(np.isfinite(out)):
        raise HTTPException(422, "outputs overflow for this X")
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
