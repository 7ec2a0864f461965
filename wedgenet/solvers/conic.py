"""Conic and linear-programming solvers of the program: cvxpy (CLARABEL, SCS) and HiGHS.

:func:`solve_cvxpy` states the program in one cvxpy statement for every loss and is the
reference the fast solvers are tested against; :func:`solve_hinge_lp` solves the hinge
program exactly as a linear program.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import HingeLoss, Loss
from wedgenet.programs import ProgramSolution, finish
from wedgenet.validation import check_lam

FloatArray = NDArray[np.float64]

#: High-accuracy CLARABEL settings: the default ones stop near 1e-8 and leave a visible gap in
#: the certificate for logistic and softmax losses.
CLARABEL_OPTS: dict[str, Any] = {
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "tol_ktratio": 1e-10,
    "max_iter": 500,
}
#: Looser CLARABEL settings, tried when the high-accuracy ones fail numerically (the
#: solution is then sharpened by :func:`~wedgenet.programs.finish`, and its gap is reported
#: either way).
CLARABEL_LOOSE_OPTS: dict[str, Any] = {
    "tol_gap_abs": 1e-8,
    "tol_gap_rel": 1e-8,
    "tol_feas": 1e-8,
    "tol_ktratio": 1e-6,
    "max_iter": 500,
}


def solve_cvxpy(
    K: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    *,
    fit_offset: bool = True,
    solver: str = "CLARABEL",
    solver_opts: dict[str, Any] | None = None,
) -> ProgramSolution:
    """Reference solution of the convex program by cvxpy (one statement for every loss).

    Parameters
    ----------
    K : ndarray of shape (n, m)
    Y : ndarray of shape (n, c)
        Encoded targets (see :meth:`wedgenet.losses.Loss.encode`).
    loss : Loss
    lam : float
    fit_offset : bool, default True
        Free (unregularized) output bias.
    solver : str, default "CLARABEL"
        Any cvxpy solver able to handle the loss's cone (CLARABEL handles all four).
    solver_opts : dict, optional
        Solver settings. For CLARABEL without them: the high-accuracy
        :data:`CLARABEL_OPTS`; on a numerical failure the same with shorter interior-point
        steps (``max_step_fraction=0.9``), then :data:`CLARABEL_LOOSE_OPTS` so, then the
        solver's defaults (measured: the tight settings alone fail on the logistic program
        over the full two-spirals dictionary at n = 60; shorter steps solve it to 6e-14).
    """
    import cvxpy as cp

    lam = check_lam(lam)
    start = time.perf_counter()
    n, m = K.shape
    c = Y.shape[1]
    Zv = cp.Variable((m, c))
    tv = cp.Variable((1, c)) if fit_offset else None
    U = K @ Zv + (np.ones((n, 1)) @ tv if tv is not None else 0)
    reg = cp.sum(cp.abs(Zv)) if c == 1 else cp.sum(cp.norm(Zv, 2, axis=1))
    data_term, constraints, margin = loss.cvxpy_program(U, Y)
    prob = cp.Problem(cp.Minimize(data_term + lam * reg), constraints)
    attempts: list[dict[str, Any]] = [dict(solver_opts or {})]
    if solver == "CLARABEL" and solver_opts is None:
        attempts = [
            dict(CLARABEL_OPTS),
            {**CLARABEL_OPTS, "max_step_fraction": 0.9},
            {**CLARABEL_LOOSE_OPTS, "max_step_fraction": 0.9},
            {},
        ]
    failure = ""
    for opts in attempts:
        try:
            with warnings.catch_warnings():
                # "Solution may be inaccurate": judged by the duality gap we report instead.
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                prob.solve(solver=solver, **opts)
        except cp.error.SolverError as exc:
            failure = f"cvxpy solver {solver} failed: {exc}"
            continue
        if Zv.value is None:
            failure = f"cvxpy solver {solver} returned status {prob.status}"
            continue
        break
    else:
        raise WedgeNetError(failure)
    Z = np.asarray(Zv.value, dtype=float)
    t = np.asarray(tv.value, dtype=float).reshape(-1) if tv is not None else np.zeros(c)
    V = None
    if margin is not None and margin.dual_value is not None:
        V = loss.dual_from_multipliers(np.asarray(margin.dual_value, dtype=float), Y, fit_offset)
    return finish(loss, K, Y, Z, t, lam, fit_offset, start, f"cvxpy/{solver}", 0, V)


def solve_hinge_lp(
    K: FloatArray, Y: FloatArray, lam: float, *, fit_offset: bool = True
) -> ProgramSolution:
    """The hinge-loss program as a linear program, by HiGHS (``scipy.optimize.linprog``).

    ``min sum_i xi_i + lam 1^T (z+ + z-)`` subject to ``xi_i >= 1 - y_i (k_i^T (z+ - z-) + t)``,
    ``xi, z+, z- >= 0``: the simplex method returns an exact vertex solution, and the
    multipliers of the margin constraints are the dual point ``theta in [0, 1]``
    (``V = y theta``), as for :func:`solve_cvxpy`. Scalar output only.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    lam = check_lam(lam)
    start = time.perf_counter()
    n, m = K.shape
    if Y.shape != (n, 1):
        raise WedgeNetError(f"solve_hinge_lp handles binary labels, got Y of shape {Y.shape}")
    y = Y[:, 0]
    yK = y[:, None] * K
    # variables: [z+ (m), z- (m), xi (n), t (1, free)]
    cost = np.concatenate([np.full(2 * m, lam), np.ones(n), [0.0]])
    A = sp.hstack(
        [sp.csr_matrix(-yK), sp.csr_matrix(yK), -sp.identity(n, format="csr"),
         sp.csr_matrix(-y[:, None])],
        format="csr",
    )
    bounds = [(0, None)] * (2 * m + n) + [(None, None) if fit_offset else (0, 0)]
    res = linprog(cost, A_ub=A, b_ub=-np.ones(n), bounds=bounds, method="highs")
    if res.status != 0 or res.x is None:
        raise WedgeNetError(f"HiGHS failed on the hinge program: {res.message}")
    x = res.x
    Z = (x[:m] - x[m : 2 * m]).reshape(m, 1)
    t = np.array([x[-1] if fit_offset else 0.0])
    loss = HingeLoss()
    V = loss.dual_from_multipliers(-np.asarray(res.ineqlin.marginals, dtype=float)[:, None],
                                   Y, fit_offset)
    return finish(loss, K, Y, Z, t, lam, fit_offset, start, "highs", 1, V)
