"""Solvers of :mod:`wedgenet.programs` against the cvxpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import get_loss
from wedgenet.solvers.conic import solve_cvxpy, solve_hinge_lp


@pytest.mark.parametrize("fit_offset", [True, False])
def test_hinge_lp_matches_cvxpy_and_certifies(fit_offset: bool) -> None:
    rng = np.random.default_rng(0)
    n = 50
    X = rng.standard_normal((n, 2))
    y = np.where(X[:, 0] ** 2 + 0.5 * X[:, 1] > 0.6, 1.0, -1.0)[:, None]
    U = np.c_[X, np.ones(n)] @ rng.standard_normal((3, 60))
    K = np.c_[np.maximum(U, 0), np.maximum(-U, 0)]
    loss = get_loss("hinge")
    for lam in [0.01, 0.3, 3.0]:
        ref = solve_cvxpy(K, y, loss, lam, fit_offset=fit_offset)
        lp = solve_hinge_lp(K, y, lam, fit_offset=fit_offset)
        assert lp.gap <= 1e-9
        assert lp.primal == pytest.approx(ref.primal, rel=1e-8)
        # the objective of the returned point, computed from scratch
        obj = loss.value(K @ lp.Z + lp.t, y) + lam * float(np.abs(lp.Z).sum())
        assert obj == pytest.approx(lp.primal, rel=1e-12)
        assert lp.dual <= ref.primal * (1 + 1e-9)  # a lower bound on the true optimum
        if not fit_offset:
            assert lp.t[0] == 0.0


def test_hinge_lp_refuses_vector_targets() -> None:
    with pytest.raises(WedgeNetError, match="binary labels"):
        solve_hinge_lp(np.ones((4, 2)), np.ones((4, 2)), 0.1)


# ------------------------------------------------------------ dual point from the KKT system


def _relu_features(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    K = np.maximum(X @ rng.standard_normal((3, m)) + rng.standard_normal(m), 0.0)
    return K[:, np.any(K > 0, axis=0)], X


@pytest.mark.parametrize("factor", [1.0, 1e7])
@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("fit_offset", [True, False])
def test_kkt_dual_point_meets_the_optimality_conditions_in_any_units(
    c: int, fit_offset: bool, factor: float
) -> None:
    """At an optimum, the dual point solved from the KKT equalities scores lam on the support,
    at most lam elsewhere, and is balanced with a free offset, to rounding: a column's score
    is known to ``eps ||k_j|| ||V||`` (8 of them allowed), which is 1e-7 of lam for the
    column 1e7 times larger than the others here (a feature in other units). The gap closes
    to 1e-10 plus that. (Where the fit nearly interpolates, ``||V||`` is tiny and this point
    beats the residual recomputed from ``K Z``, whose rounding along a big column is
    ``eps ||K Z||``; see test_scale_invariance. The solver keeps the better of the two.)"""
    from wedgenet.programs import (
        Program,
        column_scores,
        dual_bound,
        group_norms,
        kkt_dual_point,
        relative_gap,
    )
    from wedgenet.solvers import solve_program

    K, _ = _relu_features(20, 60, seed=3)
    rng = np.random.default_rng(4)
    Y = rng.standard_normal((20, c))
    loss, lam = get_loss("squared"), 0.05
    K[:, 0] *= factor
    sol = solve_program(Program(K, Y, loss, lam, fit_offset), tol=1e-13)
    V = kkt_dual_point(K, Y, sol.Z, lam, fit_offset)
    assert V is not None
    support = np.flatnonzero(group_norms(sol.Z) > 0)
    scores = column_scores(K, V)
    rounding = 8 * np.finfo(float).eps * np.linalg.norm(K, axis=0) * np.linalg.norm(V)
    assert np.all(np.abs(scores[support] - lam) <= 1e-10 * lam + rounding[support])
    assert np.all(scores <= lam * (1 + 1e-10) + rounding)
    if fit_offset:
        assert np.abs(V.sum(axis=0)).max() <= 1e-12 * np.abs(V).sum()
    dual = dual_bound(loss, V, Y, lam, float(scores.max()))
    assert dual <= sol.primal * (1 + 1e-12)
    assert relative_gap(sol.primal, dual) < 1e-10 + 2 * float(rounding.max()) / lam


def test_kkt_dual_point_without_support_is_none() -> None:
    from wedgenet.programs import kkt_dual_point

    K, _ = _relu_features(10, 20, seed=1)
    assert kkt_dual_point(K, np.ones((10, 1)), np.zeros((K.shape[1], 1)), 0.1, True) is None
