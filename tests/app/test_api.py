"""In-process API tests (TestClient + SQLite); jobs are run in-process by the worker code."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.conftest import KEY_B, npy, recorded_statements, run_pending_jobs, small_problem


def test_health(client) -> None:
    r = client.get("/health", headers={"X-API-Key": ""})
    assert r.status_code == 200 and r.json()["database"] is True


def test_auth_required(client) -> None:
    assert client.get("/datasets", headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/datasets", headers={"X-API-Key": "nope"}).status_code == 401


def test_dataset_roundtrip(client, upload) -> None:
    X, y = small_problem()
    ds = upload(X, y)
    assert ds["n"] == 12 and ds["d"] == 2 and ds["outputs"] == 1
    assert ds["x_dtype"] == "float64" and len(ds["content_hash"]) == 64
    # same content -> same dataset (content addressed)
    again = upload(X, y)
    assert again["id"] == ds["id"]
    r = client.get(f"/datasets/{ds['id']}/download")
    z = np.load(io.BytesIO(r.content), allow_pickle=False)
    np.testing.assert_array_equal(z["X"], X)
    np.testing.assert_array_equal(z["y"], y)
    r = client.get(f"/datasets/{ds['id']}/download", params={"array": "X"})
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content), allow_pickle=False), X)
    page = client.get("/datasets").json()
    assert page["total"] == 1 and page["items"][0]["id"] == ds["id"]
    assert client.delete(f"/datasets/{ds['id']}").status_code == 204
    assert client.get(f"/datasets/{ds['id']}").status_code == 404


@pytest.mark.parametrize("fmt", ["csv", "json", "npz", "safetensors"])
def test_dataset_formats(client, fmt: str) -> None:
    X, y = small_problem()
    if fmt == "csv":
        fx = "\n".join(",".join(repr(float(v)) for v in row) for row in X).encode()
        fy = "y\n" + "\n".join(repr(float(v)) for v in y)
        files = {"X": ("X.csv", fx), "y": ("y.csv", fy.encode())}
    elif fmt == "json":
        files = {"X": ("X.json", json.dumps(X.tolist()).encode()),
                 "y": ("y.json", json.dumps(y.tolist()).encode())}
    elif fmt == "npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, X=X, y=y)
        files = {"file": ("d.npz", buf.getvalue())}
    else:
        from safetensors.numpy import save

        files = {"file": ("d.safetensors", save({"X": X, "y": y}))}
    r = client.post("/datasets", files=files)
    assert r.status_code == 201, r.text
    assert (r.json()["n"], r.json()["d"]) == (12, 2)
    z = np.load(io.BytesIO(client.get(f"/datasets/{r.json()['id']}/download").content))
    np.testing.assert_allclose(z["X"], X)


def test_solve_flow_in_process(client, upload) -> None:
    X, y = small_problem()
    ds = upload(X, y)
    r = client.post("/jobs", json={"kind": "solve", "dataset_id": ds["id"],
                                   "params": {"lam": 0.1}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued" and job["progress"]["fraction"] == 0.0
    assert run_pending_jobs() == ["succeeded"]
    job = client.get(f"/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    assert job["progress"]["fraction"] == 1.0 and job["attempts"] == 1
    assert job["started_at"] and job["finished_at"] and job["heartbeat_at"]
    assert job["links"]["network"] == f"/networks/{job['network_id']}"
    net = client.get(f"/networks/{job['network_id']}").json()
    assert net["certified"] is True and net["relative_gap"] <= 1e-6
    assert net["dual_objective"] <= net["primal_objective"] + 1e-9
    assert net["n_neurons"] == len(net["neurons"]) > 0
    W1 = np.array(net["layers"][0]["W"])
    assert W1.shape == (2, net["n_neurons"])
    for nr in net["neurons"]:
        assert nr["index_set"] is not None and nr["formula"]
    # predictions match the engine's own network
    pred = client.post(f"/networks/{net['id']}/predict", json={"X": X.tolist()}).json()
    import wedgenet

    ref = wedgenet.solve(X, y, lam=0.1)
    np.testing.assert_allclose(pred["outputs"], ref.network.decision_function(X), atol=1e-5)
    # export
    z = np.load(io.BytesIO(client.get(f"/networks/{net['id']}/export").content))
    assert set(z.files) == {"W1", "b1", "W2", "b2"}
    out = np.maximum(X @ z["W1"] + z["b1"], 0) @ z["W2"] + z["b2"]
    np.testing.assert_allclose(out[:, 0], pred["outputs"], atol=1e-9)
    from safetensors.numpy import load

    st = load(client.get(f"/networks/{net['id']}/export", params={"format": "safetensors"})
              .content)
    np.testing.assert_array_equal(st["0.weight"], z["W1"].T)  # PyTorch names and layout
    # neurons by sample
    sample = net["neurons"][0]["index_set"]["samples"][0]
    hits = client.get("/neurons", params={"sample": sample}).json()
    expected = {n["id"] for n in net["neurons"] if sample in n["index_set"]["samples"]}
    assert {h["neuron_id"] for h in hits["items"]} == expected
    assert client.get("/neurons", params={"sample": sample},
                      headers={"X-API-Key": KEY_B}).json()["total"] == 0
    # re-running a finished job is a no-op; still one result
    from worker.tasks import run_job_now

    assert run_job_now(job["id"]) == "skipped"
    assert client.get("/networks").json()["total"] == 1


def test_idempotency_key(client, upload) -> None:
    ds = upload(*small_problem())
    body = {"kind": "solve", "dataset_id": ds["id"], "params": {"lam": 0.1}}
    a = client.post("/jobs", json=body, headers={"Idempotency-Key": "k1"})
    b = client.post("/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"]
    assert b.headers["Location"] == f"/jobs/{a.json()['id']}"
    # another owner using the same key gets its own job (after uploading its own dataset)
    dsb = client.post("/datasets", files={"X": ("X.npy", npy(small_problem()[0])),
                                          "y": ("y.npy", npy(small_problem()[1]))},
                      headers={"X-API-Key": KEY_B}).json()
    c = client.post("/jobs", json={**body, "dataset_id": dsb["id"]},
                    headers={"Idempotency-Key": "k1", "X-API-Key": KEY_B})
    assert c.status_code == 202 and c.json()["id"] != a.json()["id"]
    # same key, different request
    d = client.post("/jobs", json={**body, "params": {"lam": 0.2}},
                    headers={"Idempotency-Key": "k1"})
    assert d.status_code == 409
    assert client.get("/jobs").json()["total"] == 1


def test_list_jobs_filters_and_pagination(client, upload) -> None:
    ds = upload(*small_problem())
    ids = [client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1 + i}})
           .json()["id"] for i in range(3)]
    page = client.get("/jobs", params={"limit": 2, "offset": 0}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    page2 = client.get("/jobs", params={"limit": 2, "offset": 2}).json()
    assert len(page2["items"]) == 1
    assert {j["id"] for j in page["items"] + page2["items"]} == set(ids)
    client.post(f"/jobs/{ids[0]}/cancel")
    assert client.get("/jobs", params={"state": "cancelled"}).json()["total"] == 1
    assert client.get("/jobs", params={"state": "queued", "kind": "solve"}).json()["total"] == 2
    assert client.get("/jobs", params={"state": "bogus"}).status_code == 422


def test_cancel(client, upload) -> None:
    ds = upload(*small_problem())
    job = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}}).json()
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert run_pending_jobs() == []
    from worker.tasks import run_job_now

    assert run_job_now(job["id"]) == "skipped"
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "cancelled"
    assert client.post(f"/jobs/{job['id']}/cancel").status_code == 409
    assert client.get("/networks").json()["total"] == 0


def test_tenant_isolation(client, upload) -> None:
    X, y = small_problem()
    ds = upload(X, y)
    job = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}}).json()
    run_pending_jobs()
    job = client.get(f"/jobs/{job['id']}").json()
    net_id = job["network_id"]
    ws = client.post("/weights", files={"file": ("w.json", json.dumps(
        {"layers": [{"W": [[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], "b": [0.0, 0.0, 0.0]},
                    {"W": [[1.0], [1.0], [1.0]], "b": [0.0]}]}).encode())}).json()
    b = {"X-API-Key": KEY_B}
    for path in (f"/datasets/{ds['id']}", f"/datasets/{ds['id']}/download",
                 f"/jobs/{job['id']}", f"/networks/{net_id}",
                 f"/networks/{net_id}/export", f"/weights/{ws['id']}"):
        assert client.get(path, headers=b).status_code == 404, path
    assert client.post(f"/jobs/{job['id']}/cancel", headers=b).status_code == 404
    assert client.delete(f"/datasets/{ds['id']}", headers=b).status_code == 404
    assert client.delete(f"/weights/{ws['id']}", headers=b).status_code == 404
    assert client.post(f"/networks/{net_id}/predict", json={"X": [[0.0, 0.0]]},
                       headers=b).status_code == 404
    assert client.post("/jobs", json={"dataset_id": ds["id"]}, headers=b).status_code == 404
    for path in ("/datasets", "/jobs", "/networks", "/weights"):
        assert client.get(path, headers=b).json()["total"] == 0, path
    # and A still sees everything
    assert client.get(f"/networks/{net_id}").status_code == 200


def test_weights_upload(client, upload) -> None:
    ds = upload(*small_problem())
    W1, b1 = np.ones((2, 4)), np.zeros(4)
    W2, b2 = np.ones((4, 1)), np.zeros(1)
    buf = io.BytesIO()
    np.savez(buf, W1=W1, b1=b1, W2=W2, b2=b2)
    r = client.post("/weights", files={"file": ("w.npz", buf.getvalue())},
                    data={"dataset_id": ds["id"], "name": "trained"})
    assert r.status_code == 201, r.text
    assert r.json()["layers"] == [{"d_in": 2, "d_out": 4}, {"d_in": 4, "d_out": 1}]
    # per-layer files
    r = client.post("/weights", files=[("W", ("W1.npy", npy(W1))), ("W", ("W2.npy", npy(W2))),
                                       ("b", ("b1.npy", npy(b1))), ("b", ("b2.npy", npy(b2)))])
    assert r.status_code == 201, r.text
    z = np.load(io.BytesIO(client.get(f"/weights/{r.json()['id']}/download").content))
    np.testing.assert_array_equal(z["W2"], W2)
    assert client.get("/weights").json()["total"] == 2


def test_job_status_is_one_query(client, upload) -> None:
    """GET /jobs/{id}, the request clients poll, reads the job and its network id in one
    statement (it was two)."""
    from app.db import get_engine

    X, y = small_problem()
    ds = upload(X, y)
    job = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}}).json()
    assert run_pending_jobs() == ["succeeded"]
    with recorded_statements(get_engine()) as statements:
        got = client.get(f"/jobs/{job['id']}").json()
    assert got["state"] == "succeeded" and got["network_id"]
    assert got["links"]["network"] == f"/networks/{got['network_id']}"
    assert len(statements) == 1, statements
    assert client.get(f"/jobs/{job['id']}", headers={"X-API-Key": KEY_B}).status_code == 404


def test_submitted_job_is_published_after_the_answer(client, upload, service_env) -> None:
    """The job row is committed before the answer; its message is published right after
    (a background task), so the answer does not wait for the broker."""
    from pathlib import Path

    X, y = small_problem()
    ds = upload(X, y)
    queue = Path(service_env["WEDGENET_BROKER_DIR"]) / "queue"
    before = set(queue.glob("*.msg")) if queue.exists() else set()
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}})
    assert r.status_code == 202
    messages = set(queue.glob("*.msg")) - before
    assert len(messages) == 1  # TestClient returns once the background task ran
    assert r.json()["id"] in next(iter(messages)).read_text()
