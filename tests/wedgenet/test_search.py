"""Pricing by search (wedgenet.search) and ``source="search"`` / ``"auto"`` in solve."""

from __future__ import annotations

import numpy as np
import pytest

import wedgenet as wn
from wedgenet.dictionary import WedgeDictionary, features
from wedgenet.losses import get_loss
from wedgenet.search import HyperplaneSearch
from wedgenet.solvers.conic import solve_cvxpy

CASES = [(1, True, 3), (1, False, 3), (2, True, 3), (2, False, 4), (1, True, 5), (2, True, 2)]


def _scores_by_subset(D: WedgeDictionary, V: np.ndarray) -> dict[tuple[int, ...], float]:
    """Brute force: the best score of each index set (over both orientations)."""
    atoms = D.atoms()
    sc = np.linalg.norm(features(D.X, atoms.normals).T @ V, axis=1)
    best: dict[tuple[int, ...], float] = {}
    for sub, s in zip(atoms.subsets.tolist(), sc, strict=True):
        best[tuple(sub)] = max(best.get(tuple(sub), -1.0), float(s))
    return best


@pytest.mark.parametrize("p,bias,d", CASES)
def test_pencil_scan_equals_brute_force(p: int, bias: bool, d: int) -> None:
    """The best column of each pencil S - {j} + {i} equals the brute-force maximum over the
    exhaustive dictionary's columns through S - {j}, on badly scaled features."""
    rng = np.random.default_rng(d + 10 * p + bias)
    n = 14
    X = rng.standard_normal((n, d)) * rng.uniform(0.01, 100.0, d)
    V = rng.standard_normal((n, 2))
    V -= V.mean(axis=0)
    D = WedgeDictionary(X, p=p, bias=bias)
    search = HyperplaneSearch(D)
    best = _scores_by_subset(D, V)
    checked = 0
    for _ in range(6):
        s = np.sort(rng.choice(n, D.subset_size_, replace=False))
        fr = search._frame(s)
        if fr is None:
            continue
        bs, bg, _ = search._scan(fr, V, np.arange(D.subset_size_))
        for j in range(D.subset_size_):
            rest = [int(x) for x in s if x != s[j]]
            ref = max(
                best.get(tuple(sorted([*rest, i])), -1.0)
                for i in range(D.generators_.shape[0])
                if i not in rest
            )
            assert bs[j] == pytest.approx(ref, rel=1e-10), (s, j)
            assert bg[j] not in rest
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("p,bias,d", CASES)
def test_search_finds_the_exhaustive_maximum_on_small_problems(p: int, bias: bool, d: int):
    rng = np.random.default_rng(7 * d + p)
    n = 16
    X = rng.standard_normal((n, d))
    V = rng.standard_normal((n, 1))
    V -= V.mean()
    D = WedgeDictionary(X, p=p, bias=bias)
    exact = wn.pricing.price(wn.pricing.DictionaryColumns(D), V, 5, 0.0)
    found = HyperplaneSearch(D, seed=1)(V, 5, 0.0)
    assert found.max_score == pytest.approx(exact.max_score, rel=1e-10)
    # every returned atom is an exact dictionary column with its exact score
    cols = features(X, found.top_atoms.normals)
    np.testing.assert_allclose(np.abs(cols.T @ V)[:, 0], found.top_scores, rtol=1e-10)
    keep, normals = D.hyperplanes(found.top_atoms.subsets, dedupe=False)
    assert keep.size == len(found.top_atoms)
    np.testing.assert_allclose(
        np.abs(normals), np.abs(found.top_atoms.normals), rtol=1e-9, atol=1e-12
    )


def test_search_respects_its_deadline() -> None:
    import time

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 12))
    V = rng.standard_normal((400, 1))
    V -= V.mean()
    D = WedgeDictionary(X, p=1, bias=True, source="sample", n_hyperplanes=10)
    search = HyperplaneSearch(D, n_restarts=1000, n_random=1000, time_budget=60.0,
                              deadline=time.perf_counter() + 0.5)
    t = time.perf_counter()
    res = search(V, 10, 0.0)
    assert time.perf_counter() - t < 5.0
    assert len(res.top_atoms) > 0


@pytest.mark.parametrize("loss,p", [("squared", 1), ("logistic", 1), ("squared", 2)])
def test_searched_solve_is_honest_against_the_exact_optimum(loss: str, p: int) -> None:
    """On a problem small enough to enumerate, the searched solve is never certified, its
    (valid) lower bound is below the exact optimum (cvxpy over the whole dictionary), and
    its objective is above it and close to it."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((24, 3))
    y = np.sin(X @ np.array([1.0, -2.0, 0.5])) + 0.1 * rng.standard_normal(24)
    if loss == "logistic":
        y = (y > 0).astype(int)
    lam = 0.05
    res = wn.solve(X, y, loss=loss, p=p, lam=lam, source="search", max_time=20)
    assert res.scanned == "searched" and not res.certified
    assert "searched" in res.certificate_note
    assert res.gap_estimate is not None and res.gap_estimate >= 0
    D = WedgeDictionary(X, p=p, bias=True)
    K = features(X, D.atoms().normals)
    lo = get_loss(loss)
    Y, _ = lo.encode(y)
    ref = solve_cvxpy(K, Y, lo, lam)
    assert res.dual_objective <= ref.primal * (1 + 1e-6)
    assert res.primal_objective >= ref.dual * (1 - 1e-6)
    assert res.primal_objective <= ref.primal * 1.05  # the search gets close
    # every neuron is a closed form over its index set
    assert res.network.neurons and all(nr.index_set is not None for nr in res.network.neurons)


def test_auto_source_enumerates_small_and_searches_large() -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((12, 2))
    y = X[:, 0] ** 2
    small = wn.solve(X, y, lam=0.1)
    assert small.scanned == "all" and small.certified
    Xb = rng.standard_normal((120, 12))
    yb = np.maximum(Xb @ rng.standard_normal(12), 0.0)
    big = wn.solve(Xb, yb, lam=1.0, max_time=8)
    assert big.scanned == "searched" and not big.certified
    assert big.params["source"] == "search"
    assert 0 < big.dual_objective <= big.primal_objective
    null = 0.5 * float(np.sum((yb - yb.mean()) ** 2))
    assert big.primal_objective < 0.5 * null  # a real fit, not the zero network


def test_max_time_bounds_a_searched_solve() -> None:
    import time

    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 10))
    y = np.maximum(X @ rng.standard_normal((10, 3)), 0.0) @ rng.standard_normal(3)
    t = time.perf_counter()
    res = wn.solve(X, y, lam=0.5, p=2, max_time=4)
    assert time.perf_counter() - t < 4 + 10  # one restricted solve and one round of overrun
    assert not res.certified and res.dual_objective <= res.primal_objective


def test_real_table_breast_cancer_standardized() -> None:
    """The reported failure: standardized breast_cancer (d = 30) used to raise 'the
    dictionary is empty'. Now it fits, every neuron with its index set, and classifies."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from wedgenet.estimator import WedgeNetClassifier

    data = load_breast_cancer()
    X = StandardScaler().fit_transform(data.data)
    rng = np.random.default_rng(0)
    idx = rng.permutation(X.shape[0])
    tr, te = idx[:300], idx[300:]
    clf = WedgeNetClassifier(lam=1.0, p=2, max_time=10).fit(X[tr], data.target[tr])
    assert clf.result_.scanned == "searched"
    assert clf.score(X[te], data.target[te]) > 0.93
    for nr in clf.network_.neurons:
        assert nr.index_set is not None and len(nr.index_set.samples) == 30


def test_search_with_more_features_than_samples() -> None:
    # p = 1, biased: index sets need d generators but there are only n < d samples, so
    # random starts take every sample and random basis directions (this raised before)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 30))
    y = X[:, 0] - np.abs(X[:, 1])
    res = wn.solve(X, y, lam=0.1, source="search", max_time=5, seed=1)
    assert res.scanned == "searched" and not res.certified
    assert res.network.neurons and all(nr.index_set is not None for nr in res.network.neurons)
    obj = wn.network_objective(res.network, X, y, lam=0.1, p=1)
    assert obj == pytest.approx(res.primal_objective, rel=1e-8)


@pytest.mark.parametrize(("p", "bias"), [(2, True), (1, True), (1, False)])
def test_snap_gives_valid_columns_near_each_neuron_for_every_spread(p: int, bias: bool) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 4)) * np.array([1.0, 10.0, 0.1, 1.0])  # badly scaled features
    D = WedgeDictionary(X, p=p, bias=bias, source="sample", n_hyperplanes=10)
    search = HyperplaneSearch(D)
    W = rng.normal(size=(4, 6))
    b = rng.normal(size=6) if bias else np.zeros(6)
    normals = np.concatenate([W.T, b[:, None]], axis=1)
    nearest = search.snap(normals, spreads=(1e-8,))
    both = search.snap(normals)
    assert 0 < len(nearest) <= 6 and len(nearest) <= len(both) <= 12
    keys = {tuple(s) for s in both.subsets}
    assert all(tuple(s) in keys for s in nearest.subsets)
    for subset, normal in zip(both.subsets, both.normals, strict=True):
        # a dictionary column: the hyperplane passes through its index set
        assert D.residual(subset, normal) < 1e-9
        assert abs(np.linalg.norm(normal[:-1], ord=p) - 1.0) < 1e-12
