"""Checks of job parameters against the dataset (``app/crud.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from app import crud
from tests.conftest import small_problem


def test_p2_dictionary_size_is_computed_once_per_data(client, upload,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``source="auto"`` with ``p = 2`` needs the rank of X: computed once per (X, bias) and
    kept (X is stored by its content hash), not read and decomposed at every submission."""
    crud._by_content.clear()
    calls: list[tuple[int, bool]] = []
    real = crud._p2_size

    def counting(X: np.ndarray, bias: bool) -> int | str:
        calls.append((X.shape[0], bias))
        return real(X, bias)

    monkeypatch.setattr(crud, "_p2_size", counting)
    X, y = small_problem()
    ds = upload(X, y)
    for _ in range(3):
        r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1, "p": 2}})
        assert r.status_code == 202, r.text
    client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1, "p": 2,
                                                                   "bias": False}})
    assert calls == [(12, True), (12, False)]


def test_p2_refusal_is_kept_too(client, upload, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data the engine refuses for ``p = 2`` (one sample has no hyperplane) gets the same
    422 at every submission, decided once."""
    crud._by_content.clear()
    calls: list[int] = []
    real = crud._p2_size

    def counting(X: np.ndarray, bias: bool) -> int | str:
        calls.append(X.shape[0])
        return real(X, bias)

    monkeypatch.setattr(crud, "_p2_size", counting)
    X = np.zeros((3, 2))  # rank 0
    ds = upload(X, np.array([1.0, 2.0, 3.0]))
    for _ in range(2):
        r = client.post("/jobs", json={"dataset_id": ds["id"],
                                       "params": {"lam": 0.1, "p": 2, "bias": False}})
        assert r.status_code == 422, r.text
        assert "p=2" in r.text
    assert calls == [3]


@pytest.mark.parametrize("loss, y", [("logistic", np.tile([0.0, 1.0], 6)),
                                     ("softmax", np.arange(12) % 3)])
def test_labels_are_read_once_per_data(client, upload, monkeypatch: pytest.MonkeyPatch,
                                       loss: str, y: np.ndarray) -> None:
    """The label check of a logistic or softmax job reads y once per stored y, not at every
    submission (a big dataset's y is a blob of megabytes)."""
    crud._by_content.clear()
    reads: list[str] = []
    real = crud.get_array

    def counting(session, sha256: str):  # type: ignore[no-untyped-def]
        reads.append(sha256)
        return real(session, sha256)

    monkeypatch.setattr(crud, "get_array", counting)
    X, _ = small_problem()
    ds = upload(X, y)
    for _ in range(3):
        r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1,
                                                                           "loss": loss}})
        assert r.status_code == 202, r.text
    assert len(reads) == 1
    bad = upload(X, np.arange(12.0))  # 12 distinct values: refused, and still read once
    for _ in range(2):
        r = client.post("/jobs", json={"dataset_id": bad["id"],
                                       "params": {"lam": 0.1, "loss": "logistic"}})
        assert r.status_code == 422 and "12 distinct values" in r.text, r.text
    assert len(reads) == 2
