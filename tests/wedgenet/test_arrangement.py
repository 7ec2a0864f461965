"""The exact hyperplane-arrangement program and its certified lower bound (p = 2).

* Pattern enumeration: every pattern found by brute-force sampling of a million random
  neurons is enumerated, and every enumerated pattern is strictly realizable (an LP finds a
  neuron with that pattern and a positive margin), on tiny random and degenerate sets
  (d = 1, 2, with and without bias). In general position the count equals the
  Cover/Zaslavsky number ``2 sum_{k<r} C(n-1, k)`` (also for d = 3, 4).
* The lower bound is below the wedge p = 2 value and below every non-convex network trained
  by L-BFGS-B (:func:`wedgenet.nonconvex.train_nonconvex`), and the program's own network has
  the reported value (evaluated independently). For d = 1 with bias the wedge program is exact
  (Thm 1): bound == wedge value.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from scipy.optimize import linprog

import wedgenet
from wedgenet.arrangement import (
    LABEL_CERTIFIED,
    LABEL_ESTIMATE,
    ArrangementBound,
    TooManyPatterns,
    activation_patterns,
    arrangement_lower_bound,
    l2_gap_report,
    lifted,
    max_regions,
)
from wedgenet.exceptions import WedgeNetError
from wedgenet.nonconvex import nonconvex_objective, train_nonconvex

LAM = 0.1


def _codes(P: np.ndarray) -> np.ndarray:
    """Patterns (R, n) as integers (n <= 62)."""
    return P.astype(np.int64) @ (np.int64(1) << np.arange(P.shape[1], dtype=np.int64))


def _brute_force(X: np.ndarray, bias: bool, n_draws: int = 1_000_000, seed: int = 1) -> set[int]:
    """Patterns of random neurons (Gaussian and heavy-tailed), off the hyperplanes."""
    Xl = lifted(X, bias)
    nonzero = np.linalg.norm(Xl, axis=1) > 0
    rng = np.random.default_rng(seed)
    found: set[int] = set()
    chunk = 250_000
    for _ in range(n_draws // chunk):
        U = rng.standard_normal((chunk, Xl.shape[1]))
        U[::2] *= np.exp(3.0 * rng.standard_normal((chunk // 2, Xl.shape[1])))
        S = U @ Xl.T
        scale = np.abs(S).max(axis=1, keepdims=True)
        ok = np.all(np.abs(S[:, nonzero]) > 1e-12 * scale, axis=1)
        found.update(np.unique(_codes(S[ok] > 0)).tolist())
    return found


def _margin(Xl: np.ndarray, pattern: np.ndarray) -> float:
    """Largest t with sign_i x_i.u >= t ||x_i|| for some ||u||_inf <= 1 (LP)."""
    nz = np.linalg.norm(Xl, axis=1) > 0
    s = np.where(pattern, 1.0, -1.0)[nz]
    G = Xl[nz] / np.linalg.norm(Xl[nz], axis=1, keepdims=True)
    D = Xl.shape[1]
    A = np.c_[-s[:, None] * G, np.ones(s.size)]
    res = linprog(np.r_[np.zeros(D), -1.0], A_ub=A, b_ub=np.zeros(s.size),
                  bounds=[(-1, 1)] * D + [(None, 1)], method="highs")
    return float(-res.fun)


def _datasets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "rand1": rng.standard_normal((7, 1)),
        "rand2": rng.standard_normal((9, 2)),
        "grid": np.array([[i, j] for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=float),
        "dup": np.array([[1, 0], [1, 0], [0, 1], [-1, -1], [2, 0], [-1, 0]], dtype=float),
        "xor": np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float),
        "zero": np.array([[0.0, 0.0], [1, 2], [2, 1], [-1, 1]]),
        "1d-zero-dup": np.array([[0.0], [1.0], [-2.0], [1.0]]),
    }


ENUM_CASES = [(name, bias) for name in _datasets() for bias in (True, False)]


@pytest.mark.parametrize("name,bias", ENUM_CASES, ids=[f"{n}-{b}" for n, b in ENUM_CASES])
def test_enumeration_matches_brute_force(name: str, bias: bool) -> None:
    X = _datasets()[name]
    P = activation_patterns(X, bias=bias)
    mine = set(_codes(P).tolist())
    assert len(mine) == P.shape[0]  # unique
    brute = _brute_force(X, bias)
    assert brute - mine == set(), f"missed patterns {sorted(brute - mine)}"
    assert mine - brute == set(), f"patterns not hit by sampling {sorted(mine - brute)}"
    Xl = lifted(X, bias)
    assert min(_margin(Xl, p) for p in P) > 1e-6  # every pattern is an open region


@pytest.mark.parametrize("n,d", [(9, 1), (12, 2), (10, 3), (9, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_region_count_in_general_position(n: int, d: int, bias: bool) -> None:
    X = np.random.default_rng(n * 10 + d).standard_normal((n, d))
    P = activation_patterns(X, bias=bias)
    assert P.shape[0] == max_regions(n, d + 1 if bias else d)
    Xl = lifted(X, bias)
    if d >= 3:  # a few random patterns are strictly realizable
        for p in P[:: max(1, P.shape[0] // 10)]:
            assert _margin(Xl, p) > 1e-8


def _tiny_sets() -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    rng = np.random.default_rng(0)
    Xg = rng.standard_normal((10, 3))
    yg = rng.standard_normal(10)
    X2 = rng.uniform(-1, 1, (9, 2))
    y2 = np.sin(3 * X2[:, 0]) + X2[:, 1] ** 2
    xor = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    return [
        ("gauss3", Xg, yg, "squared"),
        ("gauss3-logistic", Xg, (yg > 0).astype(int), "logistic"),
        ("uniform2", X2, y2, "squared"),
        ("xor", xor, np.array([1.0, -1.0, -1.0, 1.0]), "squared"),
    ]


BOUND_CASES = [(c, bias) for c in _tiny_sets() for bias in (True, False)]


def _wedge(X: np.ndarray, y: np.ndarray, loss: str, bias: bool) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return wedgenet.solve(X, y, p=2, bias=bias, lam=LAM, loss=loss,
                              solver="cvxpy").primal_objective


@pytest.mark.parametrize("case,bias", BOUND_CASES, ids=[f"{c[0]}-{b}" for c, b in BOUND_CASES])
def test_bound_below_wedge_and_nonconvex(case: tuple, bias: bool) -> None:
    name, X, y, loss = case
    b = arrangement_lower_bound(X, y, lam=LAM, bias=bias, loss=loss)
    assert b.exact and b.label == LABEL_CERTIFIED
    assert b.lower_bound is not None
    # certificate is tight and the value is the objective of the returned network
    assert b.lower_bound <= b.value + 1e-12
    assert b.relative_gap is not None and b.relative_gap < 1e-6
    assert b.network is not None
    independent = nonconvex_objective(b.network, X, y, loss=loss, lam=LAM, p=2)
    assert independent == pytest.approx(b.value, rel=1e-10, abs=1e-12)
    # below the wedge p = 2 value (an upper bound on the optimum)
    wedge = _wedge(X, y, loss, bias)
    assert b.lower_bound <= wedge * (1 + 1e-9)
    # below every non-convex network; and the best of them is close (correct regularizer)
    nc = train_nonconvex(X, y, loss=loss, p=2, bias=bias, lam=LAM, restarts=4,
                         width=3 * X.shape[0], max_iter=1500, seed=1)
    assert min(nc.objectives_per_restart) >= b.lower_bound * (1 - 1e-9)
    assert nc.objective <= b.value * 1.05
    # local refinement of the exact-program network cannot go below the bound either
    ref = train_nonconvex(X, y, loss=loss, p=2, bias=bias, lam=LAM, restarts=0,
                          init=b.network, init_jitter=1e-6, max_iter=500)
    assert ref.objective >= b.lower_bound * (1 - 1e-9)


def test_bias_is_not_penalized() -> None:
    """The lifted program penalizes ||u^w|| only: a network with large hidden biases (here a
    data set that needs them: targets relu(x - 2) far from the origin) is matched."""
    X = np.linspace(1.0, 4.0, 7)[:, None]
    y = np.maximum(X[:, 0] - 2.5, 0.0) * 3.0
    b = arrangement_lower_bound(X, y, lam=LAM, bias=True)
    nc = train_nonconvex(X, y, p=2, bias=True, lam=LAM, restarts=4, width=12, seed=0)
    assert nc.objective >= b.lower_bound * (1 - 1e-9)
    assert nc.objective == pytest.approx(b.value, rel=1e-4)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_one_dimensional_biased_wedge_is_exact(loss: str) -> None:
    """Thm 1: for d = 1 with bias the p = 2 wedge program is exact."""
    rng = np.random.default_rng(3)
    for n in (6, 9):
        x = np.sort(rng.uniform(-2, 2, n))[:, None]
        y = np.sin(2.0 * x[:, 0]) + 0.2 * rng.standard_normal(n)
        if loss == "logistic":
            y = (y > np.median(y)).astype(int)
        b = arrangement_lower_bound(x, y, lam=LAM, bias=True, loss=loss)
        wedge = _wedge(x, y, loss, True)
        assert b.lower_bound == pytest.approx(wedge, rel=1e-6)
        assert b.value == pytest.approx(wedge, rel=1e-6)


def test_sampled_mode_is_labelled_estimate() -> None:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((10, 2))
    y = rng.standard_normal(10)
    exact = arrangement_lower_bound(X, y, lam=LAM)
    est = arrangement_lower_bound(X, y, lam=LAM, mode="sampled", n_patterns=300, seed=2)
    assert not est.exact and est.label == LABEL_ESTIMATE and est.lower_bound is None
    assert est.relative_gap is None
    assert est.value >= exact.lower_bound * (1 - 1e-9)  # restricted program: upper bound
    assert est.n_patterns <= exact.n_patterns
    assert json.dumps(est.to_dict())


def test_no_offset_and_no_bias() -> None:
    rng = np.random.default_rng(11)
    X = rng.standard_normal((8, 2))
    y = rng.standard_normal(8) + 1.0
    b = arrangement_lower_bound(X, y, lam=LAM, bias=False, fit_offset=False)
    nc = train_nonconvex(X, y, p=2, bias=False, lam=LAM, restarts=3, width=16,
                         fit_offset=False, seed=0)
    assert nc.objective >= b.lower_bound * (1 - 1e-9)
    assert float(np.asarray(b.network.output_bias)[0]) == 0.0
    with_offset = arrangement_lower_bound(X, y, lam=LAM, bias=False)
    assert with_offset.value <= b.value + 1e-9


def test_gap_report() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3))
    y = rng.standard_normal(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = wedgenet.solve(X, y, p=2, bias=True, lam=LAM)
    rep = l2_gap_report(X, y, LAM, True, res)
    assert rep.certified and rep.label == LABEL_CERTIFIED
    assert rep.wedge_value == res.primal_objective
    assert rep.relative_gap is not None and rep.relative_gap > 0.05  # known p = 2 gap here
    assert rep.estimated_gap == pytest.approx(rep.relative_gap, abs=1e-6)
    assert isinstance(rep.bound, ArrangementBound)
    assert json.loads(json.dumps(rep.to_dict()))["label"] == LABEL_CERTIFIED
    rep2 = l2_gap_report(X, y, LAM, True, float(res.primal_objective), mode="sampled",
                         n_patterns=500)
    assert rep2.relative_gap is None and not rep2.certified


def test_errors() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = rng.standard_normal(60)
    with pytest.raises(TooManyPatterns, match="mode='sampled'"):
        arrangement_lower_bound(X, y, lam=LAM)
    assert issubclass(TooManyPatterns, WedgeNetError)
    bad = [
        dict(X=X[:5], y=y[:5], lam=0.0),
        dict(X=X[:5], y=y[:5], lam=float("nan")),
        dict(X=X[:5], y=y[:5], lam=LAM, mode="grid"),
        dict(X=X[:5], y=y[:5], lam=LAM, loss="softmax"),
        dict(X=X[:5], y=y[:4], lam=LAM),
        dict(X=X[:5, 0], y=y[:5], lam=LAM),
        dict(X=np.full((3, 2), np.nan), y=y[:3], lam=LAM),
        dict(X=X[:5], y=np.ones((5, 2)), lam=LAM),
        dict(X=X[:5], y=np.array(list("abcde")), lam=LAM),
        dict(X=X[:5], y=np.zeros(5, dtype=int), lam=LAM, loss="logistic"),
        dict(X=X[:5], y=y[:5], lam=LAM, mode="sampled", n_patterns=0),
    ]
    for kw in bad:
        with pytest.raises(WedgeNetError):
            arrangement_lower_bound(**kw)


def test_degenerate_data() -> None:
    """One sample, identical samples (only the all-ones pattern), zero targets."""
    one = arrangement_lower_bound(np.array([[1.0, 2.0]]), np.array([3.0]), lam=LAM)
    assert one.n_patterns == 1 and one.lower_bound <= one.value <= 1e-12
    same = arrangement_lower_bound(np.ones((4, 2)), np.arange(4.0), lam=LAM)
    assert same.value == pytest.approx(2.5) and same.lower_bound <= same.value
    X = np.random.default_rng(2).standard_normal((6, 2))
    zero = arrangement_lower_bound(X, np.zeros(6), lam=LAM)
    assert abs(zero.value) < 1e-10 and zero.lower_bound <= zero.value + 1e-15
