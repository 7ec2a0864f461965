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
