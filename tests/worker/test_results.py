"""The typed job result (``app.schemas.JobResult``) the worker writes: the stored JSON keeps
the shape earlier versions wrote (``networks.summary``, ``neurons.extra``, ``networks.layers``),
and rows written by earlier versions read back through the same schema."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import small_problem


def _old_jsonable(obj: Any) -> Any:
    """What the worker stored before the typed schema (its ``_jsonable``)."""
    if isinstance(obj, dict):
        return {str(k): _old_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_old_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _old_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _old_jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _old_neuron_extra(nd: dict[str, Any]) -> dict[str, Any]:
    keys = {"weight", "bias", "output_weight", "index_set", "formula", "residual"}
    return _old_jsonable({k: v for k, v in nd.items() if k not in keys})


def test_solve_record_stores_what_earlier_versions_stored() -> None:
    import wedgenet
    from worker.tasks import solve_record

    X, y = small_problem()
    result = wedgenet.solve(X, y, lam=0.1)
    extra = {"warm_start": {"kind": "sample", "n_index_sets": 3, "time": 0.5},
             "scan_parts": 2, "scan_workers": 1, "scan_worker_ids": ["h:1"], "scan_rounds": 4,
             "scan_parts_by_worker": {"h:1": 8}}
    record = solve_record(result, extra)
    rdict = result.to_dict()
    old_summary = _old_jsonable({**{k: v for k, v in rdict.items() if k != "network"}, **extra})
    assert record.summary.stored() == old_summary
    assert record.kind == "solve" and record.certified == rdict["certified"]
    assert record.primal_objective == pytest.approx(rdict["primal_objective"])
    assert record.n_features == 2 and record.n_outputs == 1
    assert len(record.neurons) == len(rdict["network"]["neurons"]) > 0
    for nr, nd in zip(record.neurons, rdict["network"]["neurons"], strict=True):
        assert nr.extra_record().stored() == _old_neuron_extra(nd) == {}
        assert nr.index_set is not None and nr.index_set.model_dump() == nd["index_set"]
        assert nr.weight == nd["weight"] and nr.formula == nd["formula"]
    scan = record.summary.distributed_scan()
    assert scan is not None and scan.parts == 2 and scan.parts_by_worker == {"h:1": 8}
    assert record.summary.warm_start is not None and record.summary.warm_start.n_index_sets == 3


def test_polish_record_stores_what_earlier_versions_stored() -> None:
    import wedgenet
    from wedgenet.nonconvex import train_nonconvex
    from worker.tasks import polish_record

    X, y = small_problem(n=16)
    net = train_nonconvex(X, y, lam=0.05, width=4, restarts=1, max_iter=100).network
    layers = [(net.W, net.b), (net.A, np.atleast_1d(net.output_bias))]
    result = wedgenet.polish(X, y, layers, lam=0.05)
    record = polish_record(result)
    rdict = result.to_dict()
    old_summary = _old_jsonable({k: v for k, v in rdict.items() if k not in ("network", "layers")})
    assert record.summary.stored() == old_summary
    assert record.kind == "polish" and record.layers is None and not record.certified
    assert record.dual_objective is None and record.relative_gap is None
    for nr, nd in zip(record.neurons, rdict["network"]["neurons"], strict=True):
        assert nr.extra_record().stored() == _old_neuron_extra(nd)
    report = record.summary.polish_report()
    assert report is not None and report.objective_after == pytest.approx(
        result.objective_after)
    assert report.n_layers == 2 and len(report.neurons) == len(rdict["neurons"])

    deep = wedgenet.polish(X, y, [(net.W, net.b), (np.eye(4), np.zeros(4)),
                                  (net.A, np.atleast_1d(net.output_bias))], lam=0.05)
    record = polish_record(deep)
    assert record.neurons == [] and record.layers is not None
    assert [ly.model_dump() for ly in record.layers] == _old_jsonable(deep.to_dict()["layers"])
    report = record.summary.polish_report()
    assert report is not None and report.n_layers == 3


def test_rows_of_earlier_versions_read_back() -> None:
    """Summaries without any of the service's sections (0001-era rows) and with every one."""
    from app.schemas import NeuronExtra, ResultSummary

    empty = ResultSummary.model_validate({})
    assert empty.polish_report() is None and empty.distributed_scan() is None
    assert empty.l2_bound is None and empty.stored() == {}
    old = {"primal_objective": 1.0, "scanned": "all", "n_columns": 10, "solver": "workingset",
           "solve_time": 0.1, "params": {"lam": 0.1}, "classes": None, "exact": True,
           "scan_parts": 1,
           "l2_bound": {"wedge_value": 1.0, "relative_gap": 0.5, "estimated_gap": 0.4,
                        "certified": True, "label": "certified lower bound",
                        "bound": {"value": 0.7, "lower_bound": 0.66, "n_patterns": 12,
                                  "exact": True, "params": {}},
                        "mode": "exact", "note": None}}
    summary = ResultSummary.model_validate(old)
    assert summary.stored() == old
    assert summary.distributed_scan() is None
    assert summary.l2_bound is not None
    l2 = summary.l2_bound.out()
    assert (l2.lower_bound, l2.value, l2.n_patterns, l2.mode) == (0.66, 0.7, 12, "exact")
    skipped = ResultSummary.model_validate(
        {"l2_bound": {"label": "skipped", "certified": False, "mode": None, "note": "why"}})
    assert skipped.l2_bound is not None and skipped.l2_bound.out().note == "why"
    assert NeuronExtra.model_validate({}).kind is None
    assert NeuronExtra.model_validate({"kind": "original", "source": 3}).source == 3


def test_non_finite_values_are_stored_as_null() -> None:
    from app.schemas import JobResult

    rec = JobResult.model_validate({
        "n_features": 1, "n_outputs": 1, "output_bias": [0.0],
        "primal_objective": float("nan"), "relative_gap": float("inf"),
        "neurons": [{"weight": [1.0], "bias": 0.0, "output_weight": [1.0], "residual": None}],
    })
    assert rec.primal_objective is None and rec.relative_gap is None
    assert rec.neurons[0].residual == 0.0 and rec.neurons[0].formula == ""
