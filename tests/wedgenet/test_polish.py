"""Polishing (paper Sec. 4.1, docs/conventions.md section 5) and weight conversion
(wedgenet.layers)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wedgenet import IndexSet, WedgeDictionary, WedgeNetError, network_objective
from wedgenet.geometry import cross
from wedgenet.layers import (
    as_layers,
    check_layers,
    forward,
    layers_from_arrays,
    layers_from_list,
    layers_from_state_dict,
    layers_to_state_dict,
)
from wedgenet.losses import get_loss
from wedgenet.polish import mlp_objective, polish, polish_layer
from wedgenet.programs import primal_value


# --------------------------------------------------------------------------- helpers
def _data(n: int = 80, d: int = 3, seed: int = 0, classify: bool = False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    f = np.sin(1.5 * X[:, 0]) + 0.5 * X[:, -1] ** 2 - 0.3 * X[:, 1 % d]
    if classify:
        return X, np.where(f > np.median(f), 1, 0)
    return X, f + 0.05 * rng.normal(size=n)


def _net(d: int, m: int, seed: int, c: int = 1, scale: float = 1.0):
    """An imperfectly 'trained' network: a few least-squares-ish random features."""
    rng = np.random.default_rng(100 + seed)
    W1 = rng.normal(size=(d, m)) * scale
    b1 = rng.normal(size=m) * 0.5 * scale
    W2 = rng.normal(size=(m, c)) * 0.4 / scale
    b2 = rng.normal(size=c) * 0.1
    return [(W1, b1), (W2, b2)]


def _lifted(X: np.ndarray, bias: bool = True) -> np.ndarray:
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1) if bias else X


def _residual(X: np.ndarray, rows, h: np.ndarray, bias: bool = True) -> float:
    G = _lifted(X, bias)[np.asarray(rows)]
    hh = h if bias else h[:-1]
    return float(np.max(np.abs(G @ hh) / (np.linalg.norm(G, axis=1) * np.linalg.norm(hh))))


# --------------------------------------------------------------------------- polish_layer
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_polished_neurons_are_orthogonal_to_their_index_sets(p: int, bias: bool) -> None:
    X, _ = _data(n=120, d=6, seed=1)
    W, b = _net(6, 40, seed=1)[0]
    lp = polish_layer(X, W, b if bias else None, p=p, bias=bias)
    assert lp.ok.all()
    k = X.shape[1] if bias else X.shape[1] - 1  # r - 1 samples per neuron
    assert lp.samples.shape == (40, k)
    for j in range(40):
        rows = lp.samples[j]
        assert len(set(rows.tolist())) == k
        assert np.all(np.diff(rows) > 0)  # canonical (ascending) order
        assert _residual(X, rows, lp.normals[j], bias) < 1e-10
        assert lp.residual[j] < 1e-10
        # unit p-norm weight part
        assert np.linalg.norm(lp.normals[j, :-1], ord=p) == pytest.approx(1.0, rel=1e-12)
        if not bias:
            assert lp.normals[j, -1] == 0.0


@pytest.mark.parametrize("p", [1, 2])
def test_polished_neurons_match_the_given_wedge_dictionary(p: int) -> None:
    """Index sets (with their signs) rebuild exactly the polished neurons."""
    X, _ = _data(n=90, d=4, seed=2)
    W, b = _net(4, 25, seed=2)[0]
    lp = polish_layer(X, W, b, p=p)
    sets = [lp.index_set(j) for j in range(25)]
    assert all(isinstance(s, IndexSet) for s in sets)
    assert {s.sign for s in sets} == {1, -1}  # both orientations occur
    atoms = WedgeDictionary(X, p=p, bias=True, source="given", index_sets=sets).atoms()
    assert len(atoms) == 25
    np.testing.assert_allclose(atoms.normals, lp.normals, atol=1e-10)
    # and the sign is the orientation relative to geometry.cross of the sorted generators
    G = _lifted(X)
    for j in range(5):
        h = cross(G[list(sets[j].samples)])
        assert np.sign(h @ lp.normals[j]) == sets[j].sign


@pytest.mark.parametrize("criterion", ["residual", "distance"])
def test_the_closest_samples_are_chosen(criterion: str) -> None:
    X, _ = _data(n=200, d=4, seed=20)
    W, b = _net(4, 30, seed=20)[0]
    lp = polish_layer(X, W, b, p=2, criterion=criterion)
    G = _lifted(X)
    S = np.abs(G @ np.concatenate([W, b[None, :]], axis=0))  # (n, m)
    if criterion == "residual":
        S /= np.linalg.norm(G, axis=1)[:, None]
    assert lp.n_fallback == 0
    for j in range(30):
        expected = np.sort(np.argsort(S[:, j], kind="stable")[:4])
        np.testing.assert_array_equal(lp.samples[j], expected)


def test_polished_sign_is_aligned_with_the_original_neuron() -> None:
    X, _ = _data(n=100, d=3, seed=3)
    W, b = _net(3, 30, seed=3)[0]
    for s in (1.0, -1.0):
        lp = polish_layer(X, s * W, s * b, p=2)
        h_orig = np.concatenate([s * W.T, s * b[:, None]], axis=1)
        assert np.all(np.einsum("ij,ij->i", h_orig, lp.normals) > 0)
        assert np.all(lp.angle_deg < 90.0)
    # flipping the neuron flips the polished neuron (and its orientation), same samples
    lp_p = polish_layer(X, W, b, p=2)
    lp_m = polish_layer(X, -W, -b, p=2)
    np.testing.assert_array_equal(lp_p.samples, lp_m.samples)
    np.testing.assert_allclose(lp_p.normals, -lp_m.normals, atol=1e-12)
    np.testing.assert_array_equal(lp_p.signs, -lp_m.signs)


def test_a_polished_neuron_is_a_fixed_point() -> None:
    X, _ = _data(n=60, d=3, seed=4)
    G = _lifted(X)
    rows = [5, 17, 40]
    h = cross(G[rows])
    lp = polish_layer(X, h[:3, None] * 2.5, np.array([h[3] * 2.5]), p=1)
    assert sorted(lp.samples[0].tolist()) == rows
    assert lp.angle_deg[0] < 1e-6
    np.testing.assert_allclose(lp.normals[0], h / np.linalg.norm(h[:3], 1), atol=1e-12)


def test_dependent_closest_samples_are_replaced_by_the_next_closest() -> None:
    """Integer grid data with duplicates: the closest samples are often collinear."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 4, size=(150, 3)).astype(float)
    X = np.concatenate([X, X[:40]])  # exact duplicates
    W, b = _net(3, 60, seed=5)[0]
    lp = polish_layer(X, W, b, p=1)
    assert lp.ok.all()
    assert lp.n_fallback > 0
    G = _lifted(X)
    for j in range(60):
        Gs = G[lp.samples[j]]
        assert np.linalg.matrix_rank(Gs) == 3  # r - 1 independent samples
        assert _residual(X, lp.samples[j], lp.normals[j]) < 1e-10


def test_rank_deficient_inputs_are_polished_in_their_span() -> None:
    rng = np.random.default_rng(6)
    Z = rng.normal(size=(70, 2))
    X = np.concatenate([Z, Z @ np.array([[1.0], [-2.0]]), Z[:, :1] * 0.5], axis=1)  # rank 2 in R^4
    W, b = _net(4, 12, seed=6)[0]
    lp = polish_layer(X, W, b, p=2)
    assert lp.dim == 3 and lp.samples.shape == (12, 2)
    for j in range(12):
        assert _residual(X, lp.samples[j], lp.normals[j]) < 1e-10
    # the same neurons as the wedge dictionary builds from the index sets
    sets = [lp.index_set(j) for j in range(12)]
    atoms = WedgeDictionary(X, p=2, source="given", index_sets=sets).atoms()
    np.testing.assert_allclose(atoms.normals, lp.normals, atol=1e-9)


# --------------------------------------------------------------------------- never worse
def test_the_trained_network_is_a_feasible_point_of_the_union_refit() -> None:
    """z_j = ||w_j||_p a_j, t = c reproduces the network; its program value <= P(theta)."""
    X, y = _data(n=70, d=3, seed=7)
    loss = get_loss("squared")
    Y = y[:, None]
    layers = _net(3, 10, seed=7)
    (W1, b1), (W2, b2) = layers
    lam = 0.3
    for p in (1, 2):
        wn = np.linalg.norm(W1, ord=p, axis=0)
        K = np.maximum(X @ (W1 / wn) + b1 / wn, 0.0)  # the original unit neurons
        z = wn[:, None] * W2
        U = K @ z + b2
        np.testing.assert_allclose(U, forward(layers, X)[1], atol=1e-12)
        program = primal_value(loss, U, Y, z, lam)
        P = mlp_objective(layers, X, y, lam=lam, p=p)
        assert program <= P + 1e-12
        # an unbalanced network (same function) has a larger P, the same program value
        unbalanced = [(3.0 * W1, 3.0 * b1), (W2 / 3.0, b2)]
        P_unb = mlp_objective(unbalanced, X, y, lam=lam, p=p)
        assert P_unb > P
        res = polish(X, y, unbalanced, lam=lam, p=p)
        assert res.objective_before == pytest.approx(P_unb, rel=1e-12)
        assert res.objective_rebalanced == pytest.approx(program, rel=1e-10)
        assert res.objective_after <= res.objective_rebalanced
        # balanced input: rebalancing changes nothing
        wn_sqrt = np.sqrt(wn * np.linalg.norm(W2, axis=1))
        bal = [(W1 / wn * wn_sqrt, b1 / wn * wn_sqrt), (W2 / wn_sqrt[:, None] * wn[:, None], b2)]
        np.testing.assert_allclose(forward(bal, X)[1], U, atol=1e-12)
        assert mlp_objective(bal, X, y, lam=lam, p=p) == pytest.approx(program, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("width", [4, 24])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_union_refit_is_never_worse(seed: int, width: int, p: int, loss: str) -> None:
    X, y = _data(n=60, d=3, seed=seed, classify=loss == "logistic")
    layers = _net(3, width, seed=seed + width)
    lam = 0.2 if loss == "squared" else 0.05
    res = polish(X, y, layers, loss=loss, lam=lam, p=p)
    before = mlp_objective(layers, X, y, loss=loss, lam=lam, p=p)
    assert res.objective_before == pytest.approx(before, rel=1e-12)
    assert res.objective_rebalanced <= before * (1 + 1e-12)
    assert res.objective_after <= res.objective_rebalanced
    # the reported objective is the returned network's
    assert network_objective(res.network, X, y, loss=loss, lam=lam, p=p) == pytest.approx(
        res.objective_after, rel=1e-9
    )
    assert mlp_objective(res.layers, X, y, loss=loss, lam=lam, p=p) == pytest.approx(
        res.objective_after, rel=1e-12
    )
    assert res.refit_gap < 1e-5
    for r in res.neurons:
        if r.kind == "polished":
            assert r.residual is not None and r.residual < 1e-10


def test_well_trained_network_survives_the_union_refit() -> None:
    """A network that is already the refit optimum keeps its objective (nothing to gain)."""
    X, y = _data(n=50, d=2, seed=8)
    first = polish(X, y, _net(2, 8, seed=8), lam=0.5, p=2, refit="original")
    again = polish(X, y, first.layers, lam=0.5, p=2, refit="union")
    assert again.objective_after <= first.objective_after * (1 + 1e-12)
    assert again.objective_before == pytest.approx(first.objective_after, rel=1e-12)


def test_huge_lam_leaves_the_constant_network() -> None:
    X, y = _data(n=40, d=2, seed=21)
    res = polish(X, y, _net(2, 6, seed=21), lam=1e6, p=2)
    assert len(res.network.neurons) == 0
    assert [W.shape for W, _ in res.layers] == [(2, 0), (0, 1)]
    np.testing.assert_allclose(forward(res.layers, X)[1][:, 0], y.mean())
    assert res.objective_after == pytest.approx(0.5 * np.sum((y - y.mean()) ** 2))
    assert res.objective_after <= res.objective_before
    json.dumps(res.to_dict(), allow_nan=False)


def test_polished_only_refit_is_fully_interpretable_and_reports_its_price() -> None:
    X, y = _data(n=80, d=3, seed=9)
    layers = _net(3, 16, seed=9)
    res = polish(X, y, layers, lam=0.2, p=1, refit="polished")
    assert res.price == pytest.approx(res.objective_after - res.objective_before)
    assert res.network is not None and len(res.network.neurons) > 0
    for nr in res.network.neurons:
        assert nr.index_set is not None and nr.extra["kind"] == "polished"
        assert nr.formula.startswith("Vol")
        assert _residual(X, nr.index_set.samples, np.append(nr.weight, nr.bias)) < 1e-10
    assert all(r.kind == "polished" for r in res.neurons)
    d = res.to_dict()
    assert d["price"] == pytest.approx(res.price)


def test_report_contents_and_json() -> None:
    X, y = _data(n=100, d=3, seed=10)
    res = polish(X, y, _net(3, 12, seed=10), lam=0.2, p=2, validation_fraction=0.25, seed=3)
    assert res.validation_indices is not None and res.train_indices is not None
    assert len(res.validation_indices) == 25 and len(res.train_indices) == 75
    assert set(res.metrics) == {"train", "validation"}
    for split in ("train", "validation"):
        for when in ("before", "after"):
            assert {"loss", "mse"} <= set(res.metrics[split][when])
    assert res.objective_after <= res.objective_before
    train = set(res.train_indices.tolist())
    polished = [r for r in res.neurons if r.kind == "polished"]
    assert len(polished) == 12
    for r in polished:
        assert r.index_set is not None
        assert set(r.index_set.samples) <= train  # row indices into X, training rows only
        assert r.normal is not None
        assert _residual(X, r.index_set.samples, r.normal) < 1e-10  # rows of X as given
        assert r.formula.startswith("dist")
        assert 0.0 <= r.angle_deg <= 180.0
    assert any(r.kind == "original" for r in res.neurons)
    assert sum(r.survived for r in res.neurons) == len(res.network.neurons)
    text = json.dumps(res.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["objective_after"] == pytest.approx(res.objective_after)
    assert back["network"]["n_neurons"] == len(res.network.neurons)
    assert {"polish", "refit", "total"} <= set(back["timings"])


def test_explicit_validation_set_and_logistic_metrics() -> None:
    X, y = _data(n=90, d=3, seed=11, classify=True)
    labels = np.where(y == 1, "yes", "no")
    res = polish(X[:70], labels[:70], _net(3, 10, seed=11), loss="logistic", lam=0.05, p=2,
                 validation=(X[70:], labels[70:]))
    assert list(res.classes) == ["no", "yes"]
    for split in ("train", "validation"):
        for when in ("before", "after"):
            assert 0.0 <= res.metrics[split][when]["accuracy"] <= 1.0
    assert res.objective_after <= res.objective_before
    with pytest.raises(WedgeNetError, match="do not occur"):
        polish(X[:70], labels[:70], _net(3, 10, seed=11), loss="logistic", lam=0.05,
               validation=(X[70:], np.full(20, "maybe")))


def test_vector_output_union_refit() -> None:
    X, y = _data(n=60, d=3, seed=12)
    Y = np.stack([y, np.cos(X[:, 1])], axis=1)
    res = polish(X, Y, _net(3, 10, seed=12, c=2), lam=0.3, p=2)
    assert res.objective_after <= res.objective_rebalanced <= res.objective_before
    assert res.network.n_outputs == 2


def test_bias_free_network() -> None:
    X, y = _data(n=60, d=3, seed=13)
    (W1, _), (W2, b2) = _net(3, 10, seed=13)
    layers = [(W1, np.zeros(10)), (W2, b2)]
    res = polish(X, y, layers, lam=0.2, p=1, bias=False)
    assert res.objective_after <= res.objective_before
    assert all(nr.bias == 0.0 for nr in res.network.neurons)
    for r in res.neurons:
        if r.kind == "polished":
            assert len(r.index_set.samples) == 2  # r - 1 = d - 1 without bias
    with pytest.raises(WedgeNetError, match="nonzero biases"):
        polish(X, y, _net(3, 10, seed=13), lam=0.2, bias=False)


# --------------------------------------------------------------------------- deep nets
def _deep(d: int, widths: list[int], seed: int):
    rng = np.random.default_rng(seed)
    sizes = [d] + widths + [1]
    return [(rng.normal(size=(a, b)) / np.sqrt(a), rng.normal(size=b) * 0.2)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


@pytest.mark.parametrize("p", [1, 2])
def test_three_layer_network(p: int) -> None:
    X, y = _data(n=80, d=3, seed=14)
    layers = _deep(3, [10, 6], seed=14)
    lam = 0.2
    before = mlp_objective(layers, X, y, lam=lam, p=p)
    for refit in ("union", "original"):
        res = polish(X, y, layers, lam=lam, p=p, refit=refit)
        assert res.network is None and res.n_layers == 3
        assert res.objective_before == pytest.approx(before, rel=1e-12)
        assert res.objective_after <= res.objective_rebalanced <= before * (1 + 1e-12)
        assert mlp_objective(res.layers, X, y, lam=lam, p=p) == pytest.approx(
            res.objective_after, rel=1e-10)
        assert res.selected in ("refit", "input_rebalanced", "feasible_point")
    res = polish(X, y, layers, lam=lam, p=p, refit="polished")
    assert mlp_objective(res.layers, X, y, lam=lam, p=p) == pytest.approx(res.objective_after,
                                                                           rel=1e-10)
    # Layer 1 polished neurons pass through samples; layer 2 through activations of layer 1.
    l1 = [r for r in res.neurons if r.layer == 1]
    l2 = [r for r in res.neurons if r.layer == 2]
    assert len(l1) == 10 and len(l2) == 6
    P1 = np.array([r.normal for r in l1 if r.normal is not None])
    F1 = np.maximum(X @ P1[:, :-1].T + P1[:, -1], 0.0)
    for r in l1:
        assert _residual(X, r.index_set.samples, r.normal) < 1e-10
    for r in l2:
        if r.index_set is None:
            continue
        assert _residual(F1, r.index_set.samples, r.normal) < 1e-10
        assert "a1(x" in r.formula


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors() -> None:
    X, y = _data(n=40, d=3, seed=15)
    good = _net(3, 5, seed=15)
    (W1, b1), (W2, b2) = good
    with pytest.raises(WedgeNetError, match="do not chain"):
        polish(X, y, [(W1, b1), (np.ones((4, 1)), b2)], lam=0.1)
    with pytest.raises(WedgeNetError, match="input features but X has 4"):
        polish(np.c_[X, X[:, :1]], y, good, lam=0.1)
    bad = W1.copy()
    bad[0, 0] = np.nan
    with pytest.raises(WedgeNetError, match="NaN"):
        polish(X, y, [(bad, b1), (W2, b2)], lam=0.1)
    with pytest.raises(WedgeNetError, match="validation_fraction"):
        polish(X, y, good, lam=0.1, validation_fraction=1.5)
    with pytest.raises(WedgeNetError, match="validation_fraction"):
        polish(X, y, good, lam=0.1, validation_fraction=0.99)
    with pytest.raises(WedgeNetError, match="either"):
        polish(X, y, good, lam=0.1, validation_fraction=0.2, validation=(X, y))
    with pytest.raises(WedgeNetError, match="X_val"):
        polish(X, y, good, lam=0.1, validation=(X[:, :2], y))
    with pytest.raises(WedgeNetError, match="lam"):
        polish(X, y, good, lam=0.0)
    with pytest.raises(WedgeNetError, match="refit"):
        polish(X, y, good, lam=0.1, refit="both")  # type: ignore[arg-type]
    with pytest.raises(WedgeNetError, match="p must be"):
        polish(X, y, good, lam=0.1, p=3)
    with pytest.raises(WedgeNetError, match="outputs"):
        polish(X, np.c_[y, y], good, lam=0.1)
    with pytest.raises(WedgeNetError, match="different numbers of samples"):
        polish(X, y[:-1], good, lam=0.1)
    X_inf = X.copy()
    X_inf[3, 1] = np.inf
    with pytest.raises(WedgeNetError, match="NaN or infinite"):
        polish(X_inf, y, good, lam=0.1)
    with pytest.raises(WedgeNetError, match="at least two layers"):
        polish(X, y, [(np.ones((3, 1)), np.zeros(1))], lam=0.1)
    with pytest.raises(WedgeNetError, match="no bias"):
        polish(X, y, [(W1, None), (W2, b2)], lam=0.1)


# --------------------------------------------------------------------------- layers.py
def test_state_dict_of_a_sequential() -> None:
    rng = np.random.default_rng(16)
    sd = {
        "0.weight": rng.normal(size=(5, 3)), "0.bias": rng.normal(size=5),
        "2.weight": rng.normal(size=(4, 5)), "2.bias": rng.normal(size=4),
        "4.weight": rng.normal(size=(1, 4)).tolist(), "4.bias": [0.5],
    }
    layers = layers_from_state_dict(sd)
    assert [W.shape for W, _ in layers] == [(3, 5), (5, 4), (4, 1)]
    np.testing.assert_array_equal(layers[0][0], sd["0.weight"].T)
    np.testing.assert_array_equal(layers[2][1], [0.5])
    # round trip, nested prefixes, numbers >= 10 sort numerically
    back = layers_to_state_dict(layers)
    assert set(back) == set(sd)
    nested = {f"net.{k}": v for k, v in back.items()}
    nested["net.10.weight"] = nested.pop("net.4.weight")
    nested["net.10.bias"] = nested.pop("net.4.bias")
    again = as_layers(nested)
    for (A, a), (B, b) in zip(layers, again, strict=True):
        np.testing.assert_array_equal(A, B)
        np.testing.assert_array_equal(a, b)
    X = rng.normal(size=(7, 3))
    hidden, out = forward(layers, X)
    ref = np.maximum(X @ sd["0.weight"].T + sd["0.bias"], 0)
    np.testing.assert_allclose(hidden[0], ref)
    assert out.shape == (7, 1)


def test_named_layers_and_layer_names() -> None:
    rng = np.random.default_rng(17)
    sd = {"fc2.weight": rng.normal(size=(1, 4)), "fc2.bias": np.zeros(1),
          "fc1.weight": rng.normal(size=(4, 2)), "fc1.bias": np.zeros(4)}
    layers = layers_from_state_dict(sd)
    assert [W.shape for W, _ in layers] == [(2, 4), (4, 1)]
    amb = {"hidden.weight": sd["fc1.weight"], "hidden.bias": sd["fc1.bias"],
           "out.weight": sd["fc2.weight"], "out.bias": sd["fc2.bias"]}
    with pytest.raises(WedgeNetError, match="layer_names"):
        layers_from_state_dict(amb)
    by_list = layers_from_state_dict(amb, layer_names=["hidden", "out"])
    by_map = layers_from_state_dict(amb, layer_names={"out": 1, "hidden": 0})
    for got in (by_list, by_map):
        assert [W.shape for W, _ in got] == [(2, 4), (4, 1)]
    with pytest.raises(WedgeNetError, match="does not place"):
        layers_from_state_dict(amb, layer_names=["hidden"])
    with pytest.raises(WedgeNetError, match="no '<name>.weight'"):
        layers_from_state_dict(amb, layer_names=["hidden", "out", "extra"])
    # a polish run accepts the state dict directly
    X, y = _data(n=30, d=2, seed=17)
    res = polish(X, y, amb, lam=0.1, layer_names=["hidden", "out"])
    assert res.objective_after <= res.objective_before


def test_state_dict_errors() -> None:
    rng = np.random.default_rng(18)
    base = {"0.weight": rng.normal(size=(3, 2)), "0.bias": np.zeros(3),
            "2.weight": rng.normal(size=(1, 3)), "2.bias": np.zeros(1)}
    no_bias = {k: v for k, v in base.items() if k != "2.bias"}
    with pytest.raises(WedgeNetError, match="'2.bias' is missing"):
        layers_from_state_dict(no_bias)
    layers = layers_from_state_dict(no_bias, require_bias=False)
    np.testing.assert_array_equal(layers[1][1], [0.0])
    nan = dict(base)
    nan["2.weight"] = np.array([[1.0, np.nan, 0.0]])
    with pytest.raises(WedgeNetError, match=r"2\.weight contains 1 NaN"):
        layers_from_state_dict(nan)
    chain = dict(base)
    chain["2.weight"] = rng.normal(size=(1, 4))
    with pytest.raises(WedgeNetError, match="do not chain"):
        layers_from_state_dict(chain)
    bn = dict(base)
    bn["1.running_mean"] = np.zeros(3)
    with pytest.raises(WedgeNetError, match="unsupported parameter"):
        layers_from_state_dict(bn)
    wrong_bias = dict(base)
    wrong_bias["0.bias"] = np.zeros(2)
    with pytest.raises(WedgeNetError, match=r"0\.bias has shape"):
        layers_from_state_dict(wrong_bias)
    vec = dict(base)
    vec["0.weight"] = np.zeros(3)
    with pytest.raises(WedgeNetError, match="2-D"):
        layers_from_state_dict(vec)
    with pytest.raises(WedgeNetError, match="numeric"):
        layers_from_state_dict({**base, "0.weight": [["a", "b"]] * 3})
    with pytest.raises(WedgeNetError, match="empty"):
        layers_from_state_dict({})


def test_lists_and_own_arrays() -> None:
    rng = np.random.default_rng(19)
    W1, b1, W2, b2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 1)), [0.1]
    a = layers_from_list([(W1, b1), (W2, b2)])
    b = layers_from_list([(W1.T, b1), (W2.T, b2)], layout="out_in")
    c = as_layers({"W1": W1, "b1": b1, "W2": W2, "b2": b2})
    d = as_layers([{"W": W1, "b": b1}, {"W": W2, "b": b2}])
    for other in (b, c, d):
        for (A, x), (B, z) in zip(a, other, strict=True):
            np.testing.assert_array_equal(A, B)
            np.testing.assert_array_equal(x, z)
    with pytest.raises(WedgeNetError, match="no bias"):
        layers_from_list([(W1, None), (W2, b2)])
    assert layers_from_list([(W1, None), (W2, b2)], require_bias=False)[0][1].tolist() == [0.0] * 4
    with pytest.raises(WedgeNetError, match="b2 is missing"):
        layers_from_arrays({"W1": W1, "b1": b1, "W2": W2})
    with pytest.raises(WedgeNetError, match="do not chain"):
        layers_from_list([(W1, b1), (W1, b1)])
    with pytest.raises(WedgeNetError, match="inf"):
        layers_from_list([(W1, b1), (W2, [np.inf])])
    with pytest.raises(WedgeNetError, match="input features"):
        check_layers(a, n_features=5)
    two_out = layers_from_list([(W1, b1), (rng.normal(size=(4, 2)), [0.0, 0.0])])
    with pytest.raises(WedgeNetError, match="has 2 outputs but the targets need 1"):
        check_layers(two_out, n_outputs=1)
