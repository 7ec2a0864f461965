"""Polish jobs in-process (TestClient + SQLite, jobs run by the worker code): weight uploads
with PyTorch state_dict naming, two-layer and deep polishing, and bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.conftest import npy, run_pending_jobs, small_problem


def trained(X: np.ndarray, y: np.ndarray, width: int = 6) -> tuple[np.ndarray, ...]:
    """A briefly trained two-layer network: W1 (d, m), b1 (m,), W2 (m, 1), b2 (1,)."""
    from wedgenet.nonconvex import train_nonconvex

    net = train_nonconvex(X, y, lam=0.05, width=width, restarts=1, max_iter=200).network
    return net.W, net.b, net.A, np.atleast_1d(net.output_bias)


def state_dict(*layers: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch ``nn.Sequential(Linear, ReLU, Linear, ...)`` naming, weights (out, in)."""
    out = {}
    for i, (W, b) in enumerate(layers):
        out[f"{2 * i}.weight"] = np.ascontiguousarray(W.T)
        out[f"{2 * i}.bias"] = np.asarray(b)
    return out


def post_weights(client, arrays: dict, fmt: str = "safetensors", **data):  # type: ignore[no-untyped-def]
    if fmt == "safetensors":
        from safetensors.numpy import save

        body = save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})
    elif fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        body = buf.getvalue()
    else:
        body = json.dumps({k: np.asarray(v).tolist() for k, v in arrays.items()},
                          allow_nan=True).encode()
    return client.post("/weights", files={"file": (f"w.{fmt}", body)}, data=data)


def _download(client, ws_id: str) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    z = np.load(io.BytesIO(client.get(f"/weights/{ws_id}/download").content))
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "json"])
def test_weights_upload_pytorch_naming(client, upload, fmt: str) -> None:
    X, y = small_problem()
    ds = upload(X, y)
    W1, b1, W2, b2 = (a.astype(np.float32).astype(float) for a in trained(X, y))
    r = post_weights(client, state_dict((W1, b1), (W2, b2)), fmt, dataset_id=ds["id"])
    assert r.status_code == 201, r.text
    assert r.json()["layers"] == [{"d_in": 2, "d_out": W1.shape[1]},
                                  {"d_in": W1.shape[1], "d_out": 1}]
    z = _download(client, r.json()["id"])
    np.testing.assert_array_equal(z["W1"], W1)  # transposed back to (d_in, d_out)
    np.testing.assert_array_equal(z["W2"], W2)
    np.testing.assert_array_equal(z["b1"], b1)
    # the same network in wedgenet's own naming is the same content
    same = post_weights(client, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, fmt)
    assert same.status_code == 201 and same.json()["content_hash"] == r.json()["content_hash"]


def test_weights_upload_named_layers_and_no_bias(client) -> None:
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 1))
    sd = {"hidden.weight": W1.T, "hidden.bias": np.ones(4), "out.weight": W2.T}
    r = post_weights(client, sd, "npz")
    assert r.status_code == 422 and "layer_names" in r.json()["detail"]
    r = post_weights(client, sd, "npz", layer_names="hidden,out")
    assert r.status_code == 201, r.text
    z = _download(client, r.json()["id"])
    np.testing.assert_array_equal(z["W1"], W1)
    np.testing.assert_array_equal(z["b2"], [0.0])  # Linear(bias=False): zero bias


@pytest.mark.parametrize("arrays, needle", [
    (state_dict((np.ones((2, 4)), np.zeros(4)), (np.ones((3, 1)), np.zeros(1))),
     "do not chain"),
    (state_dict((np.ones((3, 4)), np.zeros(4)), (np.ones((4, 1)), np.zeros(1))),
     "dataset has d=2"),
    (state_dict((np.full((2, 4), np.nan), np.zeros(4)), (np.ones((4, 1)), np.zeros(1))),
     "NaN"),
    ({"0.weight": np.ones((4, 2)), "0.running_mean": np.zeros(4)}, "only Linear layers"),
    ({"0.weight": np.ones((4, 2)), "0.bias": np.zeros(3)}, "bias must have shape"),
    ({"W1": np.ones((2, 4)), "b1": np.zeros(4), "2.weight": np.ones((1, 4))},
     "unexpected arrays"),
    ({"weights": np.ones((2, 4))}, "no layers found"),
])
def test_bad_state_dict(client, upload, arrays, needle) -> None:
    ds = upload(*small_problem())
    r = post_weights(client, arrays, "npz", dataset_id=ds["id"])
    assert r.status_code == 422, r.text
    assert needle.lower() in r.json()["detail"].lower(), r.json()
    assert client.get("/weights").json()["total"] == 0


def _polish(client, ds_id: str, ws_id: str, **params):  # type: ignore[no-untyped-def]
    return client.post("/jobs", json={"kind": "polish", "dataset_id": ds_id, "weights_id": ws_id,
                                      "params": {"lam": 0.05, **params}})


def test_polish_two_layer_in_process(client, upload) -> None:
    import wedgenet

    X, y = small_problem(n=30)
    ds = upload(X, y)
    W1, b1, W2, b2 = trained(X, y)
    ws = post_weights(client, state_dict((W1, b1), (W2, b2)), "npz", dataset_id=ds["id"]).json()
    r = _polish(client, ds["id"], ws["id"], validation_fraction=0.2, seed=3)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "polish" and job["weights_id"] == ws["id"]
    assert job["links"]["weights"] == f"/weights/{ws['id']}"
    assert client.get("/jobs", params={"kind": "polish"}).json()["total"] == 1
    assert run_pending_jobs() == ["succeeded"]
    job = client.get(f"/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    net = client.get(f"/networks/{job['network_id']}").json()
    rep = net["polish"]
    assert net["kind"] == "polish" and net["n_layers"] == 2 and net["certified"] is False
    assert rep["objective_after"] <= rep["objective_before"] + 1e-12
    assert net["primal_objective"] == pytest.approx(rep["objective_after"])
    assert set(rep["metrics"]) == {"train", "validation"}
    assert net["summary"]["params"]["n_validation"] == 6
    # the engine gives the same report
    ref = wedgenet.polish(X, y, [(W1, b1), (W2, b2)], lam=0.05, validation_fraction=0.2,
                          seed=3)
    assert rep["objective_after"] == pytest.approx(ref.objective_after, rel=1e-9)
    polished = [n for n in net["neurons"] if n["kind"] == "polished"]
    original = [n for n in net["neurons"] if n["kind"] == "original"]
    assert polished, net["neurons"]
    assert len(polished) + len(original) == net["n_neurons"] == len(net["neurons"])
    for nr in polished:
        assert nr["index_set"] and len(nr["index_set"]["samples"]) == 2 and nr["formula"]
        assert nr["angle_deg"] is not None and nr["residual"] < 1e-6
    for nr in original:
        assert nr["index_set"] is None
    reports = rep["neurons"]
    assert {r["kind"] for r in reports} <= {"polished", "original"}
    assert sum(r["survived"] for r in reports if r["kind"] == "polished") == len(polished)
    # every index set is queryable
    sample = polished[0]["index_set"]["samples"][0]
    hits = client.get("/neurons", params={"sample": sample}).json()["items"]
    assert polished[0]["id"] in {h["neuron_id"] for h in hits}
    # predictions and export follow the stored network
    pred = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    np.testing.assert_allclose(pred["outputs"], ref.network.decision_function(X), atol=1e-8)
    z = np.load(io.BytesIO(client.get(f"/networks/{net['id']}/export").content))
    assert set(z.files) == {"W1", "b1", "W2", "b2"}


def test_polish_deep_in_process(client, upload) -> None:
    import wedgenet

    X, y = small_problem(n=20)
    ds = upload(X, y)
    rng = np.random.default_rng(1)
    layers = [(rng.normal(size=(2, 5)), rng.normal(size=5) * 0.1),
              (rng.normal(size=(5, 4)) / 2, rng.normal(size=4) * 0.1),
              (rng.normal(size=(4, 1)), np.zeros(1))]
    ws = post_weights(client, state_dict(*layers), "npz", dataset_id=ds["id"]).json()
    assert ws["n_layers"] == 3
    assert _polish(client, ds["id"], ws["id"]).status_code == 202
    assert run_pending_jobs() == ["succeeded"]
    net_id = client.get("/jobs").json()["items"][0]["network_id"]
    net = client.get(f"/networks/{net_id}").json()
    assert net["kind"] == "polish" and net["n_layers"] == len(net["layers"]) == 3
    assert [ly["name"] for ly in net["layers"]] == ["hidden1", "hidden2", "output"]
    assert net["neurons"] == [] and net["n_neurons"] == 0
    rep = net["polish"]
    assert rep["n_layers"] == 3 and rep["objective_after"] <= rep["objective_before"] + 1e-12
    assert any(r["index_set"] for r in rep["neurons"] if r["layer"] == 1)
    ref = wedgenet.polish(X, y, layers, lam=0.05)
    pred = client.post(f"/networks/{net_id}/predict", json={"X": X.tolist()}).json()["outputs"]
    Xf = X
    for W, b in ref.layers[:-1]:
        Xf = np.maximum(Xf @ W + b, 0)
    np.testing.assert_allclose(pred, (Xf @ ref.layers[-1][0] + ref.layers[-1][1])[:, 0],
                               atol=1e-8)
    z = np.load(io.BytesIO(client.get(f"/networks/{net_id}/export").content))
    assert sorted(z.files) == ["W1", "W2", "W3", "b1", "b2", "b3"]


def _json_weights(client, layers, **data):  # type: ignore[no-untyped-def]
    body = json.dumps({"layers": [{"W": np.asarray(W).tolist(), "b": np.asarray(b).tolist()}
                                  for W, b in layers]}).encode()
    r = client.post("/weights", files={"file": ("w.json", body)}, data=data)
    assert r.status_code == 201, r.text
    return r.json()


TWO = [(np.ones((2, 3)), np.array([0.0, 0.5, -0.5])), (np.ones((3, 1)), np.zeros(1))]


@pytest.mark.parametrize("case, status, needle", [
    ("d-mismatch", 422, "dataset"),
    ("one-layer", 422, "at least two"),
    ("outputs", 422, "outputs"),
    ("validation-1", 422, "validation_fraction"),
    ("validation-too-small", 422, "validation"),
    ("bias-false", 422, "nonzero biases"),
    ("solve-param", 422, "extra"),
    ("no-weights-id", 422, "weights_id"),
    ("unknown-weights", 404, "not found"),
    ("bad-kind", 422, "kind"),
])
def test_bad_polish_job(client, upload, case: str, status: int, needle: str) -> None:
    X, y = small_problem()
    ds = upload(X, y)
    layers, params = TWO, {}
    body: dict = {"kind": "polish", "dataset_id": ds["id"]}  # type: ignore[type-arg]
    if case == "d-mismatch":
        layers = [(np.ones((3, 3)), np.zeros(3)), (np.ones((3, 1)), np.zeros(1))]
    elif case == "one-layer":
        layers = [(np.ones((2, 1)), np.zeros(1))]
    elif case == "outputs":
        layers = [(np.ones((2, 3)), np.zeros(3)), (np.ones((3, 2)), np.zeros(2))]
    elif case == "validation-1":
        params = {"validation_fraction": 1.0}
    elif case == "validation-too-small":
        params = {"validation_fraction": 0.01}
    elif case == "bias-false":
        params = {"bias": False}
    elif case == "solve-param":
        params = {"source": "sample"}
    ws = _json_weights(client, layers)
    if case not in ("no-weights-id",):
        body["weights_id"] = "nope" if case == "unknown-weights" else ws["id"]
    if case == "bad-kind":
        body["kind"] = "train"
    body["params"] = {"lam": 0.1, **params}
    r = client.post("/jobs", json=body)
    assert r.status_code == status, r.text
    assert needle.lower() in json.dumps(r.json()).lower(), r.json()
    assert client.get("/jobs").json()["total"] == 0


def test_delete_weights_with_active_job(client, upload) -> None:
    ds = upload(*small_problem())
    ws = _json_weights(client, TWO)
    job = _polish(client, ds["id"], ws["id"]).json()
    r = client.delete(f"/weights/{ws['id']}")
    assert r.status_code == 409 and "queued or running" in r.json()["detail"]
    client.post(f"/jobs/{job['id']}/cancel")
    assert client.delete(f"/weights/{ws['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").json()["weights_id"] is None


def test_polish_engine_error_fails_job(client, upload) -> None:
    """Input the API cannot see through (data of rank 0 in the layer input) fails the job
    with a message."""
    X = np.ones((12, 2))
    ds = upload(X, np.arange(12.0))
    ws = _json_weights(client, TWO)
    assert _polish(client, ds["id"], ws["id"]).status_code == 202
    assert run_pending_jobs() == ["failed"]
    job = client.get("/jobs").json()["items"][0]
    assert job["error"]["code"] == "invalid_input" and job["error"]["message"]


def test_polish_logistic(client, upload) -> None:
    X, _ = small_problem(n=24)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    r = client.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))})
    ds = r.json()
    rng = np.random.default_rng(2)
    ws = _json_weights(client, [(rng.normal(size=(2, 6)), rng.normal(size=6) * 0.1),
                                (rng.normal(size=(6, 1)), np.zeros(1))])
    assert _polish(client, ds["id"], ws["id"], loss="logistic", refit="polished").status_code \
        == 202
    assert run_pending_jobs() == ["succeeded"]
    net_id = client.get("/jobs").json()["items"][0]["network_id"]
    net = client.get(f"/networks/{net_id}").json()
    assert net["polish"]["refit"] == "polished"
    assert all(n["kind"] == "polished" and n["index_set"] for n in net["neurons"])
    assert "accuracy" in json.dumps(net["polish"]["metrics"])
