"""Active-set (homotopy-free) Lasso solver that stays exact on dependent dictionaries.

Solves the scalar-output squared-loss program of :mod:`wedgenet.programs`,

``0.5 ||y - K z - t||^2 + lam ||z||_1``  (free offset ``t`` eliminated by centering),

by the primal active-set method of Osborne, Presnell and Turlach (2000): on the current
*face* (active columns ``A`` with fixed signs ``s_A``) the optimum solves the normal equations
``K_A^T K_A z_A = K_A^T y - lam s_A``; a coefficient that would change sign is stepped to zero
and dropped; at the optimum of the face the most violating column (``|k_j^T r| > lam``) joins.

Why not LARS or coordinate descent. ReLU columns of neighbouring hyperplanes are nearly
collinear, where coordinate descent crawls, and the two orientations of one hyperplane differ
by an affine function (``relu(u) - relu(-u) = u``), so a few pairs make the active columns
*exactly* linearly dependent. LARS (scikit-learn's ``LassoLars``) then stops early ("degenerate
active set"), measured 0.2-1.0 relative gap on most working sets of the two-spirals and
Gaussian d = 2 benchmarks. Here a column that lies in the span of the active ones is handled
by a *null-space swap*: with ``k_j = K_A c``, moving ``z_j`` up by ``tau`` and ``z_A`` down by
``tau c`` leaves the fit unchanged and strictly lowers the l1 term (because
``|k_j^T r| = lam |c^T s_A| > lam``), until an active coefficient reaches zero and leaves. The
active columns therefore stay linearly independent, and the Cholesky factor of their Gram
matrix is updated in ``O(|A|^2)`` per change (appends; Givens rotations for deletions).

The method warm-starts from any point (its linearly independent support is kept with its
signs), which column generation provides (the previous restricted solution), so a restricted
solve after adding a few hundred columns typically takes a few dozen active-set changes.

The same loop solves row-weighted Lasso problems (:func:`weighted_lasso`), the model of one
proximal Newton step of the logistic program (:func:`logistic_prox_newton`).
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit
from numpy.typing import NDArray

from wedgenet.programs import ProgramSolution
from wedgenet.solvers.cd import _certificate

FloatArray = NDArray[np.float64]

#: Exit codes of the compiled loop.
CONVERGED, MAX_ITER, NUMERICAL = 0, 1, 2
#: a column's correlation ``k_j^T r`` is trusted to ``ROUNDING_FACTOR ||k_j|| (||y|| + ||r||)``
ROUNDING_FACTOR = 16 * float(np.finfo(np.float64).eps)
#: a relative decrease of the objective below this is rounding, not progress
PROGRESS = 1e-14


@njit(cache=True)
def _forward(L: np.ndarray, k: int, v: np.ndarray, out: np.ndarray) -> None:
    """Solve ``L[:k, :k] out = v`` (lower triangular)."""
    for i in range(k):
        acc = v[i]
        for j in range(i):
            acc -= L[i, j] * out[j]
        out[i] = acc / L[i, i]


@njit(cache=True)
def _backward(L: np.ndarray, k: int, v: np.ndarray, out: np.ndarray) -> None:
    """Solve ``L[:k, :k]^T out = v``."""
    for i in range(k - 1, -1, -1):
        acc = v[i]
        for j in range(i + 1, k):
            acc -= L[j, i] * out[j]
        out[i] = acc / L[i, i]


@njit(cache=True)
def _delete(L: np.ndarray, k: int, i: int) -> None:
    """Cholesky factor of the Gram matrix without row/column ``i`` (in place, size k -> k-1).

    Removing row ``i`` of ``L`` leaves a lower-Hessenberg block; Givens rotations on column
    pairs ``(r, r+1)`` restore the triangle.
    """
    for r in range(i, k - 1):
        for q in range(r + 2):
            L[r, q] = L[r + 1, q]
    for r in range(i, k - 1):
        a = L[r, r]
        b = L[r, r + 1]
        rho = np.hypot(a, b)
        if rho == 0.0:
            continue
        cs = a / rho
        sn = b / rho
        for q in range(r, k - 1):
            x = L[q, r]
            y = L[q, r + 1]
            L[q, r] = cs * x + sn * y
            L[q, r + 1] = -sn * x + cs * y
        L[r, r + 1] = 0.0
    for q in range(k):
        L[k - 1, q] = 0.0
        L[q, k - 1] = 0.0


@njit(cache=True)
def _project(
    Kc: np.ndarray, L: np.ndarray, A: np.ndarray, k: int, j: int, u: np.ndarray, c: np.ndarray
) -> float:
    """Project column ``j`` on the active columns: ``u = L^{-1} K_A^T k_j``, ``k_j ~ K_A c``;
    returns the norm of the residual ``k_j - K_A c``."""
    n = Kc.shape[0]
    v = np.empty(k)
    for a in range(k):
        acc = 0.0
        col = A[a]
        for i in range(n):
            acc += Kc[i, col] * Kc[i, j]
        v[a] = acc
    _forward(L, k, v, u)
    _backward(L, k, u, c)
    res = 0.0
    for i in range(n):
        x = Kc[i, j]
        for a in range(k):
            x -= Kc[i, A[a]] * c[a]
        res += x * x
    return np.sqrt(res)


@njit(cache=True)
def _append(L: np.ndarray, k: int, u: np.ndarray, delta: float) -> None:
    for q in range(k):
        L[k, q] = u[q]
        L[q, k] = 0.0
    L[k, k] = delta


@njit(cache=True)
def _face_solve(
    Kc: np.ndarray,
    yc: np.ndarray,
    b: np.ndarray,
    L: np.ndarray,
    A: np.ndarray,
    s: np.ndarray,
    k: int,
    lam: float,
    out: np.ndarray,
) -> None:
    """Optimum of the face: ``K_A^T K_A z = K_A^T y - lam s`` with one step of iterative
    refinement (the Gram matrix squares the conditioning of nearly collinear columns)."""
    n = Kc.shape[0]
    rhs = np.empty(k)
    tmp = np.empty(k)
    for a in range(k):
        rhs[a] = b[A[a]] - lam * s[a]
    _forward(L, k, rhs, tmp)
    _backward(L, k, tmp, out)
    r = yc.copy()
    for a in range(k):
        col = A[a]
        za = out[a]
        for i in range(n):
            r[i] -= Kc[i, col] * za
    for a in range(k):
        col = A[a]
        acc = 0.0
        for i in range(n):
            acc += Kc[i, col] * r[i]
        rhs[a] = acc - lam * s[a]
    _forward(L, k, rhs, tmp)
    corr = np.empty(k)
    _backward(L, k, tmp, corr)
    for a in range(k):
        out[a] += corr[a]


@njit(cache=True)
def _active_set_loop(
    Kc: np.ndarray,
    yc: np.ndarray,
    lam: float,
    z0: np.ndarray,
    tol: float,
    max_iter: int,
    eps_dep: float,
    kkt_tol: float,
) -> tuple[np.ndarray, int, int]:
    n, m = Kc.shape
    KcT = Kc.T  # C-contiguous view of the Fortran-ordered matrix: BLAS matrix-vector products
    b = np.dot(KcT, yc)
    y_norm = np.sqrt(np.dot(yc, yc))
    col_norm = np.empty(m)
    for j in range(m):
        sq = 0.0
        for i in range(n):
            sq += Kc[i, j] * Kc[i, j]
        col_norm[j] = np.sqrt(sq)
    cap = min(n, m) + 1
    L = np.zeros((cap, cap))
    A = np.empty(cap, dtype=np.int64)
    s = np.empty(cap)
    w = np.zeros(cap)
    inA = np.zeros(m, dtype=np.bool_)
    blocked = np.zeros(m, dtype=np.bool_)  # joined without progress (see below)
    joined, joined_best = -1, 0.0  # the last column to join, the best objective then
    u = np.empty(cap)
    cc = np.empty(cap)
    wstar = np.empty(cap)
    k = 0

    # Warm start: the sign-consistent point z0 restricted to independent columns.
    order = np.argsort(-np.abs(z0))
    for jj in range(m):
        j = order[jj]
        if z0[j] == 0.0 or k >= cap - 1:
            break
        if col_norm[j] == 0.0:
            continue
        delta = _project(Kc, L, A, k, j, u, cc)
        if delta <= eps_dep * col_norm[j]:
            continue
        _append(L, k, u, delta)
        A[k] = j
        s[k] = 1.0 if z0[j] > 0 else -1.0
        w[k] = z0[j]
        inA[j] = True
        k += 1

    zfull = np.zeros(m)
    for a in range(k):
        zfull[A[a]] = w[a]
    r0 = yc - np.dot(Kc, zfull)
    p_best = 0.5 * np.dot(r0, r0) + lam * np.sum(np.abs(zfull))
    z_best = zfull.copy()
    status = MAX_ITER
    it = 0
    while it < max_iter:
        it += 1
        # 1. Optimum of the current face; step back to the first sign change.
        _face_solve(Kc, yc, b, L, A, s, k, lam, wstar)
        tmin = 2.0
        i0 = -1
        for a in range(k):
            if s[a] * wstar[a] < 0.0:
                t = w[a] / (w[a] - wstar[a])
                if t < tmin:
                    tmin = t
                    i0 = a
        if i0 >= 0:
            for a in range(k):
                w[a] += tmin * (wstar[a] - w[a])
                if s[a] * w[a] < 0.0:
                    w[a] = 0.0
            inA[A[i0]] = False
            _delete(L, k, i0)
            for a in range(i0, k - 1):
                A[a] = A[a + 1]
                s[a] = s[a + 1]
                w[a] = w[a + 1]
            k -= 1
            continue
        finite = True
        for a in range(k):
            finite = finite and np.isfinite(wstar[a])
        if not finite:
            status = NUMERICAL
            break
        for a in range(k):
            w[a] = wstar[a]
        # 2. Residual, correlations, duality gap on this dictionary.
        zfull[:] = 0.0
        for a in range(k):
            zfull[A[a]] = w[a]
        r = yc - np.dot(Kc, zfull)
        corr = np.dot(KcT, r)
        rr = 0.0
        ry = 0.0
        for i in range(n):
            rr += r[i] * r[i]
            ry += r[i] * yc[i]
        max_c = 0.0
        best = -1
        best_c = 0.0
        # A correlation is known to about eps ||k_j|| (||y|| + ||r||): the residual is rounded
        # at the size of what it is computed from, ``y - K z``. A column joins only by
        # violating beyond that, so columns in very different units (norms spanning many
        # orders of magnitude) do not swap in and out forever on rounding.
        rounding = ROUNDING_FACTOR * (y_norm + np.sqrt(rr))
        for j in range(m):
            acc = abs(corr[j])
            if acc > max_c:
                max_c = acc
            if not inA[j] and not blocked[j]:
                beyond = acc - rounding * col_norm[j]
                if beyond > best_c:
                    best_c = beyond
                    best = j
        l1 = 0.0
        for a in range(k):
            l1 += abs(w[a])
        primal = 0.5 * rr + lam * l1
        s_max = 1.0 if max_c <= lam else lam / max_c
        scale = s_max
        if rr > 0.0:
            scale = min(max(ry / rr, 0.0), s_max)
            if scale == 0.0:
                scale = s_max
        dual = scale * ry - 0.5 * scale * scale * rr
        if not primal <= p_best * (1.0 + 1e-6) + 1e-300:
            # Every step of the method lowers the objective: a rise means the face solves
            # lost accuracy (nearly singular active columns). Stop at the best point.
            status = NUMERICAL
            break
        if joined >= 0:
            if not primal < joined_best * (1.0 - PROGRESS):
                # The last column to join (and the face solves and drops it led to) gained
                # nothing beyond rounding: its violation was rounding. It stays out until
                # the objective goes down, else dependent columns of very different norms
                # cycle (join, swap, drop) until max_iter.
                blocked[joined] = True
            joined = -1
        if primal < p_best:
            if primal < p_best * (1.0 - PROGRESS):
                blocked[:] = False
            p_best = primal
            z_best[:] = zfull
        if (
            primal - dual <= tol * max(abs(primal), 1e-300)
            or best < 0
            or best_c <= lam * (1.0 + kkt_tol)
        ):
            status = CONVERGED
            break
        # 3. The most violating column joins (sign of its correlation).
        j = best
        joined, joined_best = j, p_best
        sigma = 1.0 if corr[j] > 0 else -1.0
        if k >= cap - 1:
            status = NUMERICAL
            break
        delta = _project(Kc, L, A, k, j, u, cc)
        if delta <= eps_dep * col_norm[j]:
            # Null-space swap: k_j ~ K_A c; z_j += sigma tau, z_A -= sigma tau c keeps the fit
            # and lowers the l1 term until an active coefficient reaches zero.
            tau = np.inf
            i0 = -1
            for a in range(k):
                if s[a] * sigma * cc[a] > 0.0:
                    t = abs(w[a]) / abs(cc[a])
                    if t < tau:
                        tau = t
                        i0 = a
            if i0 < 0:
                status = NUMERICAL
                break
            for a in range(k):
                w[a] -= sigma * tau * cc[a]
                if s[a] * w[a] < 0.0:
                    w[a] = 0.0
            inA[A[i0]] = False
            _delete(L, k, i0)
            for a in range(i0, k - 1):
                A[a] = A[a + 1]
                s[a] = s[a + 1]
                w[a] = w[a + 1]
            k -= 1
            delta = _project(Kc, L, A, k, j, u, cc)
            if not delta > 0.0:
                status = NUMERICAL
                break
            _append(L, k, u, delta)
            A[k] = j
            s[k] = sigma
            w[k] = sigma * tau
        else:
            _append(L, k, u, delta)
            A[k] = j
            s[k] = sigma
            w[k] = 0.0
        inA[j] = True
        k += 1
    if status != CONVERGED:
        return z_best, it, status
    return zfull.copy(), it, status


def lasso_active_set(
    K: FloatArray,
    Y: FloatArray,
    lam: float,
    *,
    fit_offset: bool = True,
    Z0: FloatArray | None = None,
    tol: float = 1e-12,
    max_iter: int | None = None,
    eps_dep: float = 1e-7,
    kkt_tol: float = 1e-10,
) -> ProgramSolution:
    """Scalar-output squared-loss Lasso by the primal active-set method.

    Parameters
    ----------
    K : ndarray of shape (n, m)
    Y : ndarray of shape (n, 1)
    lam : float
    fit_offset : bool, default True
        Free output bias (eliminated by centering ``K`` and ``Y``).
    Z0 : ndarray of shape (m, 1), optional
        Warm start (any point; its linearly independent support is kept with its signs).
    tol : float, default 1e-12
        Stop when the relative duality gap on ``K`` is at most ``tol``.
    max_iter : int, optional
        Active-set changes; default ``20 * min(n, m) + 100``.
    eps_dep : float, default 1e-7
        A column whose distance to the span of the active columns is at most ``eps_dep``
        times its norm counts as dependent (null-space swap instead of a new column).
    kkt_tol : float, default 1e-10
        Also stop when no inactive column violates its dual constraint by more than
        ``lam * kkt_tol``: below that, rounding decides which column looks worst, and the
        method would only swap dependent columns back and forth. A column's correlation is
        trusted only to ``16 eps ||k_j|| (||y|| + ||r||)`` (it must violate beyond that to
        join), and a column whose joining lowered the objective by less than 1e-14 relative
        is kept out until the objective goes down: with columns of very different norms (a
        feature in other units) the method otherwise cycled on rounding until ``max_iter``.

    Returns
    -------
    ProgramSolution
        ``solver="activeset"``; ``iterations`` is the number of active-set changes. The gap
        is measured as in :func:`wedgenet.cd.lasso_cd`; a run that stops on ``max_iter`` or
        a numerical failure simply reports its (larger) gap, for a fallback to decide.
    """
    start = time.perf_counter()
    K = np.asarray(K, dtype=float)
    n, m = K.shape
    if Y.shape != (n, 1):
        raise ValueError(f"lasso_active_set handles scalar output only, got Y of shape {Y.shape}")
    z, t_opt, iterations, _ = _solve_reduced(
        K, Y[:, 0], None, lam, fit_offset, Z0, tol, max_iter, eps_dep, kkt_tol
    )
    Z = z.reshape(m, 1)
    t = np.array([t_opt])
    # With the optimal offset the residual is centered, so K^T R equals the centered scores.
    R = Y - K @ Z - t
    Yc = Y - Y.mean(axis=0) if fit_offset else np.asarray(Y, dtype=float)
    primal, dual, max_score = _certificate(K, R, Yc, Z, lam)
    return ProgramSolution(
        Z=Z,
        t=t,
        V=R,
        primal=primal,
        dual=dual,
        max_score=max_score,
        solve_time=time.perf_counter() - start,
        iterations=int(iterations),
        solver="activeset",
    )


def weighted_lasso(
    K: FloatArray,
    y: FloatArray,
    weights: FloatArray,
    lam: float,
    *,
    fit_offset: bool = True,
    z0: FloatArray | None = None,
    tol: float = 1e-12,
    max_iter: int | None = None,
    eps_dep: float = 1e-7,
    kkt_tol: float = 1e-10,
) -> tuple[FloatArray, float, bool]:
    """``min 0.5 sum_i w_i (k_i^T z + t - y_i)^2 + lam ||z||_1`` by the active-set method.

    The weighted least-squares model of one proximal Newton step. Rows are scaled by
    ``sqrt(w)``; the free offset is eliminated by projecting out the direction ``sqrt(w)``
    (plain centering when all weights are 1). Returns ``(z, t, converged)``.
    """
    z, t, _, status = _solve_reduced(
        K, y, weights, lam, fit_offset, z0, tol, max_iter, eps_dep, kkt_tol
    )
    return z, t, status == CONVERGED


def _solve_reduced(
    K: FloatArray,
    y: FloatArray,
    weights: FloatArray | None,
    lam: float,
    fit_offset: bool,
    z0: FloatArray | None,
    tol: float,
    max_iter: int | None,
    eps_dep: float,
    kkt_tol: float,
) -> tuple[FloatArray, float, int, int]:
    """Scale rows by ``sqrt(weights)``, eliminate the offset, run the compiled loop.

    Returns ``(z, t, iterations, status)`` with ``t`` the optimal offset for ``z``.
    """
    n, m = K.shape
    s = np.ones(n) if weights is None else np.sqrt(np.asarray(weights, dtype=float))
    Ks = K * s[:, None]
    ys = np.asarray(y, dtype=float).reshape(n) * s
    if fit_offset:
        a = s / np.linalg.norm(s)
        Kc = np.asfortranarray(Ks - np.outer(a, a @ Ks))
        yc = ys - a * (a @ ys)
    else:
        Kc, yc = np.asfortranarray(Ks), ys
    z0 = np.zeros(m) if z0 is None else np.ascontiguousarray(z0, dtype=float).reshape(m)
    if max_iter is None:
        max_iter = 20 * min(n, m) + 100
    z, iterations, status = _active_set_loop(
        Kc, np.ascontiguousarray(yc), float(lam), z0, float(tol), int(max_iter), eps_dep, kkt_tol
    )
    t = float(s @ (ys - Ks @ z) / (s @ s)) if fit_offset else 0.0
    return z, t, int(iterations), int(status)


def logistic_prox_newton(
    K: FloatArray,
    Y: FloatArray,
    lam: float,
    *,
    fit_offset: bool = True,
    Z0: FloatArray | None = None,
    tol: float = 1e-10,
    max_newton: int = 100,
) -> ProgramSolution:
    """Binary logistic loss with an l1 penalty by proximal Newton steps.

    Each step minimizes the quadratic model of the logistic loss plus ``lam ||z||_1``: a
    weighted Lasso (weights ``sigma(u) sigma(-u)``), solved exactly by the active-set method
    warm-started at the current point; a backtracking line search on the true objective
    (Armijo on the model's predicted decrease) makes every step a descent step. Near the
    optimum the steps are pure Newton steps on the support, so convergence is quadratic.

    Parameters
    ----------
    K : ndarray of shape (n, m)
    Y : ndarray of shape (n, 1)
        Labels in ``{-1, +1}`` (as :class:`wedgenet.losses.LogisticLoss` encodes them).
    lam, fit_offset, Z0
        As :func:`lasso_active_set`.
    tol : float, default 1e-10
        Stop when the relative duality gap on ``K`` is at most ``tol``.

    Returns
    -------
    ProgramSolution
        ``solver="prox-newton"``, with the certificate of
        :func:`wedgenet.programs.finish` (Newton refinement on the support included).
    """
    from scipy.special import expit

    from wedgenet.losses import get_loss
    from wedgenet.programs import finish, primal_value

    start = time.perf_counter()
    loss = get_loss("logistic")
    K = np.asarray(K, dtype=float)
    n, m = K.shape
    if Y.shape != (n, 1):
        raise ValueError(f"logistic_prox_newton handles binary labels, got Y of shape {Y.shape}")
    z = np.zeros(m) if Z0 is None else np.asarray(Z0, dtype=float).reshape(m).copy()
    t = np.zeros(1)
    if fit_offset:
        t = loss.optimal_offset((K @ z)[:, None], Y, t)
    y = Y[:, 0]

    def objective(zz: FloatArray, tt: FloatArray) -> float:
        return primal_value(loss, (K @ zz)[:, None] + tt, Y, zz[:, None], lam)

    f = objective(z, t)
    sol: ProgramSolution | None = None
    newton = 0
    stalls = 0
    for newton in range(1, max_newton + 1):
        u = K @ z + t[0]
        g = -y * expit(-y * u)  # d loss / d u
        # Curvature floor: samples classified with huge margins have weights ~1e-30, which
        # only make the weighted Gram matrix singular; the line search keeps steps safe.
        h = expit(u) * expit(-u)
        h = np.maximum(h, max(1e-8 * float(h.max()), 1e-12))  # (h <= 1/4: a unit-free floor)
        z_new, t_new, ok = weighted_lasso(
            K, u - g / h, h, lam, fit_offset=fit_offset, z0=z, tol=1e-13
        )
        if not ok:
            break  # the weighted Lasso lost accuracy: leave the rest to the caller's fallback
        dz, dt = z_new - z, (t_new - t[0]) if fit_offset else 0.0
        du = K @ dz + dt
        decrease = float(g @ du) + lam * (np.abs(z_new).sum() - np.abs(z).sum())
        if not np.isfinite(decrease) or decrease > 1e-12 * max(1.0, abs(f)):
            break  # the weighted Lasso step failed (it is a descent direction when exact)
        if decrease >= -1e-12 * max(1.0, abs(f)):
            # Quadratic region: the objective cannot resolve the decrease any more (it is
            # below its rounding), so take the full Newton step; the gap decides when to stop.
            z, t = z_new, t + dt
            f = objective(z, t)
            stalls += 1
        else:
            alpha = 1.0
            while alpha > 1e-10:
                zn, tn = z + alpha * dz, t + alpha * dt
                fn = objective(zn, tn)
                if np.isfinite(fn) and fn <= f + 1e-4 * alpha * decrease:
                    break
                alpha *= 0.5
            else:
                break
            z, t, f = zn, tn, fn
        cand = finish(loss, K, Y, z[:, None], t.copy(), lam, fit_offset, start, "prox-newton",
                      newton)
        if sol is None or cand.gap < sol.gap:
            sol = cand
        if sol.gap <= tol or stalls >= 3:
            break
    if sol is None:
        sol = finish(loss, K, Y, z[:, None], t.copy(), lam, fit_offset, start, "prox-newton",
                     max(newton, 1))
    sol.solve_time = time.perf_counter() - start
    return sol
