"""The active-set Lasso solver against closed forms, brute force and the cvxpy reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wedgenet.losses import get_loss
from wedgenet.solvers.activeset import (
    _delete,
    lasso_active_set,
    logistic_prox_newton,
    weighted_lasso,
)
from wedgenet.solvers.conic import solve_cvxpy


def _objective(K: np.ndarray, y: np.ndarray, z: np.ndarray, t: float, lam: float) -> float:
    return 0.5 * float(np.sum((K @ z + t - y) ** 2)) + lam * float(np.abs(z).sum())


def test_cholesky_delete_matches_refactorization() -> None:
    rng = np.random.default_rng(0)
    k = 7
    M = rng.standard_normal((20, k))
    G = M.T @ M
    for i in range(k):
        L = np.zeros((k + 1, k + 1))
        L[:k, :k] = np.linalg.cholesky(G)
        _delete(L, k, i)
        keep = [j for j in range(k) if j != i]
        ref = np.linalg.cholesky(G[np.ix_(keep, keep)])
        # Same factor up to the signs of its columns (Givens may flip a diagonal entry).
        Lk = L[: k - 1, : k - 1]
        np.testing.assert_allclose(Lk @ Lk.T, G[np.ix_(keep, keep)], atol=1e-10)
        np.testing.assert_allclose(np.abs(np.diag(Lk)), np.diag(ref), rtol=1e-10)
        assert np.all(L[k - 1, :] == 0) and np.all(L[:, k - 1] == 0)


def test_orthonormal_design_is_soft_thresholding() -> None:
    # Known closed form: with orthonormal columns and no offset, z_j = soft(k_j^T y, lam).
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 8)))
    y = rng.standard_normal((30, 1)) * 2
    lam = 0.7
    sol = lasso_active_set(Q, y, lam, fit_offset=False)
    c = Q.T @ y[:, 0]
    expected = np.sign(c) * np.maximum(np.abs(c) - lam, 0)
    np.testing.assert_allclose(sol.Z[:, 0], expected, atol=1e-12)
    assert sol.gap <= 1e-12


def test_brute_force_on_tiny_problem() -> None:
    # Enumerate every support and sign pattern; the best KKT-consistent face is the optimum.
    rng = np.random.default_rng(2)
    K = rng.standard_normal((6, 4))
    y = rng.standard_normal((6, 1))
    lam = 0.3
    best = np.inf
    for size in range(5):
        for supp in itertools.combinations(range(4), size):
            for signs in itertools.product([-1.0, 1.0], repeat=size):
                z = np.zeros(4)
                if size:
                    KA = K[:, list(supp)]
                    zA = np.linalg.solve(KA.T @ KA, KA.T @ y[:, 0] - lam * np.array(signs))
                    if np.any(zA * np.array(signs) < 0):
                        continue
                    z[list(supp)] = zA
                best = min(best, _objective(K, y[:, 0], z, 0.0, lam))
    sol = lasso_active_set(K, y, lam, fit_offset=False)
    assert sol.primal == pytest.approx(best, rel=1e-12)


@pytest.mark.parametrize("fit_offset", [True, False])
def test_matches_cvxpy_on_relu_dictionary_with_exact_dependence(fit_offset: bool) -> None:
    # Both orientations of every hyperplane: relu(u) - relu(-u) = u is affine, so a few
    # pairs are exactly linearly dependent (where LARS gives up), plus a duplicated column.
    rng = np.random.default_rng(3)
    n = 40
    X = rng.standard_normal((n, 2))
    y = (np.sin(2 * X[:, 0]) + X[:, 1] ** 2)[:, None]
    W = rng.standard_normal((3, 60))
    U = np.c_[X, np.ones(n)] @ W
    K = np.c_[np.maximum(U, 0), np.maximum(-U, 0), np.maximum(U[:, :1], 0)]
    assert np.linalg.matrix_rank(K) < K.shape[1] - 60
    for lam in [0.01, 0.1, 1.0]:
        ref = solve_cvxpy(K, y, get_loss("squared"), lam, fit_offset=fit_offset)
        sol = lasso_active_set(K, y, lam, fit_offset=fit_offset)
        assert sol.gap <= 1e-10
        assert sol.primal == pytest.approx(ref.primal, rel=1e-9)
        t = float(sol.t[0])
        assert _objective(K, y[:, 0], sol.Z[:, 0], t, lam) == pytest.approx(sol.primal, rel=1e-12)
        if not fit_offset:
            assert t == 0.0


def test_warm_start_from_any_point_reaches_the_same_optimum() -> None:
    rng = np.random.default_rng(4)
    K = np.maximum(rng.standard_normal((50, 120)), 0)
    y = rng.standard_normal((50, 1))
    lam = 0.2
    cold = lasso_active_set(K, y, lam)
    for _ in range(3):
        Z0 = rng.standard_normal((120, 1)) * (rng.random((120, 1)) < 0.3)
        warm = lasso_active_set(K, y, lam, Z0=Z0)
        assert warm.gap <= 1e-10
        assert warm.primal == pytest.approx(cold.primal, rel=1e-10)
    # From the optimum itself, nothing is left to do.
    again = lasso_active_set(K, y, lam, Z0=cold.Z)
    assert again.iterations <= 2
    assert again.primal == pytest.approx(cold.primal, rel=1e-12)


def test_zero_solution_above_lambda_max_and_bad_shapes() -> None:
    rng = np.random.default_rng(5)
    K = rng.standard_normal((10, 5))
    y = rng.standard_normal((10, 1))
    lam_max = float(np.max(np.abs((K - K.mean(0)).T @ (y - y.mean()))))
    sol = lasso_active_set(K, y, 1.01 * lam_max)
    assert not np.any(sol.Z)
    assert sol.t[0] == pytest.approx(float(y.mean()))
    with pytest.raises(ValueError, match="scalar output"):
        lasso_active_set(K, np.c_[y, y], 0.1)


def test_iteration_cap_reports_an_honest_gap() -> None:
    rng = np.random.default_rng(6)
    K = rng.standard_normal((30, 60))
    y = rng.standard_normal((30, 1))
    sol = lasso_active_set(K, y, 0.01, max_iter=2)
    ref = lasso_active_set(K, y, 0.01)
    assert sol.gap > 1e-6  # stopped early, and says so
    assert sol.primal >= ref.primal


@pytest.mark.parametrize("fit_offset", [True, False])
def test_logistic_prox_newton_matches_cvxpy(fit_offset: bool) -> None:
    rng = np.random.default_rng(7)
    n = 60
    X = rng.standard_normal((n, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)[:, None]  # XOR-like labels
    W = rng.standard_normal((3, 80))
    U = np.c_[X, np.ones(n)] @ W
    K = np.c_[np.maximum(U, 0), np.maximum(-U, 0)]  # exactly dependent pairs included
    loss = get_loss("logistic")
    for lam in [0.02, 0.3, 3.0]:
        ref = solve_cvxpy(K, y, loss, lam, fit_offset=fit_offset)
        sol = logistic_prox_newton(K, y, lam, fit_offset=fit_offset)
        assert sol.gap <= 1e-9
        assert sol.primal <= ref.primal * (1 + 1e-9)
        assert sol.primal == pytest.approx(ref.primal, rel=1e-8)


def test_logistic_prox_newton_from_a_far_warm_start() -> None:
    # A warm start with huge margins (vanishing curvature) must neither overflow the offset
    # nor stop early.
    rng = np.random.default_rng(8)
    n = 50
    X = rng.standard_normal((n, 2))
    y = np.where(X[:, 0] > 0.2, 1.0, -1.0)[:, None]
    K = np.maximum(np.c_[X, np.ones(n)] @ rng.standard_normal((3, 40)), 0)
    Z0 = 50.0 * rng.standard_normal((40, 1))
    cold = logistic_prox_newton(K, y, 0.1)
    warm = logistic_prox_newton(K, y, 0.1, Z0=Z0)
    assert np.all(np.isfinite(warm.Z)) and np.isfinite(warm.t).all()
    assert warm.gap <= 1e-9
    assert warm.primal == pytest.approx(cold.primal, rel=1e-9)


def test_weighted_lasso_matches_cvxpy() -> None:
    rng = np.random.default_rng(9)
    K = rng.standard_normal((30, 12))
    y = rng.standard_normal(30)
    w = rng.uniform(0.1, 3.0, 30)
    z, t, ok = weighted_lasso(K, y, w, 0.5)
    assert ok
    obj = 0.5 * np.sum(w * (K @ z + t - y) ** 2) + 0.5 * np.abs(z).sum()
    import cvxpy as cp

    zz, tt = cp.Variable(12), cp.Variable()
    prob = cp.Problem(
        cp.Minimize(0.5 * cp.sum(cp.multiply(w, cp.square(K @ zz + tt - y))) + 0.5 * cp.norm1(zz))
    )
    prob.solve(solver="CLARABEL")
    assert obj == pytest.approx(prob.value, rel=1e-7)


def test_logistic_prox_newton_from_saturated_margins():
    """Columns in large units (x1e3) and a warm start with margins in the thousands: every
    sample's logistic curvature sigma(u) sigma(-u) is exactly 0, so the curvature floor
    (relative to the largest) was 0 too, the weighted Lasso had all-zero weights and every
    step failed: the solve stayed at the warm start (objective 2.8e5, gap 1.0). The floor
    now never goes below 1e-12 (the curvature is at most 1/4); the solve reaches the CLARABEL
    reference's optimum."""
    rng = np.random.default_rng(0)
    n, m = 40, 12
    X = rng.standard_normal((n, 3))
    K = np.maximum(X @ rng.standard_normal((3, m)) + 0.3, 0.0) * 1e3
    loss = get_loss("logistic")
    Y, _ = loss.encode(np.where(rng.standard_normal(n) > 0, 1, -1))
    sol = logistic_prox_newton(K, Y, 1.0, Z0=rng.standard_normal((m, 1)) * 10)
    ref = solve_cvxpy(K, Y, loss, 1.0)
    assert sol.gap < 1e-9
    assert sol.primal == pytest.approx(ref.primal, rel=1e-6)
    assert sol.dual <= ref.primal * (1 + 1e-9)
