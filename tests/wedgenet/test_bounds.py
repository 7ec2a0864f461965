"""Valid upper bounds on the pricing maximum over every neuron (wedgenet.bounds)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.optimize import minimize

from wedgenet.bounds import pricing_upper_bound, pricing_upper_bound_bruteforce
from wedgenet.dictionary import WedgeDictionary, features
from wedgenet.exceptions import WedgeNetError

FloatArray = np.ndarray


def _case(rng: np.random.Generator, bias: bool) -> tuple[FloatArray, FloatArray]:
    n = int(rng.integers(5, 31))
    d = int(rng.integers(1, 6))
    c = int(rng.integers(1, 4))
    X = rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0) + rng.uniform(-2.0, 2.0)
    V = rng.standard_normal((n, c))
    if bias:
        V -= V.mean(axis=0)
    return X, V


def _unit(W: FloatArray, p: int) -> FloatArray:
    return W / np.linalg.norm(W, ord=p, axis=-1, keepdims=True)


def _dictionary_max(X: FloatArray, V: FloatArray, p: int, bias: bool) -> float:
    atoms = WedgeDictionary(X, p=p, bias=bias).atoms()
    K = features(X, atoms.normals)
    return float(np.linalg.norm(K.T @ V, axis=1).max())


def _random_neurons_max(
    X: FloatArray, V: FloatArray, p: int, bias: bool, rng: np.random.Generator, m: int = 10_000
) -> float:
    n, d = X.shape
    W = _unit(rng.standard_normal((m, d)), p)
    U = X @ W.T  # (n, m)
    if bias:
        # around the data: through a random sample, shifted by a fraction of the spread
        anchor = U[rng.integers(0, n, m), np.arange(m)]
        spread = U.max(axis=0) - U.min(axis=0)
        U = U - anchor + rng.uniform(-0.3, 0.3, m) * spread
    return float(np.linalg.norm(np.maximum(U, 0.0).T @ V, axis=1).max())


def _local_max(
    X: FloatArray, V: FloatArray, p: int, bias: bool, rng: np.random.Generator, starts: int = 20
) -> float:
    n, d = X.shape

    def score(x: FloatArray) -> float:
        w = x[:d]
        nw = np.linalg.norm(w, ord=p)
        if nw == 0.0:
            return 0.0
        b = x[d] if bias else 0.0
        return float(np.linalg.norm(np.maximum(X @ (w / nw) + b, 0.0) @ V))

    best = 0.0
    for _ in range(starts):
        w0 = _unit(rng.standard_normal(d), p)
        x0 = np.append(w0, -X[rng.integers(n)] @ w0 + 0.1 * rng.standard_normal())
        res = minimize(lambda x: -score(x), x0, method="Nelder-Mead",
                       options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 1500})
        best = max(best, score(res.x), score(x0))
    return best


# ------------------------------------------------------------------------ 1. validity
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_bound_dominates_every_dictionary_column(p: int, bias: bool) -> None:
    rng = np.random.default_rng(10 * p + bias)
    for _ in range(15):
        X, V = _case(rng, bias)
        X = X[:20, :3]
        V = V[:20] - V[:20].mean(axis=0) if bias else V[:20]
        bound = pricing_upper_bound(X, V, p=p, bias=bias)
        assert math.isfinite(bound)
        assert bound >= _dictionary_max(X, V, p, bias) * (1.0 - 1e-12)


def test_bound_dominates_dictionary_on_tiny_cases() -> None:
    """Few samples make the bound tight often enough that a too-optimistic step (e.g. dropping
    the crossings of the p = 1 pair formula) shows up as a violation."""
    rng = np.random.default_rng(11)
    for _ in range(800):
        n, d = int(rng.integers(3, 9)), int(rng.integers(2, 4))
        p, bias = int(rng.integers(1, 3)), bool(rng.integers(0, 2))
        X = rng.standard_normal((n, d))
        V = rng.standard_normal((n, 1))
        if bias:
            V -= V.mean(axis=0)
        bound = pricing_upper_bound(X, V, p=p, bias=bias)
        assert bound >= _dictionary_max(X, V, p, bias) * (1.0 - 1e-12), (n, d, p, bias)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_bound_dominates_random_and_locally_optimal_neurons(p: int, bias: bool) -> None:
    rng = np.random.default_rng(100 + 10 * p + bias)
    for _ in range(4):
        X, V = _case(rng, bias)
        bound = pricing_upper_bound(X, V, p=p, bias=bias)
        assert bound >= _random_neurons_max(X, V, p, bias, rng) * (1.0 - 1e-12)
        assert bound >= _local_max(X, V, p, bias, rng, starts=10) * (1.0 - 1e-12)


def test_bound_holds_in_degenerate_geometry() -> None:
    """Duplicated samples, constant features, a single feature, sparse dual points."""
    rng = np.random.default_rng(7)
    X = np.repeat(rng.integers(-2, 3, size=(6, 3)).astype(float), 2, axis=0)
    X[:, 1] = 1.5
    for V in (rng.standard_normal((12, 2)), np.eye(12)[:, :2] - np.eye(12)[:, 2:4]):
        Vc = V - V.mean(axis=0)
        for p in (1, 2):
            for bias, W in ((True, Vc), (False, V)):
                bound = pricing_upper_bound(X, W, p=p, bias=bias)
                assert bound >= _dictionary_max(X, W, p, bias) * (1.0 - 1e-12)
                assert bound >= _random_neurons_max(X, W, p, bias, rng, 2000) * (1.0 - 1e-12)
    x1 = rng.standard_normal((9, 1))
    v = rng.standard_normal(9)
    v -= v.mean()
    # d = 1, biased: neurons relu(+-x + b); the bound must cover every threshold
    exact = max(abs(np.maximum(s * x1[:, 0] + b, 0.0) @ v)
                for s in (1.0, -1.0) for b in np.concatenate([-s * x1[:, 0], [1e3, -1e3]]))
    assert pricing_upper_bound(x1, v, p=1, bias=True) >= exact * (1.0 - 1e-12)


def test_zero_dual_point_gives_zero() -> None:
    X = np.random.default_rng(0).standard_normal((10, 3))
    for p in (1, 2):
        for bias in (True, False):
            assert pricing_upper_bound(X, np.zeros((10, 2)), p=p, bias=bias) == 0.0


# ------------------------------------------------------------ 2. fast == brute force
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_fast_matches_bruteforce(p: int, bias: bool) -> None:
    rng = np.random.default_rng(200 + 10 * p + bias)
    for _ in range(40):
        X, V = _case(rng, bias)
        if rng.random() < 0.3:  # ties in the sorted columns
            X = np.round(X)
        fast = pricing_upper_bound(X, V, p=p, bias=bias)
        brute = pricing_upper_bound_bruteforce(X, V, p=p, bias=bias)
        assert fast == pytest.approx(brute, rel=1e-10, abs=0.0)


# --------------------------------------------------------------- 3. not vacuous
def _residual_of_fit(X: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Centred residual of a least-squares fit on 8 random ReLU features + intercept."""
    n, d = X.shape
    y = (np.maximum(X @ rng.standard_normal(d) + 0.3, 0.0)
         - np.maximum(X @ rng.standard_normal(d) - 0.2, 0.0)
         + 0.1 * rng.standard_normal(n))
    A = np.c_[np.maximum(X @ rng.standard_normal((d, 8)) + rng.standard_normal(8), 0.0), np.ones(n)]
    V = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]
    return (V - V.mean())[:, None]


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_bound_is_within_a_sane_factor_of_the_true_maximum(p: int, bias: bool) -> None:
    """Measured typical factor 1.4-5 (d = 2..4, n = 25..40, residual dual points), worst ~10."""
    rng = np.random.default_rng(300 + 10 * p + bias)
    ratios = []
    for t in range(12):
        d = 2 + t % 3
        X = rng.standard_normal((30, d))
        V = _residual_of_fit(X, rng)
        true_max = _dictionary_max(X, V, p, bias)
        bound = pricing_upper_bound(X, V, p=p, bias=bias)
        assert math.isfinite(bound)
        ratios.append(bound / true_max)
    assert min(ratios) >= 1.0 - 1e-12
    assert max(ratios) <= 100.0
    assert float(np.median(ratios)) <= 10.0


def test_bound_is_exact_without_negative_weights() -> None:
    """Bias-free, p = 1, v >= 0: no relaxation happens (g = f, convex), the maximum over the
    l1 ball is at a vertex +-e_j and the bound is attained (up to the rounding allowance)."""
    rng = np.random.default_rng(4)
    for d in (1, 3, 6):
        X = rng.standard_normal((20, d))
        v = np.abs(rng.standard_normal(20))
        truth = max(float(np.maximum(s * X[:, j], 0.0) @ v) for j in range(d) for s in (1.0, -1.0))
        assert pricing_upper_bound(X, v, p=1, bias=False) == pytest.approx(truth, rel=1e-12)
        assert truth <= _dictionary_max(X, v[:, None], 1, False) * (1.0 + 1e-12)


# ------------------------------------------------------------------ 4. uncentred V
def test_uncentred_dual_point_with_bias_is_infinite() -> None:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20, 3))
    V = rng.standard_normal((20, 2))
    V[:, 0] -= V[:, 0].mean()  # one centred column is not enough
    for p in (1, 2):
        assert pricing_upper_bound(X, V, p=p, bias=True) == math.inf
        assert pricing_upper_bound_bruteforce(X, V, p=p, bias=True) == math.inf
        assert math.isfinite(pricing_upper_bound(X, V, p=p, bias=False))
    V -= V.mean(axis=0)
    assert math.isfinite(pricing_upper_bound(X, V, p=1, bias=True))
    V[0, 1] += 1e-6
    assert pricing_upper_bound(X, V, p=1, bias=True) == math.inf


# -------------------------------------------------------------- 5. exact relations
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_homogeneity_and_invariances(p: int, bias: bool) -> None:
    """``B(aX, V) = |a| B(X, V)``, ``B(X, aV) = |a| B(X, V)`` (``relu`` is positively
    homogeneous and the norm ball symmetric; the bound inherits both term by term);
    with biases, translations ``X + 1 t^T`` change nothing; permuting samples, permuting
    features and flipping feature signs change nothing."""
    rng = np.random.default_rng(400 + 10 * p + bias)
    X = rng.standard_normal((25, 4))
    V = rng.standard_normal((25, 2))
    if bias:
        V -= V.mean(axis=0)
    base = pricing_upper_bound(X, V, p=p, bias=bias)
    def bound(X: FloatArray, V: FloatArray) -> float:
        return pricing_upper_bound(X, V, p=p, bias=bias)

    for a in (3.0, 0.25, -2.0):
        assert bound(a * X, V) == pytest.approx(abs(a) * base, rel=1e-12)
        assert bound(X, a * V) == pytest.approx(abs(a) * base, rel=1e-12)
    perm = rng.permutation(25)
    assert bound(X[perm], V[perm]) == pytest.approx(base, rel=1e-12)
    fperm = rng.permutation(4)
    flip = np.array([1.0, -1.0, -1.0, 1.0])
    assert bound(X[:, fperm] * flip, V) == pytest.approx(base, rel=1e-12)
    if bias:
        assert bound(X + rng.standard_normal(4) * 10.0, V) == pytest.approx(base, rel=1e-10)


def test_p2_is_at_most_sqrt_d_times_p1() -> None:
    """``||w||_2 = 1`` implies ``||w||_1 <= sqrt(d)``: the p = 2 bound is never above sqrt(d)
    times the p = 1 bound (it is usually much smaller)."""
    rng = np.random.default_rng(6)
    for bias in (True, False):
        for d in (1, 3, 8):
            X = rng.standard_normal((40, d))
            V = rng.standard_normal((40, 2))
            V -= V.mean(axis=0)
            b1 = pricing_upper_bound(X, V, p=1, bias=bias)
            b2 = pricing_upper_bound(X, V, p=2, bias=bias)
            assert b2 <= math.sqrt(d) * b1 * (1.0 + 1e-12)


# -------------------------------------------------------------------- input checks
def test_rejects_malformed_input() -> None:
    X = np.zeros((5, 2))
    with pytest.raises(WedgeNetError):
        pricing_upper_bound(X, np.zeros((4, 1)), p=1, bias=False)
    with pytest.raises(WedgeNetError):
        pricing_upper_bound(X, np.zeros((5, 1)), p=3, bias=False)
    with pytest.raises(WedgeNetError):
        pricing_upper_bound(np.zeros(5), np.zeros((5, 1)), p=1, bias=False)
    with pytest.raises(WedgeNetError):
        pricing_upper_bound(X + np.nan, np.zeros((5, 1)), p=1, bias=False)


def test_one_dimensional_dual_point_is_one_output() -> None:
    rng = np.random.default_rng(8)
    X = rng.standard_normal((15, 3))
    v = rng.standard_normal(15)
    v -= v.mean()
    flat = pricing_upper_bound(X, v, p=2, bias=True)
    assert flat == pricing_upper_bound(X, v[:, None], p=2, bias=True)


# ---------------------------------------------------------------------------- speed
def test_speed_large_problem() -> None:
    """n = 1347, d = 64, c = 10 runs in well under a second (measured ~0.1 s)."""
    rng = np.random.default_rng(9)
    X = rng.standard_normal((1347, 64))
    V = rng.standard_normal((1347, 10))
    V -= V.mean(axis=0)
    pricing_upper_bound(X[:50], V[:50], p=1, bias=True)  # compile / load the cache
    start = time.perf_counter()
    for p in (1, 2):
        assert math.isfinite(pricing_upper_bound(X, V, p=p, bias=True))
    assert time.perf_counter() - start < 4.0
