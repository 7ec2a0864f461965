"""Exports: PyTorch-named weights, safetensors with a model card, ONNX checked with
onnxruntime against our own predictions."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors import safe_open
from safetensors.numpy import load

import wedgenet as wn
from wedgenet.estimator import WedgeNetClassifier
from wedgenet.export import MODEL_CARD_KEY, model_card, state_dict, to_onnx, to_safetensors
from wedgenet.layers import layers_from_state_dict


def _data(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, np.abs(X[:, 0]) - X[:, 1] ** 2


def _run(model: bytes, X: np.ndarray, dtype: type) -> np.ndarray:
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"X": X.astype(dtype)})[0])


def test_onnx_scores_match_our_predictions_in_both_precisions() -> None:
    X, y = _data()
    res = wn.solve(X, y, lam=0.05)
    ours = res.network.decision_function(X)
    card = model_card(res, dataset_sha256="ab" * 32)
    exact = _run(to_onnx(res.network, dtype="float64", card=card), X, np.float64)
    np.testing.assert_allclose(exact[:, 0], ours, rtol=1e-12, atol=1e-12)
    single = _run(to_onnx(res.network), X, np.float32)
    np.testing.assert_allclose(single[:, 0], ours, rtol=1e-5, atol=1e-5)
    props = {p.key: p.value for p in onnx.load_from_string(to_onnx(res.network, card=card))
             .metadata_props}
    stored = json.loads(props[MODEL_CARD_KEY])
    assert stored["certified"] is True and stored["dataset_sha256"] == "ab" * 32
    assert stored["objective"] == pytest.approx(res.primal_objective)
    assert len(stored["neurons"]) == len(res.network.neurons)
    assert all(nr["index_set"] is not None and nr["formula"] for nr in stored["neurons"])


def test_onnx_probabilities_match_predict_proba() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    for y in (np.where(X[:, 0] * X[:, 1] > 0, "a", "b"), (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)):
        clf = WedgeNetClassifier(lam=0.1).fit(X, y)
        model = to_onnx(clf.network_, output="probabilities", loss=clf.loss_, dtype="float64")
        np.testing.assert_allclose(_run(model, X, np.float64), clf.predict_proba(X), atol=1e-12)
    with pytest.raises(wn.WedgeNetError, match="probabilities need"):
        to_onnx(clf.network_, output="probabilities", loss="hinge")


def test_deep_layers_export_and_the_state_dict_round_trips() -> None:
    rng = np.random.default_rng(2)
    layers = [(rng.normal(size=(3, 5)), rng.normal(size=5)),
              (rng.normal(size=(5, 4)), rng.normal(size=4)),
              (rng.normal(size=(4, 2)), rng.normal(size=2))]
    X = rng.normal(size=(7, 3))
    _, ours = wn.layers.forward(layers, X)
    np.testing.assert_allclose(_run(to_onnx(layers, dtype="float64"), X, np.float64), ours,
                               rtol=1e-12)
    sd = state_dict(layers)
    assert sorted(sd) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    assert sd["0.weight"].shape == (5, 3)  # PyTorch Linear: (out, in)
    back = layers_from_state_dict(sd)
    for (W, b), (W2, b2) in zip(layers, back, strict=True):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


def test_safetensors_carries_pytorch_names_and_the_model_card(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = _data()
    res = wn.solve(X, y, lam=0.05)
    blob = to_safetensors(res.network, model_card(res))
    arrays = load(blob)
    assert set(arrays) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    path = tmp_path / "net.safetensors"
    path.write_bytes(blob)
    with safe_open(str(path), framework="numpy") as f:
        card = json.loads(f.metadata()[MODEL_CARD_KEY])
    assert card["kind"] == "solve" and card["wedgenet_version"] == wn.__version__
    assert card["relative_gap"] == pytest.approx(res.relative_gap)


def test_model_card_of_a_polish() -> None:
    X, y = _data(40)
    rng = np.random.default_rng(3)
    layers = [(rng.normal(size=(2, 6)), rng.normal(size=6)), (rng.normal(size=(6, 1)),
                                                              np.zeros(1))]
    pol = wn.polish(X, y, layers, lam=0.05)
    card = model_card(pol)
    assert card["kind"] == "polish" and card["certified"] is False
    assert card["objective"] <= card["objective_before"] + 1e-9
    json.dumps(card, allow_nan=False)
