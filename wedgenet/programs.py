"""The convex program over a dictionary, its dual bound, and the cvxpy reference.

With dictionary ``K`` (n, m), targets ``Y`` (n, c), a loss ``L`` and ``lam > 0``:

    min_{Z, t}  L(K Z + 1 t^T, Y) + lam * sum_j ||Z_j||_2          (Z_j: row j of Z)

which for scalar output (c = 1) is the Lasso ``L(K z + t) + lam ||z||_1``. Its dual is

    max_V  -L*(-V)   s.t.  ||k_j^T V||_2 <= lam for every column j,   1^T V = 0 (free t)

Any dual-feasible ``V`` gives a lower bound; we take ``V = -grad L`` at the primal point,
scaled into the feasible set. The *relative gap* ``(P - D) / max(|P|, tiny)`` certifies the
primal point; when every column of the dictionary was checked (scanned) and the dictionary is
exact (p = 1), it certifies global optimality of the neural network training problem.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import Loss

FloatArray = NDArray[np.float64]


def group_norms(Z: FloatArray) -> FloatArray:
    """Row norms ``||Z_j||_2`` (absolute values for c = 1)."""
    return np.abs(Z[:, 0]) if Z.shape[1] == 1 else np.linalg.norm(Z, axis=1)


def primal_value(loss: Loss, U: FloatArray, Y: FloatArray, Z: FloatArray, lam: float) -> float:
    """``L(U, Y) + lam * sum_j ||Z_j||_2``."""
    return loss.value(U, Y) + lam * float(np.sum(group_norms(Z)))


def column_scores(K: FloatArray, V: FloatArray) -> FloatArray:
    """Dual constraint values ``||k_j^T V||_2`` for every column (pricing)."""
    KV = K.T @ V
    return np.abs(KV[:, 0]) if V.shape[1] == 1 else np.linalg.norm(KV, axis=1)


def dual_bound(loss: Loss, V: FloatArray, Y: FloatArray, lam: float, max_score: float) -> float:
    """Lower bound ``-L*(-sV)``, ``s`` making ``sV`` feasible (``max_score``: over all columns)."""
    s_max = 1.0 if max_score <= lam else lam / max_score
    s = loss.best_scale(V, Y, s_max)
    return loss.dual_value(s * V, Y)


def relative_gap(primal: float, dual: float) -> float:
    return max(primal - dual, 0.0) / max(abs(primal), 1e-300)


@dataclass
class ProgramSolution:
    """Solution of the convex program on a (possibly restricted) dictionary.

    Attributes
    ----------
    Z : ndarray of shape (m, c)
        Coefficients of the dictionary columns.
    t : ndarray of shape (c,)
        Output bias.
    V : ndarray of shape (n, c)
        Dual point ``-grad L`` at the solution (before scaling into the feasible set).
    primal : float
    dual : float
        Lower bound on the program over the columns that were scored.
    max_score : float
        ``max_j ||k_j^T V||`` over the scored columns.
    solve_time : float
    """

    Z: FloatArray
    t: FloatArray
    V: FloatArray
    primal: float
    dual: float
    max_score: float
    solve_time: float
    iterations: int = 0
    solver: str = ""

    @property
    def gap(self) -> float:
        return relative_gap(self.primal, self.dual)


def dual_point(
    loss: Loss, K: FloatArray, Y: FloatArray, Z: FloatArray, t: FloatArray, fit_offset: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Refit the offset exactly (smooth losses) and return ``(t, U, V = -grad L)``."""
    U0 = K @ Z
    if fit_offset and loss.smooth:
        t = loss.optimal_offset(U0, Y, t)
    U = U0 + t
    V = -loss.grad(U, Y)
    if fit_offset and loss.name == "squared":
        V = V - V.mean(axis=0)
    return t, U, V


def refine_on_support(
    loss: Loss,
    K: FloatArray,
    Y: FloatArray,
    Z: FloatArray,
    t: FloatArray,
    lam: float,
    fit_offset: bool,
    max_iter: int = 30,
    max_support: int = 400,
) -> tuple[FloatArray, FloatArray]:
    """Newton's method on the support of ``Z`` (smooth losses, rows kept nonzero).

    On a fixed support the program is smooth (``||Z_j||`` is differentiable away from 0), so
    a few damped Newton steps turn a solver's ~1e-8 solution into one accurate to rounding,
    which makes the dual point ``-grad L`` (and hence the certificate) sharp. Returns the
    input unchanged if a row would cross zero or the objective would not decrease.
    """
    norms = group_norms(Z)
    support = np.flatnonzero(norms > 1e-7 * (norms.max() if norms.size else 0.0))
    if support.size == 0 or support.size > max_support or not loss.smooth or loss.name == "hinge":
        return Z, t
    n, c = Y.shape
    f_in = primal_value(loss, K @ Z + t, Y, Z, lam)
    A = K[:, support]
    if fit_offset:
        A = np.concatenate([A, np.ones((n, 1))], axis=1)
    s = support.size
    q = A.shape[1]

    def unpack(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        M = x.reshape(q, c)
        return M[:s], (M[s] if fit_offset else np.zeros(c))

    def objective(x: FloatArray) -> float:
        Zs, tt = unpack(x)
        return loss.value(A[:, :s] @ Zs + tt, Y) + lam * float(np.sum(np.linalg.norm(Zs, axis=1)))

    x = (
        np.concatenate([Z[support], t[None, :]], axis=0).ravel()
        if fit_offset
        else Z[support].ravel()
    )
    f = objective(x)
    for _ in range(max_iter):
        Zs, tt = unpack(x)
        U = A[:, :s] @ Zs + tt
        G_U = loss.grad(U, Y)  # (n, c)
        nz = np.linalg.norm(Zs, axis=1)
        grad = (A.T @ G_U).copy()  # (q, c)
        grad[:s] += lam * Zs / nz[:, None]
        # Hessian of the loss in U: per-sample c x c blocks.
        if loss.name == "squared":
            Hs = np.broadcast_to(np.eye(c), (n, c, c))
        elif loss.name == "logistic":
            from scipy.special import expit

            sg = expit(U[:, 0])
            Hs = (sg * (1 - sg))[:, None, None]
        else:  # softmax
            P = G_U + Y
            Hs = np.einsum("ij,jk->ijk", P, np.eye(c)) - P[:, :, None] * P[:, None, :]
        H = np.einsum("ia,ijk,ib->ajbk", A, Hs, A).reshape(q * c, q * c)
        for j in range(s):
            zj = Zs[j]
            blk = lam * (np.eye(c) / nz[j] - np.outer(zj, zj) / nz[j] ** 3)
            H[j * c : (j + 1) * c, j * c : (j + 1) * c] += blk
        g = grad.ravel()
        try:
            step = np.linalg.solve(H + 1e-14 * np.trace(H) / H.shape[0] * np.eye(H.shape[0]), g)
        except np.linalg.LinAlgError:
            break
        alpha = 1.0
        while alpha > 1e-8:
            xn = x - alpha * step
            Zn, _ = unpack(xn)
            same_side = np.all(np.sum(Zn * Zs, axis=1) > 0)
            fn = objective(xn) if same_side else np.inf
            if fn <= f:
                break
            alpha *= 0.5
        if alpha <= 1e-8:
            break
        x, f_old, f = xn, f, fn
        if f_old - f <= 1e-16 * max(1.0, abs(f)):
            break
    Zs, tt = unpack(x)
    Z_out = np.zeros_like(Z)
    Z_out[support] = Zs
    t_out = tt if fit_offset else t
    if primal_value(loss, K @ Z_out + t_out, Y, Z_out, lam) > f_in:
        return Z, t
    return Z_out, t_out


def finish(
    loss: Loss,
    K: FloatArray,
    Y: FloatArray,
    Z: FloatArray,
    t: FloatArray,
    lam: float,
    fit_offset: bool,
    start: float,
    solver: str,
    iterations: int = 0,
    V: FloatArray | None = None,
) -> ProgramSolution:
    """Assemble a :class:`ProgramSolution` with its dual bound over the columns of ``K``.

    Interior-point solutions are dense (coefficients ~1e-8 where the optimum has zeros).
    Rows whose dual constraint is clearly inactive (``||k_j^T V|| < lam (1 - 1e-6)``, so the
    optimum has ``Z_j = 0`` there) are zeroed, and smooth losses are refined by Newton on the
    support; each step is kept only if the objective does not increase beyond rounding.
    """
    if iterations == 0 and Z.shape[0]:
        t1, U1, V1 = dual_point(loss, K, Y, Z, t, fit_offset)
        before = primal_value(loss, U1, Y, Z, lam)
        inactive = column_scores(K, V1 if V is None else V) < lam * (1 - 1e-6)
        if np.any(inactive & np.any(Z != 0, axis=1)):
            Zs = Z.copy()
            Zs[inactive] = 0.0
            t2, U2, _ = dual_point(loss, K, Y, Zs, t1, fit_offset)
            if primal_value(loss, U2, Y, Zs, lam) <= before + 1e-11 * max(1.0, abs(before)):
                Z, t = Zs, t2
    if loss.smooth:
        Z, t = refine_on_support(loss, K, Y, Z, t, lam, fit_offset)
    t, U, V_grad = dual_point(loss, K, Y, Z, t, fit_offset)
    if V is None:
        V = V_grad
    scores = column_scores(K, V)
    max_score = float(scores.max()) if scores.size else 0.0
    return ProgramSolution(
        Z=Z,
        t=t,
        V=V,
        primal=primal_value(loss, U, Y, Z, lam),
        dual=dual_bound(loss, V, Y, lam, max_score),
        max_score=max_score,
        solve_time=time.perf_counter() - start,
        iterations=iterations,
        solver=solver,
    )


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
#: solution is then sharpened by :func:`finish`, and its gap is reported either way).
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

    if lam <= 0:
        raise WedgeNetError(f"lam must be > 0, got {lam}")
    start = time.perf_counter()
    n, m = K.shape
    c = Y.shape[1]
    Zv = cp.Variable((m, c))
    tv = cp.Variable((1, c)) if fit_offset else None
    U = K @ Zv + (np.ones((n, 1)) @ tv if tv is not None else 0)
    reg = cp.sum(cp.abs(Zv)) if c == 1 else cp.sum(cp.norm(Zv, 2, axis=1))
    constraints: list[Any] = []
    if loss.name == "hinge":
        xi = cp.Variable((n, c))
        margin = xi >= 1 - cp.multiply(Y, U)
        constraints = [margin, xi >= 0]
        data_term = cp.sum(xi)
    else:
        margin = None
        data_term = loss.cvxpy(U, Y)
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
        V = Y * np.clip(np.asarray(margin.dual_value, dtype=float), 0.0, 1.0)
        if fit_offset:
            # Project the dual point onto 1^T V = 0 without leaving theta in [0, 1]:
            # shrink the larger class side.
            V = balance_dual(V, Y)
    return finish(loss, K, Y, Z, t, lam, fit_offset, start, f"cvxpy/{solver}", 0, V)


def balance_dual(V: FloatArray, Y: FloatArray) -> FloatArray:
    """Make ``1^T V = 0`` (free output bias) without leaving ``theta = V * Y`` in [0, 1]:
    shrink the larger class side of each column."""
    out = V.copy()
    for col in range(V.shape[1]):
        v = out[:, col]
        pos, neg = v[v > 0].sum(), -v[v < 0].sum()
        if pos > neg and pos > 0:
            v[v > 0] *= neg / pos
        elif neg > pos and neg > 0:
            v[v < 0] *= pos / neg
    return out


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

    from wedgenet.losses import get_loss

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
    theta = np.clip(-np.asarray(res.ineqlin.marginals, dtype=float), 0.0, 1.0)
    V = Y * theta[:, None]
    if fit_offset:
        V = balance_dual(V, Y)
    return finish(get_loss("hinge"), K, Y, Z, t, lam, fit_offset, start, "highs", 1, V)
