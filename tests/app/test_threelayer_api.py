"""Three-layer solve jobs (``params.depth = 3``): submitted, run in-process, stored as layers
and blocks; predictions and exports equal ``wedgenet.solve_three_layer``; unsupported
combinations are refused before queueing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import wedgenet
from tests.conftest import run_pending_jobs, small_problem


def _solve(client, ds_id: str, params: dict) -> dict:  # type: ignore[no-untyped-def, type-arg]
    r = client.post("/jobs", json={"kind": "solve", "dataset_id": ds_id, "params": params})
    assert r.status_code == 202, r.text
    assert r.json()["params"]["depth"] == 3
    assert run_pending_jobs() == ["succeeded"]
    job = client.get(f"/jobs/{r.json()['id']}").json()
    assert job["state"] == "succeeded", job
    return client.get(f"/networks/{job['network_id']}").json()  # type: ignore[no-any-return]


def test_three_layer_job_stores_blocks_and_predicts_as_the_library(client, upload) -> None:  # type: ignore[no-untyped-def]
    X, y = small_problem(n=10)
    ds = upload(X, y)
    net = _solve(client, ds["id"], {"lam": 0.05, "depth": 3})
    ref = wedgenet.solve_three_layer(X, y, lam=0.05)
    assert net["certified"] is True and ref.certified
    assert net["primal_objective"] == pytest.approx(ref.primal_objective, rel=1e-9)
    assert net["dual_objective"] <= net["primal_objective"] + 1e-9
    assert net["relative_gap"] <= 1e-6
    assert net["n_layers"] == 3 and net["params"]["depth"] == 3
    assert net["summary"]["depth"] == 3 and net["summary"]["n_directions"] > 0
    m = len(ref.blocks)
    assert net["n_neurons"] == len(net["neurons"]) == m
    assert [ly["name"] for ly in net["layers"]] == ["hidden1", "hidden2", "output"]
    assert np.array(net["layers"][1]["W"]).shape == (m, m)
    for nr, blk in zip(net["neurons"], ref.blocks, strict=True):
        assert nr["threshold_sample"] == blk.threshold_sample
        assert nr["bias_sample"] == blk.bias_sample
        assert nr["shape"] == blk.shape in ("up", "down")
        assert nr["formula"] == blk.formula and "r(x)" in nr["formula"]
        assert nr["second_layer_weight"] == pytest.approx(blk.w2)
        assert nr["output_weight"] == [pytest.approx(blk.w3)]
        assert blk.index_set is not None
        assert nr["index_set"].get("differences", []) == [
            list(p) for p in blk.index_set.differences]
        assert nr["index_set"]["directions"] == list(blk.index_set.directions)
    assert any(nr["index_set"].get("differences") for nr in net["neurons"])
    pred = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    np.testing.assert_allclose(pred["outputs"], ref.predict(X), atol=1e-9)
    # exports run the three layers
    z = np.load(io.BytesIO(client.get(f"/networks/{net['id']}/export").content))
    assert set(z.files) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    h = np.maximum(np.maximum(X @ z["W1"] + z["b1"], 0) @ z["W2"] + z["b2"], 0)
    np.testing.assert_allclose((h @ z["W3"] + z["b3"])[:, 0], ref.predict(X), atol=1e-9)
    card = json.loads(client.get(f"/networks/{net['id']}/export",
                                 params={"format": "card"}).content)
    assert card["depth"] == 3 and card["certified"] is True
    assert [b["threshold_sample"] for b in card["blocks"]] == [
        b.threshold_sample for b in ref.blocks]
    # a block's bias and threshold samples find it
    j0 = net["neurons"][0]["threshold_sample"]
    hits = client.get("/neurons", params={"sample": j0, "network_id": net["id"]}).json()
    assert net["neurons"][0]["id"] in {h["neuron_id"] for h in hits["items"]}
    # the plot draws each block's breakline, its threshold line and j0
    svg = client.get(f"/networks/{net['id']}/plot", params={"format": "svg", "neuron": 0})
    assert svg.status_code == 200 and "threshold samples j0" in svg.text
    assert f"{m} blocks" in svg.text
    assert client.get(f"/networks/{net['id']}/plot", params={"neuron": m}).status_code == 422


def test_three_layer_binary_classification(client, upload) -> None:  # type: ignore[no-untyped-def]
    X, y = small_problem(n=10, seed=1)
    labels = np.where(y > 0, 1, 0)
    ds = upload(X, labels)
    net = _solve(client, ds["id"], {"lam": 0.05, "depth": 3, "loss": "hinge", "bias": False})
    ref = wedgenet.solve_three_layer(X, labels.astype(float), lam=0.05, loss="hinge",
                                     bias=False)
    assert net["certified"] is True and net["classes"] == [0, 1]
    assert all(nr["bias_sample"] is None for nr in net["neurons"])
    pred = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    np.testing.assert_allclose(pred["outputs"], ref.decision_function(X), atol=1e-9)
    assert pred["labels"] == [int(v) for v in ref.predict(X)]


@pytest.mark.parametrize(
    ("params", "y_kind", "needle"),
    [
        ({"p": 2}, "reg", "p=2"),
        ({"source": "search"}, "reg", "source='search'"),
        ({"scan_parts": 2}, "reg", "scan_parts"),
        ({"solver": "cvxpy"}, "reg", "cvxpy"),
        ({"warm_start": "polish"}, "reg", "warm_start"),
        ({"source": "sample", "n_columns": 10}, "reg", "source='sample'"),
        ({"loss": "softmax"}, "int", "one output"),
        ({}, "vector", "one output"),
    ],
)
def test_three_layer_refuses_unsupported_combinations(client, upload, params, y_kind,  # type: ignore[no-untyped-def]
                                                      needle) -> None:
    X, y = small_problem(n=8)
    Y = {"reg": y, "int": (np.arange(8) % 3), "vector": np.column_stack([y, y])}[y_kind]
    ds = upload(X, Y)
    r = client.post("/jobs", json={"dataset_id": ds["id"],
                                   "params": {"lam": 0.1, "depth": 3, **params}})
    assert r.status_code == 422, r.text
    assert "depth=3" in r.text and needle in r.text
    assert run_pending_jobs() == []


def test_depth_is_strictly_2_or_3(client, upload) -> None:  # type: ignore[no-untyped-def]
    X, y = small_problem(n=8)
    ds = upload(X, y)
    for bad in (4, "3", 3.0, True):
        r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"depth": bad}})
        assert r.status_code == 422 and "depth" in r.text
