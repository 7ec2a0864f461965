"""Three-layer networks outside the library call: the estimators' ``depth=3``, the command
line's ``--depth 3`` (summary, JSON, exports) and ``ThreeLayerNetwork.to_layers``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import wedgenet as wn
from wedgenet.cli import main
from wedgenet.estimator import WedgeNetClassifier, WedgeNetRegressor
from wedgenet.exceptions import WedgeNetError


def _data(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, np.sin(X[:, 0]) + X[:, 1] ** 2


def _forward(layers: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> np.ndarray:
    out = X
    for W, b in layers[:-1]:
        out = np.maximum(out @ W + b, 0.0)
    return np.asarray(out @ layers[-1][0] + layers[-1][1])


def test_to_layers_computes_the_network() -> None:
    X, y = _data()
    res = wn.solve_three_layer(X, y, lam=0.05)
    layers = res.network.to_layers()
    m = len(res.blocks)
    assert [W.shape for W, _ in layers] == [(2, m), (m, m), (m, 1)]
    assert np.count_nonzero(layers[1][0] - np.diag(np.diag(layers[1][0]))) == 0
    np.testing.assert_allclose(_forward(layers, X)[:, 0], res.predict(X), atol=1e-12)


def test_estimators_depth_3_fit_predict() -> None:
    X, y = _data()
    reg = WedgeNetRegressor(lam=0.05, depth=3).fit(X, y)
    ref = wn.solve_three_layer(X, y, lam=0.05)
    assert reg.certified_ and isinstance(reg.network_, wn.threelayer.ThreeLayerNetwork)
    np.testing.assert_allclose(reg.predict(X), ref.predict(X), atol=1e-10)
    assert reg.result_.primal_objective == pytest.approx(ref.primal_objective, rel=1e-9)
    assert len(reg.neurons_) == len(ref.blocks)
    assert reg.get_params()["depth"] == 3
    labels = np.where(y > 1.0, "hi", "lo")
    clf = WedgeNetClassifier(lam=0.05, depth=3).fit(X, labels)
    assert clf.loss_ == "logistic" and list(clf.classes_) == ["hi", "lo"]
    scores = clf.decision_function(X)
    assert scores.shape == (10,)
    assert np.array_equal(clf.predict(X), np.where(scores > 0, "lo", "hi"))
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-scores)))


def test_estimators_depth_3_refuse_what_the_engine_cannot_do() -> None:
    X, y = _data()
    with pytest.raises(WedgeNetError, match="binary classification only"):
        WedgeNetClassifier(depth=3).fit(X, np.arange(10) % 3)
    with pytest.raises(WedgeNetError, match="p=1"):
        WedgeNetRegressor(depth=3, p=2).fit(X, y)
    with pytest.raises(WedgeNetError, match="source"):
        WedgeNetRegressor(depth=3, source="search").fit(X, y)
    with pytest.raises(WedgeNetError, match="one output"):
        WedgeNetRegressor(depth=3).fit(X, np.column_stack([y, y]))
    with pytest.raises(WedgeNetError, match="depth must be 2 or 3"):
        WedgeNetRegressor(depth=4).fit(X, y)


def test_cli_depth_3_summary_json_and_exports(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    X, y = _data()
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    ref = wn.solve_three_layer(X, y, lam=0.05)
    assert main(["solve", "--help"]) == 0
    assert "--depth {2,3}" in capsys.readouterr().out
    assert main(["solve", str(data), "--depth", "3", "--lam", "0.05", "-q"]) == 0
    text = capsys.readouterr().out
    assert "certified" in text and f"blocks           {len(ref.blocks)}" in text
    assert "j0=" in text and "shape=" in text and "diffs=" in text and "r(x)" in text
    assert main(["solve", str(data), "--depth", "3", "--lam", "0.05", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["certified"] and doc["depth"] == 3
    assert {"threshold_sample", "shape", "formula"} <= set(doc["network"]["blocks"][0])
    paths = {s: tmp_path / f"n.{s}" for s in ("onnx", "npz", "safetensors", "json")}
    for path in paths.values():
        assert main(["solve", str(data), "--depth", "3", "--lam", "0.05", "-q",
                     "-o", str(path)]) == 0
    sess = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"X": X.astype(np.float32)})[0][:, 0]
    np.testing.assert_allclose(pred, ref.predict(X), rtol=1e-5, atol=1e-5)
    with np.load(paths["npz"]) as npz:
        layers = [(npz[f"W{i}"], npz[f"b{i}"]) for i in (1, 2, 3)]
    np.testing.assert_allclose(_forward(layers, X)[:, 0], ref.predict(X), atol=1e-10)
    from safetensors import safe_open

    with safe_open(str(paths["safetensors"]), framework="numpy") as f:
        card = json.loads(f.metadata()["wedgenet_model_card"])
        assert set(f.keys()) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight",
                                 "4.bias"}
    assert card["certified"] and card["depth"] == 3
    assert card["blocks"][0]["threshold_sample"] is not None
    assert json.loads(paths["json"].read_text())["result"]["depth"] == 3
    # refused before any work
    assert main(["solve", str(data), "--depth", "3", "--reg", "l2"]) == 2
    assert "--reg l1" in capsys.readouterr().err
    assert main(["solve", str(data), "--depth", "3", "--source", "search"]) == 2
    assert main(["solve", str(data), "--depth", "3", "--loss", "softmax"]) == 2
