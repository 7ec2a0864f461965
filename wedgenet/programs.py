"""The convex program over a materialized dictionary: objective, dual point, dual bound.

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
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import Loss
from wedgenet.validation import check_lam

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


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
    iterations : int
    solver : str
    tried : tuple of str
    """

    Z: FloatArray
    t: FloatArray
    V: FloatArray
    primal: float
    dual: float
    max_score: float
    solve_time: float
    iterations: int = 0
    #: The solver that produced this solution.
    solver: str = ""
    #: Every solver that ran for it, in order (:func:`wedgenet.solvers.solve_program`).
    tried: tuple[str, ...] = ()

    @property
    def gap(self) -> float:
        return relative_gap(self.primal, self.dual)


@dataclass(frozen=True)
class Program:
    """The convex program over a materialized dictionary ``K`` (module docstring).

    Parameters
    ----------
    K : ndarray of shape (n, m)
        Dictionary columns (ReLU features of unit-norm neurons).
    Y : ndarray of shape (n, c)
        Encoded targets (:meth:`wedgenet.losses.Loss.encode`).
    loss : Loss
    lam : float
        Regularization strength, ``> 0`` (validated here, once).
    fit_offset : bool, default True
        Free (unregularized) output bias ``t``.
    """

    K: FloatArray
    Y: FloatArray
    loss: Loss
    lam: float
    fit_offset: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_lam(self.lam))
        K = np.asarray(self.K, dtype=float)
        Y = np.asarray(self.Y, dtype=float)
        if K.ndim != 2 or Y.ndim != 2 or K.shape[0] != Y.shape[0]:
            raise WedgeNetError(f"columns {K.shape} and targets {Y.shape} do not match")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "Y", Y)

    @property
    def n_columns(self) -> int:
        return int(self.K.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.Y.shape[1])

    @property
    def entries(self) -> int:
        """``n * m * c``: the size that decides whether a slow solver can finish."""
        return int(self.K.size * self.Y.shape[1])

    def objective(self, Z: FloatArray, t: FloatArray) -> float:
        return primal_value(self.loss, self.K @ Z + t, self.Y, Z, self.lam)

    def finish(
        self,
        Z: FloatArray,
        t: FloatArray,
        start: float,
        solver: str,
        iterations: int = 0,
        V: FloatArray | None = None,
    ) -> ProgramSolution:
        """:func:`finish` on this program."""
        return finish(
            self.loss, self.K, self.Y, Z, t, self.lam, self.fit_offset, start, solver,
            iterations, V,
        )

    def zero_solution(self) -> ProgramSolution:
        """``Z = 0`` with the best offset, bounded over the columns of ``K``."""
        c = self.n_outputs
        n = self.K.shape[0]
        t = np.zeros(c)
        if self.fit_offset and self.loss.smooth:
            t = self.loss.optimal_offset(np.zeros((n, c)), self.Y, t)
        return self.finish(np.zeros((self.n_columns, c)), t, time.perf_counter(), "zero", 1)


def dual_point(
    loss: Loss, K: FloatArray, Y: FloatArray, Z: FloatArray, t: FloatArray, fit_offset: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Refit the offset exactly (smooth losses) and return ``(t, U, V = -grad L)``."""
    U0 = K @ Z
    if fit_offset and loss.smooth:
        t = loss.optimal_offset(U0, Y, t)
    U = U0 + t
    V = -loss.grad(U, Y)
    if fit_offset and loss.quadratic:
        V = V - V.mean(axis=0)  # exact balance: the optimal offset centres the residual
    return t, U, V


def contribution_support(
    K: FloatArray, Z: FloatArray, threshold: float
) -> tuple[IntArray, FloatArray]:
    """Rows of ``Z`` whose contribution ``||Z_j|| ||k_j||`` is above ``threshold`` times the
    largest (a decision independent of the columns' units), and the column norms of ``K``."""
    col_norms = np.linalg.norm(K, axis=0)
    contributions = group_norms(Z) * col_norms
    top = float(contributions.max()) if contributions.size else 0.0
    return np.flatnonzero(contributions > threshold * top), col_norms


def kkt_dual_point(
    K: FloatArray,
    Y: FloatArray,
    Z: FloatArray,
    lam: float,
    fit_offset: bool,
    threshold: float = 1e-9,
) -> FloatArray | None:
    """The squared loss's dual point solved from the optimality conditions on the support of
    ``Z``, not recomputed as the residual ``Y - K Z - t``.

    On the support ``S`` (rows whose contribution ``||Z_j|| ||k_j||`` is above ``threshold``
    times the largest) the optimal residual ``V`` satisfies ``k_j^T V = lam Z_j / ||Z_j||``,
    ``1^T V = 0`` with a free offset, and lies in ``Y + range([K_S, 1])``. That fixes ``V``:
    the part of ``Y`` outside the range plus the one point of the range meeting the
    equalities. When the fit nearly interpolates (a feature in other units: columns whose
    norms span many orders of magnitude), the residual computed from ``K Z`` has lost its
    digits to cancellation and exceeds ``lam`` on big columns by ~1e-5 relative, which no
    solver accuracy removes; this one meets the equalities to rounding. It is solved by an
    SVD in column-normalized coordinates (unit columns, right-hand sides ``lam / ||k_j||``),
    so nothing depends on the columns' units. Any balanced ``V`` is a dual point; the caller
    prices it over every column and keeps the better bound. ``None`` for an empty support.
    """
    n = K.shape[0]
    S, col_norms = contribution_support(K, Z, threshold)
    if S.size == 0:
        return None
    N = K[:, S] / col_norms[S]
    C = (lam / col_norms[S])[:, None] * Z[S] / group_norms(Z[S])[:, None]
    if fit_offset:
        N = np.concatenate([N, np.full((n, 1), 1.0 / np.sqrt(n))], axis=1)
        C = np.concatenate([C, np.zeros((1, Z.shape[1]))], axis=0)
    Q, sv, Wt = np.linalg.svd(N)
    k = int(np.sum(sv > 1e-12 * sv[0]))
    outside = Q[:, k:] @ (Q[:, k:].T @ Y)
    inside = Q[:, :k] @ ((Wt[:k] @ C) / sv[:k, None])
    return np.asarray(outside + inside)


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

    Every decision is independent of the columns' units: the support is the rows whose
    contribution ``||Z_j|| ||k_j||`` is not negligible next to the largest one, and the
    Newton system is solved in column-normalized coordinates (``k_j / ||k_j||``, weights
    ``Z_j ||k_j||``, penalties ``lam / ||k_j||``), so a feature in other units (columns
    spanning many orders of magnitude) gets the same steps.
    """
    support, col_norms = contribution_support(K, Z, 1e-7)
    if support.size == 0 or support.size > max_support or not loss.smooth:
        return Z, t
    n, c = Y.shape
    f_in = primal_value(loss, K @ Z + t, Y, Z, lam)
    s = support.size
    scale = col_norms[support]  # > 0 on the support
    A = K[:, support] / scale
    weights = lam / scale  # penalty of row j in normalized coordinates
    M0 = Z[support] * scale[:, None]
    if fit_offset:
        root_n = np.sqrt(n)
        A = np.concatenate([A, np.full((n, 1), 1.0 / root_n)], axis=1)
        M0 = np.concatenate([M0, root_n * t[None, :]], axis=0)
    q = A.shape[1]

    def objective(x: FloatArray) -> float:
        M = x.reshape(q, c)
        return loss.value(A @ M, Y) + float(weights @ np.linalg.norm(M[:s], axis=1))

    x = M0.ravel()
    f = objective(x)
    for _ in range(max_iter):
        M = x.reshape(q, c)
        Ms = M[:s]
        U = A @ M
        G_U = loss.grad(U, Y)  # (n, c)
        nz = np.linalg.norm(Ms, axis=1)
        grad = (A.T @ G_U).copy()  # (q, c)
        grad[:s] += weights[:, None] * Ms / nz[:, None]
        Hs = loss.hessian(U, Y)  # per-sample c x c blocks
        H = np.einsum("ia,ijk,ib->ajbk", A, Hs, A).reshape(q * c, q * c)
        for j in range(s):
            zj = Ms[j]
            blk = weights[j] * (np.eye(c) / nz[j] - np.outer(zj, zj) / nz[j] ** 3)
            H[j * c : (j + 1) * c, j * c : (j + 1) * c] += blk
        g = grad.ravel()
        try:
            step = np.linalg.solve(H + 1e-14 * np.trace(H) / H.shape[0] * np.eye(H.shape[0]), g)
        except np.linalg.LinAlgError:
            break
        alpha = 1.0
        while alpha > 1e-8:
            xn = x - alpha * step
            Mn = xn.reshape(q, c)[:s]
            same_side = np.all(np.sum(Mn * Ms, axis=1) > 0)
            fn = objective(xn) if same_side else np.inf
            if fn <= f:
                break
            alpha *= 0.5
        if alpha <= 1e-8:
            break
        x, f_old, f = xn, f, fn
        if f_old - f <= 4 * np.finfo(float).eps * abs(f):
            break
    M = x.reshape(q, c)
    Z_out = np.zeros_like(Z)
    Z_out[support] = M[:s] / scale[:, None]
    t_out = M[s] / root_n if fit_offset else t
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
