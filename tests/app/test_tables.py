"""Single-table dataset uploads (as the CLI reads them), renames and explicit re-uploads, and
PyTorch checkpoints refused with the conversion (never unpickled)."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from tests.conftest import npy, small_problem


def _csv(X: np.ndarray, y: np.ndarray, header: str | None = "a,b,label") -> bytes:
    buf = io.StringIO()
    if header:
        buf.write(header + "\n")
    for row, t in zip(X, y, strict=True):
        buf.write(",".join(repr(float(v)) for v in row) + f",{float(t)!r}\n")
    return buf.getvalue().encode()


def _stored(client, ds: dict) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def, type-arg]
    r = client.get(f"/datasets/{ds['id']}/download")
    assert r.status_code == 200
    with np.load(io.BytesIO(r.content)) as z:
        return z["X"], z["y"]


def test_one_csv_with_a_target_column_as_the_cli_reads_it(client) -> None:  # type: ignore[no-untyped-def]
    X, y = small_problem()
    for target, data in (("label", _csv(X, y)), (None, _csv(X, y)), ("2", _csv(X, y, None)),
                         ("-1", _csv(X, y))):
        form = {} if target is None else {"target": target}
        r = client.post("/datasets", files={"file": ("table.csv", data)}, data=form)
        assert r.status_code in (200, 201), r.text
        Xs, ys = _stored(client, r.json())
        np.testing.assert_array_equal(Xs, X)
        np.testing.assert_array_equal(ys, y)
    # the target in the middle of the table
    mid = _csv(np.column_stack([X[:, 0], y]), X[:, 1], header="a,label,b")
    r = client.post("/datasets", files={"file": ("t.csv", mid)}, data={"target": "label"})
    assert r.status_code in (200, 201), r.text
    Xs, ys = _stored(client, r.json())
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(Xs, np.column_stack([X[:, 0], X[:, 1]]))
    # a 2-D .npy table works the same way
    r = client.post("/datasets", files={"file": ("t.npy", npy(np.column_stack([X, y])))},
                    data={"target": "2"})
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize(
    ("files", "form", "message"),
    [
        ({"file": ("t.csv", b"a,b,y\n1,2,3\n4,5,6\n")}, {"target": "nope"}, "not found"),
        ({"file": ("t.csv", b"a,b,y\n1,2,3\n4,5,6\n")}, {"target": "7"}, "not found"),
        ({"file": ("t.csv", b"a,a,y\n1,2,3\n4,5,6\n")}, {"target": "a"}, "more than once"),
        ({"file": ("t.csv", b"y\n1\n2\n")}, {}, "at least 2 columns"),
        ({"X": ("X.npy", npy(np.ones((3, 2)))), "y": ("y.npy", npy(np.ones(3)))},
         {"target": "y"}, "single-table"),
    ],
)
def test_table_errors_name_the_problem(client, files, form, message) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/datasets", files=files, data=form)
    assert r.status_code == 422, r.text
    assert message in r.text


def test_reupload_keeps_the_name_and_patch_renames(client, upload) -> None:  # type: ignore[no-untyped-def]
    X, y = small_problem()
    files = {"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))}
    first = client.post("/datasets", files=files, data={"name": "first"})
    assert first.status_code == 201
    again = client.post("/datasets", files=files, data={"name": "second"})
    assert again.status_code == 200  # the same content: the stored dataset, not renamed
    assert again.json()["id"] == first.json()["id"] and again.json()["name"] == "first"
    r = client.patch(f"/datasets/{first.json()['id']}", json={"name": "second"})
    assert r.status_code == 200 and r.json()["name"] == "second"
    assert client.get(f"/datasets/{first.json()['id']}").json()["name"] == "second"
    assert client.patch(f"/datasets/{first.json()['id']}", json={"nam": "x"}).status_code == 422
    other = client.patch(f"/datasets/{first.json()['id']}", json={"name": "x"},
                         headers={"X-API-Key": "key-b-" + "0" * 26})
    assert other.status_code in (401, 404)


def _torch_like_zip() -> bytes:
    """The layout of torch.save: a zip with a pickle and tensor storages."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"0.weight": [1.0]}))
        zf.writestr("archive/data/0", b"\x00" * 8)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filename", "content"),
    [("model.pt", _torch_like_zip()), ("model.pth", b"\x80\x04junk"),
     ("weights.bin", b"anything"), ("upload", _torch_like_zip()),
     ("upload", pickle.dumps({"a": 1}))],
)
def test_pytorch_checkpoints_get_415_with_the_conversion(client, filename, content) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/weights", files={"file": (filename, content)})
    assert r.status_code == 415, r.text
    assert "save_file(model.state_dict()" in r.json()["detail"]
    r = client.post("/datasets", files={"file": (filename, content)})
    assert r.status_code == 415, r.text
