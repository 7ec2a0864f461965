"""The command line: subcommands, exit codes, outputs checked before work, exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import wedgenet as wn
from wedgenet.cli import main


@pytest.fixture()
def csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    y = np.abs(X[:, 0]) - 0.5 * X[:, 1]
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,y", comments="")
    return path


def test_no_command_is_a_usage_error_and_version_prints(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2
    assert "solve" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"wedgenet {wn.__version__}"
    assert main(["solve", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--lam" in text and "(default: 0.01)" in text and "regularization" in text
    assert main(["bogus"]) == 2


@pytest.mark.parametrize(
    ("output", "message"),
    [("missing/dir/net.npz", "does not exist"), ("net.txt", "unknown format")],
)
def test_outputs_are_checked_before_any_work(csv, tmp_path, capsys, output, message) -> None:  # type: ignore[no-untyped-def]
    assert main(["solve", str(csv), "-o", str(tmp_path / output)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "column generation" not in captured.err  # nothing was solved


def test_solve_exports_onnx_and_safetensors_with_a_model_card(csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    onnx_path, st_path, js = tmp_path / "n.onnx", tmp_path / "n.safetensors", tmp_path / "n.json"
    for out in (onnx_path, st_path, js):
        assert main(["solve", str(csv), "--lam", "0.05", "-q", "-o", str(out)]) == 0
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    X = table[:, :2]
    ref = wn.solve(X, table[:, 2], lam=0.05)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    pred = sess.run(None, {"X": X.astype(np.float32)})[0][:, 0]
    np.testing.assert_allclose(pred, ref.network.decision_function(X), rtol=1e-5, atol=1e-5)
    from safetensors import safe_open

    with safe_open(str(st_path), framework="numpy") as f:
        card = json.loads(f.metadata()["wedgenet_model_card"])
        assert set(f.keys()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert card["certified"] and len(card["dataset_sha256"]) == 64
    doc = json.loads(js.read_text())
    assert doc["model_card"]["objective"] == pytest.approx(ref.primal_objective)
    assert doc["result"]["certified"] is True


def test_polish_command_reads_weights_and_refuses_pickles(csv, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    weights = tmp_path / "w.npz"
    np.savez(weights, W1=rng.normal(size=(2, 8)), b1=rng.normal(size=8),
             W2=rng.normal(size=(8, 1)), b2=np.zeros(1))
    out = tmp_path / "polished.npz"
    assert main(["polish", str(weights), str(csv), "--lam", "0.05", "--json", "-o",
                 str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["objective_after"] <= report["objective_before"] + 1e-9
    with np.load(out) as data:
        assert {"W1", "b1", "W2", "b2"} <= set(data.files)
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04not really a pickle")
    assert main(["polish", str(pt), str(csv)]) == 2
    assert "save_file(model.state_dict()" in capsys.readouterr().err


def test_plot_png_and_svg(csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    png, svg = tmp_path / "f.png", tmp_path / "f.svg"
    assert main(["plot", str(csv), "--lam", "0.05", "-q", "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(csv), "--lam", "0.05", "-q", "-o", str(svg)]) == 0
    text = svg.read_text()
    assert "<svg" in text and "x[0]" in text and "network output" in text


def test_plot_of_a_three_layer_network(csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    svg = tmp_path / "three.svg"
    assert main(["plot", str(csv), "--depth", "3", "--lam", "0.5", "-q", "-o", str(svg)]) == 0
    text = svg.read_text()
    assert "blocks" in text and "threshold samples j0" in text
