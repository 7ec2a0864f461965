"""Networks and jobs as resources: predictions with labels and probabilities, list briefs,
deletion (nothing left behind, on SQLite and Postgres), exports with a model card (ONNX checked
with onnxruntime against /predict), plots, and every parameter combination checked before a
job is queued."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import (
    KEY_A,
    KEY_B,
    npy,
    private_pg_database,
    run_pending_jobs,
    small_problem,
    sqlite_or_postgres,
)

TABLES = ("jobs", "networks", "neurons", "neuron_samples", "pricing_rounds", "pricing_parts")


# ---------------------------------------------------------------------------------- helpers
def _dataset(c: Any, X: np.ndarray, y: np.ndarray, key: str = KEY_A) -> dict[str, Any]:
    r = c.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
               headers={"X-API-Key": key})
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _solve(c: Any, ds: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Submit, run in-process, return the network."""
    r = c.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1, **params}})
    assert r.status_code == 202, r.text
    assert run_pending_jobs() == ["succeeded"]
    job = c.get(f"/jobs/{r.json()['id']}").json()
    net = c.get(f"/networks/{job['network_id']}").json()
    return net  # type: ignore[no-any-return]


def _classes_problem(n: int = 24, k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    if k == 2:
        return X, np.where(X[:, 0] * X[:, 1] > 0, 7, 3).astype(np.int64)
    return X, (np.floor(np.arctan2(X[:, 1], X[:, 0]) / (2 * np.pi) * k + k) % k).astype(np.int64)


def _counts(url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.connect() as conn:
        out = {t: int(conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in TABLES}
    eng.dispose()
    return out


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A private Postgres database (``<name>_networks``), migrated once; tests truncate it."""
    yield private_pg_database("networks")


@pytest.fixture(params=["sqlite", "postgres"])
def db_client(request: pytest.FixtureRequest, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """``(client, database url)`` on SQLite or Postgres (the module's own database)."""
    from fastapi.testclient import TestClient

    from app.core.config import get_settings
    from app.main import create_app

    url = sqlite_or_postgres(request, tmp_path, "networks")
    env = {
        "WEDGENET_DATABASE_URL": url,
        "WEDGENET_BROKER_URL": "filesystem://",
        "WEDGENET_BROKER_DIR": str(tmp_path / "broker"),
        "WEDGENET_API_KEYS": f"{KEY_A},{KEY_B}",
        "WEDGENET_API_SWEEPER": "false",
        "WEDGENET_MAX_DICTIONARY_COLUMNS": "100000",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    with TestClient(create_app()) as c:
        c.headers["X-API-Key"] = KEY_A
        yield c, url
    get_settings.cache_clear()


# ------------------------------------------------------------------------------- 1. predict
def test_predict_regression_is_unchanged(client) -> None:
    X, y = small_problem()
    net = _solve(client, _dataset(client, X, y))
    assert net["loss"] == "squared" and net["classes"] is None
    body = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    assert set(body) == {"outputs"}
    assert np.asarray(body["outputs"]).shape == (12,)


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
def test_predict_binary_labels_and_probabilities(client, loss: str) -> None:
    from scipy.special import expit

    X, y = _classes_problem()
    net = _solve(client, _dataset(client, X, y), loss=loss)
    assert net["classes"] == [3, 7] and net["loss"] == loss
    body = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    s = np.asarray(body["outputs"])
    assert s.shape == (24,)
    # the dataset's own labels (integers), classes[1] where the score is positive
    assert body["classes"] == [3, 7]
    assert body["labels"] == [7 if v > 0 else 3 for v in s]
    assert all(isinstance(v, int) for v in body["labels"])
    assert np.mean(np.asarray(body["labels"]) == y) > 0.9
    if loss == "logistic":
        P = np.asarray(body["probabilities"])
        np.testing.assert_allclose(P, np.column_stack([1 - expit(s), expit(s)]), atol=1e-12)
    else:
        assert "probabilities" not in body


def test_predict_softmax_labels_and_probabilities(client) -> None:
    from scipy.special import softmax

    X, y = _classes_problem(n=30, k=3, seed=2)
    net = _solve(client, _dataset(client, X, y), loss="softmax", lam=0.05)
    body = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    S = np.asarray(body["outputs"])
    assert S.shape == (30, 3) and body["classes"] == [0, 1, 2]
    np.testing.assert_allclose(body["probabilities"], softmax(S, axis=1), atol=1e-12)
    np.testing.assert_allclose(np.sum(body["probabilities"], axis=1), 1.0)
    assert body["labels"] == [int(i) for i in np.argmax(S, axis=1)]
    # the engine's classifier predicts the same labels and probabilities
    from wedgenet.estimator import WedgeNetClassifier

    est = WedgeNetClassifier(loss="softmax", lam=0.05).fit(X, y)
    assert body["labels"] == est.predict(X).tolist()
    np.testing.assert_allclose(body["probabilities"], est.predict_proba(X), atol=1e-5)


# --------------------------------------------------------------------------- 3. list briefs
def test_list_networks_returns_briefs_and_neurons_on_request(client) -> None:
    X, y = small_problem()
    net = _solve(client, _dataset(client, X, y))
    page = client.get("/networks").json()
    item = page["items"][0]
    assert page["total"] == 1 and item["id"] == net["id"]
    assert item["neurons"] is None
    assert "layers" not in item and "summary" not in item and "output_bias" not in item
    for key in ("kind", "n_neurons", "n_layers", "primal_objective", "dual_objective",
                "relative_gap", "certified", "scanned", "loss", "params", "dataset_id"):
        assert item[key] == net[key], key
    full = client.get("/networks", params={"include": "neurons"}).json()["items"][0]
    assert full["neurons"] == net["neurons"]
    assert client.get("/networks", params={"include": "weights"}).status_code == 422
    assert client.get("/networks", headers={"X-API-Key": KEY_B}).json()["total"] == 0


# ------------------------------------------------------------------------------- 2. delete
def test_delete_jobs_and_networks_leaves_nothing(db_client) -> None:
    from sqlalchemy import create_engine, update

    from app.models import Job, PricingPart, PricingRound

    c, url = db_client
    X, y = small_problem()
    ds = _dataset(c, X, y)
    b = {"X-API-Key": KEY_B}

    # queued and running jobs cannot be deleted: cancel first
    job = c.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}}).json()
    r = c.delete(f"/jobs/{job['id']}")
    assert r.status_code == 409 and "cancel" in r.json()["detail"]
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(update(Job).where(Job.id == job["id"]).values(state="running"))
    assert c.delete(f"/jobs/{job['id']}").status_code == 409
    with eng.begin() as conn:
        conn.execute(update(Job).where(Job.id == job["id"]).values(state="queued"))
    assert c.delete(f"/jobs/{job['id']}", headers=b).status_code == 404  # another key
    assert run_pending_jobs() == ["succeeded"]
    job = c.get(f"/jobs/{job['id']}").json()
    net_id = job["network_id"]
    net = c.get(f"/networks/{net_id}").json()
    before = _counts(url)
    assert before["jobs"] == 1 and before["networks"] == 1
    assert before["neurons"] == net["n_neurons"] > 0 and before["neuron_samples"] > 0

    # DELETE /networks/{id}: neurons and index-set rows go, the job stays
    assert c.delete(f"/networks/{net_id}", headers=b).status_code == 404
    assert c.delete(f"/networks/{net_id}").status_code == 204
    assert _counts(url) == {**before, "networks": 0, "neurons": 0, "neuron_samples": 0}
    assert c.get(f"/networks/{net_id}").status_code == 404
    assert c.delete(f"/networks/{net_id}").status_code == 404
    after = c.get(f"/jobs/{job['id']}").json()
    assert after["state"] == "succeeded" and after["network_id"] is None
    sample = net["neurons"][0]["index_set"]["samples"][0]
    assert c.get("/neurons", params={"sample": sample}).json()["total"] == 0

    # DELETE /jobs/{id}: the job, its network, neurons, index-set rows and pricing rounds
    job2 = c.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.2}}).json()
    assert run_pending_jobs() == ["succeeded"]
    with eng.begin() as conn:  # a round a dead coordinator left behind
        rid = conn.execute(PricingRound.__table__.insert().values(
            job_id=job2["id"], attempt="x", round=1, V=b"", n_top=1, threshold=0.0,
            n_parts=1)
        ).inserted_primary_key[0]
        conn.execute(PricingPart.__table__.insert().values(
            round_id=rid, part_index=0, start=0, stop=1, state="queued"))
    eng.dispose()
    counts = _counts(url)
    assert counts["jobs"] == 2 and counts["networks"] == 1 and counts["pricing_parts"] == 1
    assert c.delete(f"/jobs/{job2['id']}", headers=b).status_code == 404
    assert c.delete(f"/jobs/{job2['id']}").status_code == 204
    assert c.get(f"/jobs/{job2['id']}").status_code == 404
    assert _counts(url) == {**{t: 0 for t in TABLES}, "jobs": 1}

    # cancelled and failed jobs can be deleted too
    assert c.delete(f"/jobs/{job['id']}").status_code == 204
    job3 = c.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.3}}).json()
    assert c.post(f"/jobs/{job3['id']}/cancel").status_code == 200
    assert c.delete(f"/jobs/{job3['id']}").status_code == 204
    assert _counts(url) == {t: 0 for t in TABLES}
    assert c.get("/jobs").json()["total"] == 0 and c.get("/networks").json()["total"] == 0
    # the dataset is untouched
    assert c.get(f"/datasets/{ds['id']}").status_code == 200


# ------------------------------------------------------------------- 4. checks before queueing
BIG = (200, 3)  # p=1, bias: about 2.7 million columns, over the tests' limit of 100000


@pytest.mark.parametrize("params, data, names", [
    ({"source": "sample"}, "small", ["source='sample'", "n_columns"]),
    ({"source": "search", "solver": "cvxpy"}, "small", ["solver='cvxpy'"]),
    ({"solver": "cvxpy"}, "big", ["source='auto'", "solver='cvxpy'"]),
    ({"max_columns": 10, "solver": "cvxpy"}, "small", ["source='auto'", "solver='cvxpy'"]),
    ({"source": "search", "scan_parts": 2}, "small", ["scan_parts"]),
    ({"scan_parts": 2}, "big", ["source='auto'", "scan_parts"]),
    ({"source": "exhaustive", "n_columns": 10}, "small", ["n_columns"]),
    ({"n_columns": 10}, "small", ["source='auto'", "n_columns"]),
    ({"source": "exhaustive"}, "big", ["max_columns", "source='search'"]),
    ({"source": "exhaustive", "max_columns": 10}, "small", ["max_columns"]),
    ({"source": "sample", "n_columns": 10**6}, "small", ["n_columns=1000000", "limit"]),
    ({"scan_parts": 1000}, "small", ["scan_parts=1000", "limit"]),
    ({"solver": "cvxpy", "scan_parts": 2}, "small", ["scan_parts", "solver"]),
    ({"solver": "cvxpy", "warm_start": "polish"}, "small", ["warm_start", "solver"]),
    ({"solver": "cvxpy", "max_time": 5.0}, "small", ["max_time", "solver"]),
    ({"loss": "logistic"}, "small", ["loss='logistic'", "2 distinct"]),
    ({"loss": "hinge"}, "small", ["loss='hinge'"]),
    ({"loss": "softmax"}, "small", ["loss='softmax'", "integer"]),
    ({"loss": "softmax"}, "one-class", ["loss='softmax'", "at least 2"]),
    ({"bias": True}, "one-sample", ["bias=true", "n=1"]),
    ({"p": 2}, "identical", ["p=2", "rank 0"]),
])
def test_parameters_checked_before_queueing(client, params: dict[str, Any], data: str,
                                            names: list[str]) -> None:
    X, y = small_problem()
    if data == "big":
        X, y = small_problem(*BIG)
    elif data == "one-class":
        y = np.zeros(12, dtype=np.int64)
    elif data == "one-sample":
        X, y = X[:1], y[:1]
    elif data == "identical":
        X = np.ones((12, 2))
    ds = _dataset(client, X, y)
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1, **params}})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    for name in names:
        assert name in detail, (name, detail)
    assert "n_hyperplanes" not in detail
    assert client.get("/jobs").json()["total"] == 0  # nothing queued


@pytest.mark.parametrize("params, data, names", [
    ({"p": 2}, "identical", ["p=2", "rank 0"]),
    ({"bias": True}, "one-sample", ["bias=true", "n=1"]),
    ({"loss": "logistic"}, "small", ["loss='logistic'"]),
])
def test_polish_parameters_checked_before_queueing(client, params: dict[str, Any], data: str,
                                                   names: list[str]) -> None:
    X, y = small_problem()
    if data == "one-sample":
        X, y = X[:1], y[:1]
    elif data == "identical":
        X = np.ones((12, 2))
    ds = _dataset(client, X, y)
    body = json.dumps({"layers": [{"W": [[1.0, -1.0], [0.5, 2.0]], "b": [0.0, 0.1]},
                                  {"W": [[1.0], [1.0]], "b": [0.0]}]}).encode()
    ws = client.post("/weights", files={"file": ("w.json", body)})
    assert ws.status_code == 201, ws.text
    r = client.post("/jobs", json={"kind": "polish", "dataset_id": ds["id"],
                                   "weights_id": ws.json()["id"],
                                   "params": {"lam": 0.1, **params}})
    assert r.status_code == 422, r.text
    for name in names:
        assert name in r.json()["detail"], (name, r.json()["detail"])
    assert client.get("/jobs").json()["total"] == 0


def test_accepted_combinations_run(client) -> None:
    """What the checks let through runs: a sampled dictionary with n_columns (it used to be
    queued without n_columns and fail naming n_hyperplanes), and p=2 on rank-deficient data,
    where source='auto' is resolved from the data's rank exactly as the worker does."""
    X, y = small_problem(n=20)
    ds = _dataset(client, X, y)
    net = _solve(client, ds, source="sample", n_columns=40)
    assert net["scanned"] == "sampled" and net["params"]["n_columns"] == 40
    # 30 points on a line in 3-D: about 8e3 columns by (n, d), 60 by the affine rank 1
    t = np.linspace(-1, 1, 30)
    Xl = np.column_stack([t, 2 * t + 1, -t])
    dsl = _dataset(client, Xl, np.sin(3 * t))
    net = _solve(client, dsl, p=2, max_columns=1000, solver="cvxpy", l2_bound=False)
    assert net["scanned"] == "all" and net["certified"]


# ------------------------------------------------------------------------------- 5. export
def test_export_onnx_safetensors_and_card(client, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from safetensors import safe_open

    X, y = _classes_problem()
    ds = _dataset(client, X, y)
    net = _solve(client, ds, loss="logistic")
    pred = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()

    card = client.get(f"/networks/{net['id']}/export", params={"format": "card"}).json()
    import wedgenet

    assert card["wedgenet_version"] == wedgenet.__version__
    assert card["dataset_sha256"] == ds["content_hash"]
    assert card["parameters"]["loss"] == "logistic" and card["parameters"]["lam"] == 0.1
    assert card["objective"] == net["primal_objective"]
    assert card["dual_bound"] == net["dual_objective"]
    assert card["relative_gap"] == net["relative_gap"] and card["certified"] is True
    assert card["classes"] == [3, 7] and card["network_id"] == net["id"]
    assert [(n["index_set"], n["formula"]) for n in card["neurons"]] == [
        (n["index_set"], n["formula"]) for n in net["neurons"]]

    r = client.get(f"/networks/{net['id']}/export", params={"format": "onnx"})
    assert r.status_code == 200
    assert r.headers["content-disposition"].endswith(f'{net["id"]}.onnx"')
    model = onnx.load_from_string(r.content)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["wedgenet_model_card"]) == card
    sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
    scores = sess.run(None, {"X": X.astype(np.float32)})[0]
    np.testing.assert_allclose(scores[:, 0], pred["outputs"], rtol=1e-4, atol=1e-4)
    r = client.get(f"/networks/{net['id']}/export",
                   params={"format": "onnx", "output": "probabilities"})
    sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
    proba = sess.run(None, {"X": X.astype(np.float32)})[0]
    np.testing.assert_allclose(proba, pred["probabilities"], atol=1e-5)

    r = client.get(f"/networks/{net['id']}/export", params={"format": "safetensors"})
    path = tmp_path / "net.safetensors"
    path.write_bytes(r.content)
    with safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
        assert json.loads(f.metadata()["wedgenet_model_card"]) == card
        W1, b1 = f.get_tensor("0.weight"), f.get_tensor("0.bias")
        W2, b2 = f.get_tensor("2.weight"), f.get_tensor("2.bias")
    out = np.maximum(X @ W1.T + b1, 0) @ W2.T + b2
    np.testing.assert_allclose(out[:, 0], pred["outputs"], atol=1e-9)
    z = np.load(io.BytesIO(client.get(f"/networks/{net['id']}/export").content))
    assert sorted(z.files) == ["W1", "W2", "b1", "b2"]

    # probabilities need a logistic or softmax network; other keys see nothing
    Xr, yr = small_problem()
    reg = _solve(client, _dataset(client, Xr, yr))
    r = client.get(f"/networks/{reg['id']}/export",
                   params={"format": "onnx", "output": "probabilities"})
    assert r.status_code == 422 and "probabilities" in r.json()["detail"]
    assert client.get(f"/networks/{reg['id']}/export", params={"format": "card"}).json()[
        "classes"] is None
    for fmt in ("card", "onnx", "safetensors"):
        assert client.get(f"/networks/{net['id']}/export", params={"format": fmt},
                          headers={"X-API-Key": KEY_B}).status_code == 404
    assert client.get(f"/networks/{net['id']}/export",
                      params={"format": "pt"}).status_code == 422


def test_export_deep_polished_network(client) -> None:
    import onnxruntime as ort

    X, y = small_problem(n=20)
    ds = _dataset(client, X, y)
    rng = np.random.default_rng(1)
    layers = [(rng.normal(size=(2, 5)), rng.normal(size=5) * 0.1),
              (rng.normal(size=(5, 4)) / 2, rng.normal(size=4) * 0.1),
              (rng.normal(size=(4, 1)), np.zeros(1))]
    body = json.dumps({"layers": [{"W": W.tolist(), "b": b.tolist()} for W, b in layers]})
    ws = client.post("/weights", files={"file": ("w.json", body.encode())},
                     data={"dataset_id": ds["id"]})
    assert ws.status_code == 201, ws.text
    r = client.post("/jobs", json={"kind": "polish", "dataset_id": ds["id"],
                                   "weights_id": ws.json()["id"], "params": {"lam": 0.05}})
    assert r.status_code == 202, r.text
    assert run_pending_jobs() == ["succeeded"]
    net_id = client.get(f"/jobs/{r.json()['id']}").json()["network_id"]
    pred = client.post(f"/networks/{net_id}/predict", json={"X": X.tolist()}).json()
    card = client.get(f"/networks/{net_id}/export", params={"format": "card"}).json()
    assert card["kind"] == "polish" and card["parameters"]["lam"] == 0.05
    assert {n["layer"] for n in card["neurons"]} == {1, 2}
    onnx_bytes = client.get(f"/networks/{net_id}/export", params={"format": "onnx"}).content
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    scores = sess.run(None, {"X": X.astype(np.float32)})[0]
    np.testing.assert_allclose(scores[:, 0], pred["outputs"], rtol=1e-4, atol=1e-4)
    from safetensors.numpy import load

    st = load(client.get(f"/networks/{net_id}/export", params={"format": "safetensors"}).content)
    assert sorted(st) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    # a deep network has no 2-D figure of neurons
    assert client.get(f"/networks/{net_id}/plot").status_code == 422


# --------------------------------------------------------------------------------- 6. plot
def test_plot_png_svg_and_refusals(client) -> None:
    X, y = _classes_problem()
    ds = _dataset(client, X, y)
    net = _solve(client, ds, loss="logistic")
    r = client.get(f"/networks/{net['id']}/plot")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    r = client.get(f"/networks/{net['id']}/plot", params={"format": "svg", "neuron": 0})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    svg = r.content.decode()
    assert "<svg" in svg and "x[0]" in svg and "x[1]" in svg  # axis labels
    assert "neuron 0 highlighted" in svg and "index-set samples" in svg
    assert "score f(x)" in svg  # the colour bar's label
    m = net["n_neurons"]
    r = client.get(f"/networks/{net['id']}/plot", params={"neuron": m})
    assert r.status_code == 422 and "neuron" in r.json()["detail"]
    assert client.get(f"/networks/{net['id']}/plot", params={"format": "gif"}).status_code == 422
    assert client.get(f"/networks/{net['id']}/plot",
                      headers={"X-API-Key": KEY_B}).status_code == 404
    # 3-D inputs: 422
    X3, y3 = small_problem(n=8, d=3)
    net3 = _solve(client, _dataset(client, X3, y3))
    r = client.get(f"/networks/{net3['id']}/plot")
    assert r.status_code == 422 and "2-D" in r.json()["detail"]
    # the samples are gone with the dataset: 409
    assert client.delete(f"/datasets/{ds['id']}").status_code == 204
    r = client.get(f"/networks/{net['id']}/plot")
    assert r.status_code == 409 and "deleted" in r.json()["detail"]
