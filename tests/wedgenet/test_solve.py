"""The convex programs, the fast path against the cvxpy reference, and reconstruction."""

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import wedgenet as wn
from wedgenet import DictionaryTooLarge, WedgeNetError
from wedgenet.cli import main as cli_main
from wedgenet.estimator import WedgeNetClassifier, WedgeNetRegressor


def data(n=14, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(2 * X[:, 0]) + X[:, -1] ** 2
    return X, y


CASES = [
    ("squared", 1, True),
    ("squared", 1, False),
    ("squared", 2, True),
    ("squared", 2, False),
    ("logistic", 1, True),
    ("logistic", 2, False),
    ("hinge", 1, True),
    ("softmax", 1, True),
]


def targets(loss, y):
    if loss in ("logistic", "hinge"):
        return np.where(y > np.median(y), "a", "b")
    if loss == "softmax":
        return np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    return y


@pytest.mark.parametrize("loss,p,bias", CASES)
def test_fast_path_agrees_with_cvxpy_reference(loss, p, bias):
    X, y = data()
    yy = targets(loss, y)
    ref = wn.solve(X, yy, loss=loss, p=p, bias=bias, lam=0.05, solver="cvxpy")
    fast = wn.solve(X, yy, loss=loss, p=p, bias=bias, lam=0.05, solver="workingset")
    assert fast.primal_objective == pytest.approx(ref.primal_objective, rel=1e-6)
    for r in (ref, fast):
        assert r.relative_gap <= 1e-6 and r.certified and r.scanned == "all"
        assert r.dual_objective <= r.primal_objective * (1 + 1e-12)
        assert r.exact == (p == 1)
        # the network's own objective (docs/conventions.md section 2) equals the convex objective
        obj = wn.network_objective(r.network, X, yy, loss=loss, lam=0.05, p=p)
        assert obj == pytest.approx(r.primal_objective, rel=1e-8)
        for nr in r.network.neurons:
            assert nr.residual < 1e-10 and nr.index_set is not None
    # the dual bound of one solution cannot exceed the other's primal
    assert ref.dual_objective <= fast.primal_objective * (1 + 1e-9)


def test_logistic_working_set_on_spirals_is_certified_without_fallback(monkeypatch):
    # Two spirals, n = 200: the restricted logistic programs are solved by proximal Newton;
    # warm starts there once threw the offset to ~1e290 (vanishing curvature).
    import wedgenet.solvers.conic as conic

    fallbacks = []
    real = conic.solve_cvxpy
    monkeypatch.setattr(conic, "solve_cvxpy", lambda *a, **k: fallbacks.append(1) or real(*a, **k))
    t = np.linspace(0.5, 3 * np.pi, 100)
    a = np.c_[t * np.cos(t), t * np.sin(t)] / 5
    X, y = np.r_[a, -a], np.r_[np.ones(100), -np.ones(100)]
    r = wn.solve(X, y, loss="logistic", lam=0.05, p=1, bias=True, solver="workingset")
    assert r.certified and r.relative_gap <= 1e-6
    assert np.isfinite(r.primal_objective)
    assert not fallbacks
    obj = wn.network_objective(r.network, X, y, loss="logistic", lam=0.05, p=1)
    assert obj == pytest.approx(r.primal_objective, rel=1e-8)


def test_vector_output_group_lasso():
    X, y = data(12)
    Y = np.column_stack([y, np.cos(X[:, 0])])
    ref = wn.solve(X, Y, lam=0.05, solver="cvxpy")
    fast = wn.solve(X, Y, lam=0.05)
    assert fast.primal_objective == pytest.approx(ref.primal_objective, rel=1e-6)
    assert fast.network.n_outputs == 2 and fast.certified


def test_theorem_1_breakpoints_at_samples():
    X = np.array([[-2.0], [-1.0], [0.0], [0.5], [2.0]])
    y = np.array([1.0, -1.0, 0.5, 2.0, 0.0])
    r = wn.solve(X, y, lam=0.01)
    for nr in r.network.neurons:
        j = nr.index_set.samples[0]
        # the neuron's kink is exactly at sample j
        assert -nr.bias / nr.weight[0] == pytest.approx(X[j, 0])
    # small lam interpolates
    assert np.max(np.abs(r.network.decision_function(X) - y)) < 0.1


def test_large_lambda_gives_constant_network():
    X, y = data()
    r = wn.solve(X, y, lam=1e6)
    assert len(r.network.neurons) == 0
    np.testing.assert_allclose(r.network.decision_function(X), y.mean())
    assert r.certified


def test_sampled_dictionary_is_not_certified():
    X, y = data(30, 3)
    r = wn.solve(X, y, lam=0.05, source="sample", n_columns=200)
    assert r.scanned == "sampled" and not r.certified and r.relative_gap <= 1e-6
    full = wn.solve(X, y, lam=0.05)
    assert full.primal_objective <= r.primal_objective * (1 + 1e-9)


def test_progress_callback_and_abort():
    X, y = data()
    seen = []
    wn.solve(X, y, lam=0.05, progress=lambda f, s: seen.append((f, s)))
    assert seen[0][0] == 0.0 and seen[-1] == (1.0, "done")
    assert all(0.0 <= f <= 1.0 for f, _ in seen)

    def stop(f, s):
        if f > 0:
            raise wn.SolveAborted("cancelled")

    with pytest.raises(wn.SolveAborted):
        wn.solve(X, y, lam=0.05, progress=stop)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(X=[[1.0, np.nan], [0.0, 1.0]], y=[1.0, 2.0]), "NaN"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0]], y=[1.0, 2.0, 3.0]), "different numbers of samples"),
        (dict(X=[1.0, 2.0], y=[1.0, 2.0]), "2-dimensional"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], y=[0, 1, 2], loss="logistic"), "exactly 2"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0]], y=[1.0, 2.0], lam=0.0), "lam must be"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0]], y=[1.0, 2.0], lam=-1.0), "lam must be"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0]], y=["x", "y"]), "numeric"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0]], y=[1.0, np.inf]), "NaN or infinite"),
        (dict(X=[[0.0, 0.0], [0.0, 0.0]], y=[1.0, 2.0], bias=False, p=2), "rank 0"),
        (dict(X=[[1.0, 0.0], [0.0, 1.0]], y=[1.0, 2.0], loss="huber"), "unknown loss"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match):
    X = kwargs.pop("X")
    y = kwargs.pop("y")
    kwargs.setdefault("lam", 0.1)
    with pytest.raises(WedgeNetError, match=match):
        wn.solve(X, y, **kwargs)


def test_dictionary_too_large():
    X, y = data(300, 3)
    with pytest.raises(DictionaryTooLarge, match="source='search'"):
        wn.solve(X, y, lam=0.1, source="exhaustive", max_columns=10_000)
    # the default (source='auto') searches instead, and never claims a certificate
    res = wn.solve(X, y, lam=0.1, max_columns=10_000, max_time=10)
    assert res.scanned == "searched" and not res.certified
    assert res.dual_objective <= res.primal_objective


def test_estimators():
    X, y = data(16)
    reg = WedgeNetRegressor(lam=0.01).fit(X, y)
    assert reg.certified_ and reg.score(X, y) > 0.9
    assert reg.predict(X).shape == (16,)
    labels = np.where(y > np.median(y), "hi", "lo")
    clf = WedgeNetClassifier(lam=0.01).fit(X, labels)
    assert set(clf.predict(X)) <= {"hi", "lo"} and clf.score(X, labels) == 1.0
    # scikit-learn's own errors (tests/wedgenet/test_estimator.py runs its estimator checks)
    with pytest.raises(ValueError, match="X has 5 features"):
        reg.predict(np.ones((3, 5)))
    with pytest.raises(NotFittedError):
        WedgeNetRegressor().predict(X)


def test_cli_solve_json_npz_and_plot(tmp_path, capsys):
    X, y = data(12)
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header="a,b,target", comments="")
    out = tmp_path / "net.npz"
    assert (
        cli_main(
            ["solve", str(csv), "--target", "target", "--lam", "0.05", "--json", "-o", str(out)]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["certified"] is True and result["network"]["n_neurons"] >= 1
    neuron = result["network"]["neurons"][0]
    assert {"weight", "bias", "output_weight", "index_set", "formula", "residual"} <= set(neuron)
    arrays = np.load(out)
    W1, b1, W2, b2 = arrays["W1"], arrays["b1"], arrays["W2"], arrays["b2"]
    pred = np.maximum(X @ W1 + b1, 0) @ W2 + b2
    np.testing.assert_allclose(
        pred[:, 0], wn.solve(X, y, lam=0.05).network.decision_function(X), rtol=1e-6, atol=1e-6
    )
    assert cli_main(["solve", str(csv), "--lam", "0.05"]) == 0
    assert "certified" in capsys.readouterr().out
    png = tmp_path / "p.png"
    assert cli_main(["plot", str(csv), "--lam", "0.05", "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert cli_main(["solve", str(tmp_path / "missing.csv")]) == 2


def test_an_uncertified_result_says_why_column_generation_stopped():
    """A solve cut short by max_time says so in its certificate_note (it used to say only
    the gap); a converged one does not."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    short = wn.solve(X, y, lam=1e-4, max_time=0.2)
    assert not short.certified
    assert short.certificate_note.startswith("gap ")
    assert short.certificate_note.endswith("; column generation stopped at max_time")
    done = wn.solve(X[:30], y[:30], lam=0.1)
    assert done.certified and done.certificate_note == ""
