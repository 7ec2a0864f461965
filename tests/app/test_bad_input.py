"""Every malformed request gets a 4xx saying what is wrong, and nothing is stored."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest

from tests.conftest import npy, small_problem


def _nothing_stored(client) -> None:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import Blob, Dataset, Job, WeightSet

    assert client.get("/datasets").json()["total"] == 0
    with session_scope() as s:
        for model in (Blob, Dataset, WeightSet, Job):
            assert s.scalar(select(func.count()).select_from(model)) == 0, model


def _post_xy(client, fx, fy):
    return client.post("/datasets", files={"X": fx, "y": fy})


X, Y = small_problem()
GOOD_Y = ("y.npy", npy(Y))


def _huge_npz() -> bytes:
    """An .npz whose member header announces a (10^6, 10^6) float64 array."""
    header = npy(np.zeros((1, 1)))
    fake = header.replace(b"(1, 1)", b"(1000000, 1000000)")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", fake)
    return buf.getvalue()


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


CASES = {
    "nan": (("X.npy", npy(np.array([[np.nan, 1.0]] * 12))), GOOD_Y, 422, "NaN"),
    "inf": (("X.npy", npy(np.array([[np.inf, 1.0]] * 12))), GOOD_Y, 422, "infinite"),
    "json-nan": (("X.json", b"[[NaN, 1.0]]"), ("y.json", b"[1.0]"), 422, "NaN"),
    "ragged-json": (("X.json", b"[[1, 2], [3]]"), ("y.json", b"[1, 2]"), 422, "ragged"),
    "ragged-csv": (("X.csv", b"1,2\n3\n"), ("y.csv", b"1\n2\n"), 422, "ragged"),
    "non-numeric-csv": (("X.csv", b"1,2\n3,abc\n"), ("y.csv", b"1\n2\n"), 422, "non-numeric"),
    "non-numeric-json": (("X.json", b'[[1, "a"]]'), ("y.json", b"[1]"), 422, "not a number"),
    "n-mismatch": (("X.npy", npy(X)), ("y.npy", npy(Y[:5])), 422, "n must match"),
    "unknown-format": (("X.xlsx", b"\x00\x01garbage"), GOOD_Y, 415, "unknown format"),
    "huge-npz": (("X.npz", _huge_npz()), GOOD_Y, 413, "limit"),
    "pickled-npy": (("X.npy", _pickled_npy()), GOOD_Y, 422, "pickle"),
    "string-npy": (("X.npy", npy(np.array([["a", "b"]]))), GOOD_Y, 422, "not numeric"),
    "corrupt-npy": (("X.npy", b"\x93NUMPY\x01\x00garbage"), GOOD_Y, 422, ".npy"),
    "bad-zip": (("X.npz", b"PK\x03\x04nonsense"), GOOD_Y, 422, "zip"),
    "empty": (("X.npy", b""), GOOD_Y, 422, "empty"),
    "3d": (("X.npy", npy(np.zeros((2, 2, 2)))), ("y.npy", npy(np.zeros(2))), 422, "2-D"),
    "bad-safetensors": (("X.safetensors", struct.pack("<Q", 10**9) + b"{}"), GOOD_Y, 422,
                        "header"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset(client, case: str) -> None:
    fx, fy, status, needle = CASES[case]
    r = _post_xy(client, fx, fy)
    assert r.status_code == status, (case, r.status_code, r.text)
    assert needle.lower() in r.json()["detail"].lower(), r.json()
    _nothing_stored(client)


def test_oversize_upload_streaming(client) -> None:
    big = b"1.0," * (300 * 1024)  # over WEDGENET_MAX_UPLOAD_BYTES = 256 KiB
    r = _post_xy(client, ("X.csv", big), ("y.csv", b"1\n"))
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    _nothing_stored(client)


def test_oversize_body_refused_by_content_length(client) -> None:
    body = b"x" * (2 * 256 * 1024 + 2 * 1024 * 1024)
    r = client.post("/datasets", content=body,
                    headers={"Content-Type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 413
    _nothing_stored(client)


def test_missing_files(client) -> None:
    r = client.post("/datasets", files={"X": ("X.npy", npy(X))})
    assert r.status_code == 422 and "'y'" in r.json()["detail"]
    _nothing_stored(client)


@pytest.mark.parametrize("layers, needle", [
    ([{"W": [[1.0, 2.0]], "b": [0.0, 0.0]}], "dataset has d=2"),
    ([{"W": [[1.0], [2.0]], "b": [0.0, 0.0]}], "b has shape"),
    ([{"W": [[1.0], [2.0]], "b": [0.0]}, {"W": [[1.0], [1.0]], "b": [0.0]}], "input rows"),
    ([{"W": [[1.0], [2.0]], "b": [NaN := float("nan")]}], "NaN"),
])
def test_bad_weights(client, upload, layers, needle) -> None:
    ds = upload(X, Y)
    text = json.dumps({"layers": layers}, allow_nan=True)
    r = client.post("/weights", files={"file": ("w.json", text.encode())},
                    data={"dataset_id": ds["id"]})
    assert r.status_code == 422, r.text
    assert needle.lower() in r.json()["detail"].lower(), r.json()
    assert client.get("/weights").json()["total"] == 0


def test_weights_unknown_dataset(client) -> None:
    r = client.post("/weights", files={"file": ("w.json", b'{"layers": []}')},
                    data={"dataset_id": "doesnotexist"})
    assert r.status_code == 404 and "not found" in r.json()["detail"]


@pytest.mark.parametrize("params, needle", [
    ({"lam": 0}, "greater than 0"),
    ({"lam": -1}, "greater than 0"),
    ({"p": 3}, "p"),
    ({"loss": "cubic"}, "loss"),
    ({"tol": 2}, "tol"),
    ({"source": "exhaustive", "n_columns": 10}, "n_columns"),
    ({"max_time": 0}, "max_time"),
    ({"max_time": -1.0}, "max_time"),
    ({"source": "everything"}, "source"),
    ({"bogus": 1}, "extra"),
    ({"loss": "logistic"}, "2 distinct values"),
    ({"loss": "softmax"}, "integer class labels"),
    ({"source": "sample", "n_columns": 10**7}, "exceeds the limit"),
])
def test_bad_job_params(client, upload, params, needle) -> None:
    ds = upload(X, Y)
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": params})
    assert r.status_code == 422, r.text
    assert needle.lower() in json.dumps(r.json()).lower(), r.json()
    assert client.get("/jobs").json()["total"] == 0


def test_unknown_dataset_job(client) -> None:
    r = client.post("/jobs", json={"dataset_id": "nope", "params": {}})
    assert r.status_code == 404 and "not found" in r.json()["detail"]
    assert client.get("/jobs").json()["total"] == 0


def test_dictionary_too_large(client, upload) -> None:
    rng = np.random.default_rng(1)
    ds = upload(rng.normal(size=(300, 6)), rng.normal(size=300))
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"source": "exhaustive"}})
    assert r.status_code == 422
    assert "source='search'" in r.json()["detail"]
    assert client.get("/jobs").json()["total"] == 0
    for params in ({"source": "search", "scan_parts": 2}, {"scan_parts": 2},
                   {"source": "search", "solver": "cvxpy"}):
        r = client.post("/jobs", json={"dataset_id": ds["id"], "params": params})
        assert r.status_code == 422 and "searched" in r.json()["detail"], (params, r.text)
    assert client.get("/jobs").json()["total"] == 0
    r = client.post("/jobs", json={"dataset_id": ds["id"],
                                   "params": {"source": "sample", "n_columns": 500}})
    assert r.status_code == 202
    # the default (source='auto') searches a dictionary this large, with a time limit
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.5}})
    assert r.status_code == 202, r.text
    params = r.json()["params"]
    assert params["source"] == "auto" and params["max_time"] > 0, params


def test_bad_predict(client, upload) -> None:
    from tests.conftest import run_pending_jobs

    ds = upload(X, Y)
    job = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}}).json()
    run_pending_jobs()
    net = client.get(f"/jobs/{job['id']}").json()["network_id"]
    for body, needle in (({"X": [[1.0, 2.0, 3.0]]}, "columns"), ({"X": [[1.0], [1.0, 2.0]]},
                         "ragged"), ({"X": []}, "at least one row"),
                         ({"X": [["a", 1]]}, "float")):
        r = client.post(f"/networks/{net}/predict", json=body)
        assert r.status_code == 422, body
        assert needle in json.dumps(r.json()), r.json()


def test_npz_too_many_members(client) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i}": np.zeros(1) for i in range(100)})
    r = _post_xy(client, ("X.npz", buf.getvalue()), GOOD_Y)
    assert r.status_code == 413 and "members" in r.json()["detail"]
    _nothing_stored(client)


def test_delete_dataset_with_active_job(client, upload) -> None:
    ds = upload(X, Y)
    job = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1}}).json()
    r = client.delete(f"/datasets/{ds['id']}")
    assert r.status_code == 409 and "queued or running" in r.json()["detail"]
    client.post(f"/jobs/{job['id']}/cancel")
    assert client.delete(f"/datasets/{ds['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").json()["dataset_id"] is None
