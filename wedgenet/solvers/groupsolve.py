"""Fast restricted solvers for vector outputs: squared-loss group Lasso and softmax.

Solves the program of :mod:`wedgenet.programs` with ``c > 1`` outputs,

    min_{Z, t}  L(K Z + 1 t^T, Y) + lam * sum_j ||Z_j||_2,

for the squared loss (group Lasso, several targets) and the softmax loss, on a materialized
(working-set sized) dictionary, warm-started, to the accuracy the working set asks for (down
to rounding: the outer certificate prices the full dictionary with ``V = -grad L``, so ``V``
must be sharp).

Method (:func:`group_prox_newton`)
----------------------------------
*Coordinates.* Softmax is invariant to adding a constant to every class, and projecting a
row ``Z_j`` onto the zero-sum vectors ``1^perp`` leaves the loss unchanged while lowering
``||Z_j||``, so every optimum has its rows (and, w.l.o.g., ``t``) in ``1^perp``. The solver
works in an orthonormal basis ``Q`` (c x (c-1)) of ``1^perp``: ``Z = Z' Q^T``, which keeps
the norms (``||Z_j|| = ||Z'_j||``) and makes the per-sample Hessians
``Q^T (diag p_i - p_i p_i^T) Q`` positive definite. The squared loss keeps ``Q = I`` and
eliminates the free bias exactly by centering ``K`` and ``Y``.

*Proximal Newton.* At each outer step the smooth loss is replaced by its quadratic model
(exact per-sample Hessians; the model *is* the loss for squared). The model plus the group
penalty is minimized by block coordinate descent (compiled with numba) over the active
blocks (nonzero rows and rows violating their optimality condition ``||k_j^T V|| <= lam``);
each block minimization is exact: with ``A_j = sum_i K_ij^2 H_i = E diag(mu) E^T`` the block
optimum of ``0.5 w^T A_j w - b^T w + lam ||w||`` is ``0`` if ``||b|| <= lam`` and otherwise
``w = E diag(r / (mu r + lam)) E^T b`` where ``r = ||w||`` solves the secular equation
``sum_k (e_k^T b)^2 / (mu_k r + lam)^2 = 1`` (safeguarded Newton). The free bias of the
softmax model is a block of its own, on columns centered with the model's curvature weights
(ReLU columns are nonnegative: uncentered, all of them correlate with the bias). A
backtracking line search on the true objective (Armijo on the model decrease) follows.

*Newton on the support.* ReLU columns of neighbouring hyperplanes are nearly collinear,
where coordinate descent crawls; but once the support (nonzero rows) is identified the
objective is smooth there (``||Z_j||`` is differentiable away from 0), so damped Newton
steps with the exact Hessian (loss part ``sum_i k_i k_i^T (x) H_i`` plus
``lam (I / r_j - z_j z_j^T / r_j^3)`` per row) converge quadratically to rounding. Exactly
duplicated support columns are merged first (same loss, no larger penalty); a row that a
Newton step would send through zero is dropped. Near the optimum (gap <= 1e-6) the rows
that violate their condition join the support at their exact block minimizers instead of
by a proximal Newton step, whose decrease for them is below the rounding of the objective
there; Newton on the support, whose steps at that level are judged by the gradient on the
support rather than by ``f``, then balances them. The outer loop stops on the relative
duality gap over the columns of ``K`` (:func:`wedgenet.programs.dual_bound`, with the dual
point ``V = -grad L`` at the refitted bias, so ``1^T V = 0`` per column where the bias is
free).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg
from numba import njit
from numpy.typing import NDArray

from wedgenet.geometry import one_blas_thread
from wedgenet.losses import Loss
from wedgenet.programs import (
    ProgramSolution,
    column_scores,
    dual_bound,
    dual_point,
    primal_value,
    relative_gap,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def zero_sum_basis(c: int) -> FloatArray:
    """Orthonormal basis, shape (c, c - 1), of the vectors of length ``c`` with zero sum."""
    if c < 2:
        raise ValueError(f"zero_sum_basis needs c >= 2, got {c}")
    M = np.eye(c)[:, : c - 1] - 1.0 / c
    Q, _ = np.linalg.qr(M)
    return np.asarray(Q, dtype=float)


# --------------------------------------------------------------------------------------------
# Compiled block coordinate descent on the quadratic model
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _secular_radius(bt: np.ndarray, mu: np.ndarray, lam: float) -> float:
    """Root ``r > 0`` of ``sum_k bt_k^2 / (mu_k r + lam)^2 = 1`` (requires ``||bt|| > lam``).

    Newton on ``psi(r) = phi(r)^(-1/2) - 1`` (exactly linear when ``mu`` is constant), kept
    inside a bracket: ``r`` lies between ``(||bt|| - lam) / mu_max`` and
    ``(||bt|| - lam) / mu_min``.
    """
    c = bt.shape[0]
    bn = 0.0
    mu_min = np.inf
    mu_max = 0.0
    for k in range(c):
        bn += bt[k] * bt[k]
        mu_min = min(mu_min, mu[k])
        mu_max = max(mu_max, mu[k])
    bn = np.sqrt(bn)
    lo = (bn - lam) / mu_max
    hi = (bn - lam) / mu_min
    r = lo
    for _ in range(100):
        phi = 0.0
        dphi = 0.0
        for k in range(c):
            den = mu[k] * r + lam
            q = bt[k] * bt[k] / (den * den)
            phi += q
            dphi -= 2.0 * q * mu[k] / den
        if phi > 1.0:
            lo = max(lo, r)
        else:
            hi = min(hi, r)
        if not phi > 0.0:  # r so large that every term underflowed: look lower (hi = r)
            r = 0.5 * (lo + hi)
            continue
        psi = 1.0 / np.sqrt(phi) - 1.0
        dpsi = -0.5 * dphi / (phi * np.sqrt(phi))
        r_new = r - psi / dpsi if dpsi > 0.0 else 0.5 * (lo + hi)
        if not (lo <= r_new <= hi):
            r_new = 0.5 * (lo + hi)
        if abs(r_new - r) <= 1e-15 * r_new:
            r = r_new
            break
        r = r_new
    return r


@njit(cache=True, fastmath=True)
def _model_cd(
    Kc: np.ndarray,
    Z: np.ndarray,
    W: np.ndarray,
    P: np.ndarray,
    identity: bool,
    Q: np.ndarray,
    mu: np.ndarray,
    E: np.ndarray,
    lam: float,
    offset: bool,
    Ht_inv: np.ndarray,
    s_off: np.ndarray,
    n_sweeps: int,
    rel_tol: float,
) -> int:
    """Block CD sweeps over the rows of ``Z`` (reduced coordinates) on the quadratic model.

    ``W`` (n, c) is the model gradient in (full) prediction space, ``G + H_i (U_i - U0_i)``
    per sample, kept up to date; the softmax Hessian applies as
    ``H_i d = p_i * (d - p_i . d)`` (``P``: probabilities), in ``O(c)`` per sample, and
    ``identity`` (squared loss) means ``H_i = I``. ``Q`` (c, c') maps reduced to full
    coordinates; ``mu[j], E[j]`` are the eigenpairs of the reduced block Hessian of row
    ``j``. With ``offset`` the (unpenalized) bias ``s_off`` is minimized exactly after every
    sweep (``Ht_inv``: inverse of its reduced Hessian ``sum_i H_i``). Returns the number of
    sweeps.
    """
    n = Kc.shape[0]
    c = W.shape[1]
    cr = Z.shape[1]
    gf = np.empty(c)
    g = np.empty(cr)
    bt = np.empty(cr)
    wt = np.empty(cr)
    delta = np.empty(cr)
    df = np.empty(c)
    sweeps = 0
    for _ in range(n_sweeps):
        sweeps += 1
        max_delta = 0.0
        max_z = 0.0
        for j in range(Z.shape[0]):
            for k in range(c):
                gf[k] = 0.0
            for i in range(n):
                kij = Kc[i, j]
                if kij != 0.0:
                    for k in range(c):
                        gf[k] += kij * W[i, k]
            for a in range(cr):
                acc = 0.0
                for k in range(c):
                    acc += Q[k, a] * gf[k]
                g[a] = acc
            bn = 0.0
            for a in range(cr):
                za = 0.0
                ga = 0.0
                for k in range(cr):
                    za += E[j, k, a] * Z[j, k]
                    ga += E[j, k, a] * g[k]
                bt[a] = mu[j, a] * za - ga
                bn += bt[a] * bt[a]
            if bn <= lam * lam:
                for a in range(cr):
                    wt[a] = 0.0
            else:
                r = _secular_radius(bt, mu[j], lam)
                for a in range(cr):
                    wt[a] = r * bt[a] / (mu[j, a] * r + lam)
            changed = False
            for k in range(cr):
                v = 0.0
                for a in range(cr):
                    v += E[j, k, a] * wt[a]
                delta[k] = v - Z[j, k]
                if delta[k] != 0.0:
                    changed = True
                max_delta = max(max_delta, abs(delta[k]))
                Z[j, k] = v
                max_z = max(max_z, abs(v))
            if not changed:
                continue
            for k in range(c):
                acc = 0.0
                for a in range(cr):
                    acc += Q[k, a] * delta[a]
                df[k] = acc
            for i in range(n):
                kij = Kc[i, j]
                if kij == 0.0:
                    continue
                if identity:
                    for k in range(c):
                        W[i, k] += kij * df[k]
                else:
                    pd = 0.0
                    for k in range(c):
                        pd += P[i, k] * df[k]
                    for k in range(c):
                        W[i, k] += kij * P[i, k] * (df[k] - pd)
        if offset:
            for k in range(c):
                acc = 0.0
                for i in range(n):
                    acc += W[i, k]
                gf[k] = acc
            for a in range(cr):
                acc = 0.0
                for k in range(c):
                    acc += Q[k, a] * gf[k]
                g[a] = acc
            for a in range(cr):
                acc = 0.0
                for b in range(cr):
                    acc -= Ht_inv[a, b] * g[b]
                delta[a] = acc
                s_off[a] += acc
            for k in range(c):
                acc = 0.0
                for a in range(cr):
                    acc += Q[k, a] * delta[a]
                df[k] = acc
            for i in range(n):
                if identity:
                    for k in range(c):
                        W[i, k] += df[k]
                else:
                    pd = 0.0
                    for k in range(c):
                        pd += P[i, k] * df[k]
                    for k in range(c):
                        W[i, k] += P[i, k] * (df[k] - pd)
        if max_delta <= rel_tol * max_z:
            break
    return sweeps


# --------------------------------------------------------------------------------------------
# The reduced problem
# --------------------------------------------------------------------------------------------


class _Reduced:
    """The program in reduced coordinates ``(Z', t')`` with ``U = (Kd Z' + 1 t'^T) Q^T``.

    Squared loss: ``Q = I``; with a free bias ``Kd``, ``Yd`` are centered and ``t'`` is not
    a variable. Softmax: ``Q`` spans ``1^perp``; with a free bias ``t'`` is a variable.
    """

    def __init__(self, K: FloatArray, Y: FloatArray, loss: Loss, lam: float, fit_offset: bool):
        self.loss = loss
        self.lam = float(lam)
        self.fit_offset = fit_offset
        n, c = Y.shape
        self.squared = loss.quadratic
        if self.squared:
            self.Q = np.eye(c)
            if fit_offset:
                self.kmean = K.mean(axis=0)
                self.ymean = Y.mean(axis=0)
                self.Kd = np.asfortranarray(K - self.kmean)
                self.Yd = Y - self.ymean
            else:
                self.kmean = np.zeros(K.shape[1])
                self.ymean = np.zeros(c)
                self.Kd = np.asfortranarray(K, dtype=float)
                self.Yd = np.asarray(Y, dtype=float)
            self.offset_var = False
        else:
            self.Q = zero_sum_basis(c)
            self.Kd = np.asfortranarray(K, dtype=float)
            self.Yd = np.asarray(Y, dtype=float)
            self.offset_var = fit_offset
        #: ``1 - sum_k Y_ik`` per sample (zero for one-hot targets; see :meth:`loss_value`).
        self.label_deficit = 1.0 - self.Yd.sum(axis=1)
        self.cr = self.Q.shape[1]

    # loss pieces in reduced coordinates ------------------------------------------------------

    def loss_value(self, Ur: FloatArray) -> float:
        """The loss at reduced predictions ``Ur``, accurate to rounding of its own size.

        Softmax is summed per sample in the shifted form
        ``lse(U_i) - U_i . y_i = lse(S_i) - S_i . y_i + top_i (1 - sum y_i)`` with
        ``S_i = U_i - top_i``, ``top_i = max_k U_ik`` (the last term vanishes for one-hot
        targets), whose terms are as small as the loss. The unshifted difference
        ``sum lse(U_i) - sum U_i . y_i`` of two large sums was measured to be off by up to
        1.8e-13 (2.5e-14 relative) near an optimum with ``|U| <= 45`` (sum of
        ``|U_i . y_i|`` 539, loss 7.19), above the ``1e-14 |f|`` within which the line
        searches accept a full step at rounding level; the shifted form was off by at most
        2.1e-15 (80-bit reference).
        """
        if self.squared:
            return 0.5 * float(np.sum((Ur - self.Yd) ** 2))
        U = Ur @ self.Q.T
        top = U.max(axis=1)
        S = U - top[:, None]
        per_sample = (
            np.log(np.exp(S).sum(axis=1))
            - np.einsum("ij,ij->i", S, self.Yd)
            + top * self.label_deficit
        )
        return float(per_sample.sum())

    def grad(self, Ur: FloatArray) -> tuple[FloatArray, FloatArray | None]:
        """Gradient ``G'`` (n, c') and per-sample Hessians (n, c', c'); ``None``: identity."""
        Gr, Hs, _ = self.derivatives(Ur)
        return Gr, Hs

    def derivatives(
        self, Ur: FloatArray
    ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
        """:meth:`grad`, and the softmax probabilities (n, c) (``None`` for squared)."""
        if self.squared:
            return Ur - self.Yd, None, None
        U = Ur @ self.Q.T
        U = U - U.max(axis=1, keepdims=True)
        P = np.exp(U)
        P /= P.sum(axis=1, keepdims=True)
        Gr = (P - self.Yd) @ self.Q
        w = P @ self.Q
        Hs = np.einsum("ia,ak,al->ikl", P, self.Q, self.Q) - w[:, :, None] * w[:, None, :]
        return Gr, Hs, P

    def objective(self, Zr: FloatArray, tr: FloatArray, Ur: FloatArray | None = None) -> float:
        if Ur is None:
            Ur = self.predict(Zr, tr)
        return self.loss_value(Ur) + self.lam * float(np.sum(np.linalg.norm(Zr, axis=1)))

    def predict(self, Zr: FloatArray, tr: FloatArray) -> FloatArray:
        Ur = self.Kd @ Zr
        if self.offset_var:
            Ur = Ur + tr
        return np.asarray(Ur)

    # conversions ------------------------------------------------------------------------------

    def expand(self, Zr: FloatArray, tr: FloatArray) -> tuple[FloatArray, FloatArray]:
        Z = Zr @ self.Q.T
        if self.squared:
            t = self.ymean - self.kmean @ Z if self.fit_offset else np.zeros(Z.shape[1])
        else:
            t = tr @ self.Q.T if self.offset_var else np.zeros(Z.shape[1])
        return Z, np.asarray(t, dtype=float)

    def best_offset(self, Zr: FloatArray, tr: FloatArray) -> FloatArray:
        """The optimal bias for ``Z'`` (softmax with a free bias; else ``tr`` unchanged).

        Levenberg-Marquardt damped Newton: far from the optimum the predictions can be
        saturated (every probability near 0 or 1), where the Hessian nearly vanishes and
        plain damped Newton steps, huge and then halved, can stall at the start point.
        """
        if not self.offset_var:
            return tr
        U0 = self.Kd @ Zr
        n = U0.shape[0]
        t = np.array(tr, dtype=float)
        phi = self.loss_value(U0 + t)
        damping = 0.0
        eye = np.eye(self.cr)
        stalls = 0
        for _ in range(200):
            Gr, Hs = self.grad(U0 + t)
            g = Gr.sum(axis=0)
            if np.max(np.abs(g)) <= 1e-13 * max(1.0, n):
                break
            assert Hs is not None
            H = Hs.sum(axis=0)
            scale = max(float(np.trace(H)) / self.cr, 1e-300)
            for _ in range(60):
                step = np.linalg.lstsq(H + damping * eye, g, rcond=None)[0]
                phi_new = self.loss_value(U0 + t - step)
                if phi_new <= phi + 1e-15 * max(1.0, abs(phi)):
                    break
                damping = max(10.0 * damping, 1e-6 * scale)
            else:
                break
            t = t - step
            stalls = stalls + 1 if phi_new >= phi else 0
            phi = phi_new
            damping *= 0.1
            if stalls >= 3 or np.max(np.abs(step)) <= 1e-15 * (1.0 + np.max(np.abs(t))):
                break
        return t


# --------------------------------------------------------------------------------------------
# Proximal Newton step with block CD on the model
# --------------------------------------------------------------------------------------------


def _prox_newton_step(
    R: _Reduced,
    Zr: FloatArray,
    tr: FloatArray,
    f: float,
    Gr: FloatArray,
    Hs: FloatArray | None,
    P: FloatArray | None,
    active: IntArray,
    n_sweeps: int,
    rel_tol: float,
) -> tuple[FloatArray, FloatArray, float, bool]:
    """One proximal Newton step over the rows ``active``; returns ``(Z', t', f, moved)``."""
    n = R.Kd.shape[0]
    cr = R.cr
    lam = R.lam
    identity = Hs is None
    if active.size == 0:
        return Zr, tr, f, False
    KA = R.Kd[:, active]
    offset = R.offset_var
    if offset:
        assert Hs is not None
        # Center the active columns with the model's curvature weights, so that the bias
        # block decouples (nearly) from the rows: U' = Kc Z' + 1 s^T, s = t + mu^T Z'.
        omega = np.einsum("ikk->i", Hs) + 1e-300
        mean = (omega @ KA) / omega.sum()
        Kc = np.asfortranarray(KA - mean)
        Ht = Hs.sum(axis=0)
        try:
            Ht_inv = np.linalg.inv(Ht + 1e-14 * np.trace(Ht) * np.eye(cr))
        except np.linalg.LinAlgError:
            Ht_inv = np.zeros((cr, cr))
    else:
        mean = np.zeros(active.size)
        Kc = np.asfortranarray(KA)
        Ht_inv = np.zeros((cr, cr))
    sq = np.einsum("ij,ij->j", Kc, Kc)  # squared column norms
    if identity:
        mu = np.repeat(sq[:, None], cr, axis=1)
        E = np.broadcast_to(np.eye(cr), (active.size, cr, cr)).copy()
        P_arr = np.zeros((1, 1))
        W = np.array(Gr, dtype=float)  # Q = I
    else:
        assert Hs is not None
        A = ((Kc * Kc).T @ Hs.reshape(n, cr * cr)).reshape(active.size, cr, cr)
        A = 0.5 * (A + np.transpose(A, (0, 2, 1)))
        mu, E = np.linalg.eigh(A)
        # Curvature floor: relative to the largest curvature, and never below 1e-10 of the
        # column's squared norm (the curvature of a loss Hessian of 1e-10). Saturated
        # probabilities (features in large units: logits of thousands) make every Hessian
        # block exactly 0; the model's steps are then long and the line search decides.
        floor = np.maximum(1e-12 * max(float(mu.max()), 0.0), 1e-10 * sq)
        mu = np.maximum(mu, np.maximum(floor, 1e-300)[:, None])
        assert P is not None
        P_arr = np.ascontiguousarray(P)
        W = P_arr - R.Yd  # full-coordinate gradient
    Znew = np.ascontiguousarray(Zr[active])
    s_off = (tr + mean @ Znew).copy() if offset else np.zeros(cr)
    s_start = s_off.copy()
    _model_cd(
        Kc,
        Znew,
        np.ascontiguousarray(W),
        P_arr,
        identity,
        np.ascontiguousarray(R.Q),
        np.ascontiguousarray(mu),
        np.ascontiguousarray(E),
        lam,
        offset,
        np.ascontiguousarray(Ht_inv),
        s_off,
        int(n_sweeps),
        float(rel_tol),
    )
    D = Znew - Zr[active]
    dt = (s_off - s_start) - mean @ D if offset else np.zeros(cr)
    dU = KA @ D + (dt if offset else 0.0)
    norms_old = np.linalg.norm(Zr[active], axis=1)
    norms_new = np.linalg.norm(Znew, axis=1)
    decrease = float(np.sum(Gr * dU)) + lam * float(np.sum(norms_new) - np.sum(norms_old))
    if not np.isfinite(decrease) or decrease >= 0.0 or not np.any(D):
        return Zr, tr, f, False
    Ur0 = R.predict(Zr, tr)
    rounding = 1e-14 * max(1.0, abs(f))
    alpha = 1.0
    while alpha > 1e-12:
        Zt = Zr.copy()
        Zt[active] = Zr[active] + alpha * D
        tt = tr + alpha * dt
        ft = R.objective(Zt, tt, Ur0 + alpha * dU)
        if np.isfinite(ft) and ft <= f + 1e-4 * alpha * decrease:
            return Zt, tt, ft, True
        if alpha == 1.0 and -decrease <= rounding and ft <= f + rounding:
            # Near the optimum the predicted decrease is below the rounding of f (a row
            # whose condition ||k_j^T V|| <= lam is violated by 1e-8 relative joins with a
            # decrease ~1e-19): the full step is taken; the gap judges it.
            return Zt, tt, ft, True
        alpha *= 0.5
    return Zr, tr, f, False


# --------------------------------------------------------------------------------------------
# Newton on the support
# --------------------------------------------------------------------------------------------


def _loss_hessian(A: FloatArray, Hs: FloatArray | None, cr: int) -> FloatArray:
    """``sum_i a_i a_i^T (x) H_i`` for the rows ``a_i`` of ``A`` (n, q), index ``j * cr + k``."""
    q = A.shape[1]
    if Hs is None:
        return np.asarray(np.kron(A.T @ A, np.eye(cr)), dtype=float)
    H = np.empty((q, cr, q, cr))
    for k in range(cr):
        for kk in range(k, cr):
            B = A.T @ (A * Hs[:, k, kk][:, None])
            H[:, k, :, kk] = B
            if kk != k:
                H[:, kk, :, k] = B.T
    return H.reshape(q * cr, q * cr)


def _block_minimizer(
    R: _Reduced, Gr: FloatArray, Hs: FloatArray | None, j: int, zj: FloatArray
) -> FloatArray | None:
    """Exact minimizer over row ``j`` of the quadratic model at the current point (the other
    rows fixed): the block update of the coordinate descent; ``None`` if degenerate."""
    k = R.Kd[:, j]
    g = k @ Gr
    if Hs is None:
        mu = np.full(R.cr, float(k @ k))
        E = np.eye(R.cr)
    else:
        mu, E = np.linalg.eigh(np.einsum("i,ikl->kl", k * k, Hs))
    if not np.all(mu > 0):
        return None
    bt = E.T @ (E @ (mu * (E.T @ zj)) - g)
    if np.linalg.norm(bt) <= R.lam:
        return np.zeros(R.cr)
    r = _secular_radius(np.ascontiguousarray(bt), np.ascontiguousarray(mu), R.lam)
    return np.asarray(E @ (r * bt / (mu * r + R.lam)), dtype=float)


def _add_violators(
    R: _Reduced,
    Zr: FloatArray,
    tr: FloatArray,
    f: float,
    Gr: FloatArray,
    Hs: FloatArray | None,
    violators: IntArray,
) -> tuple[FloatArray, FloatArray, float, bool]:
    """Bring the zero rows ``violators`` into the support at their exact block minimizers.

    Each row is set to the minimizer of the quadratic model over that row alone (the other
    rows fixed, :func:`_block_minimizer`), all at once, for :func:`_support_newton` to
    balance afterwards. This is the active-set step near the optimum, where the proximal
    Newton step cannot take it: a row violating ``||k_j^T V|| <= lam`` by ``delta``
    relative lowers the objective by about ``(lam delta)^2 / (2 k_j^T H k_j)``, below the
    rounding of ``f`` and of the model decrease once ``delta`` is ~1e-8 or less. (Measured
    on a softmax problem with n = 120, c = 10, 60 columns, ``lam = 0.5``, f = 135: six
    proximal Newton steps in a row left the gap at 5.5e-10, one column violating by 2.5e-9
    relative; this step and Newton on the support then reached a gap of 3.6e-15, lowering
    f by 4.7e-9. Without this step 1 of 168 variants of the test problems, 7 cases with and
    without offset on 12 seeds, stopped above ``tol = 1e-10``; with it none did.) Each row
    alone is a descent direction, so the step is taken when the objective does not rise
    beyond its rounding, else scaled down. Returns ``(Z', t', f, moved)``.
    """
    W = np.zeros((violators.size, R.cr))
    for pos, j in enumerate(violators):
        wj = _block_minimizer(R, Gr, Hs, int(j), Zr[j])
        if wj is not None:
            W[pos] = wj
    keep = np.any(W != 0, axis=1)
    if not np.any(keep):
        return Zr, tr, f, False
    rows, W = violators[keep], W[keep]
    rounding = 1e-14 * max(1.0, abs(f))
    alpha = 1.0
    while alpha >= 1e-3:
        Zt = Zr.copy()
        Zt[rows] = alpha * W
        ft = R.objective(Zt, tr)
        if np.isfinite(ft) and ft <= f + rounding:
            return Zt, tr, ft, True
        alpha *= 0.125
    return Zr, tr, f, False


def _merge_duplicates(Kd: FloatArray, Zr: FloatArray, support: IntArray) -> FloatArray:
    """Add the rows of exactly duplicated support columns into one of them.

    The loss is unchanged and, by the triangle inequality, the penalty does not increase;
    it removes an exact null direction from the Newton system.
    """
    if support.size < 2:
        return Zr
    cols = np.ascontiguousarray(Kd[:, support].T)
    _, first, inverse = np.unique(cols, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if first.size == support.size:
        return Zr
    Zr = Zr.copy()
    for pos, grp in enumerate(inverse):
        keep = first[grp]
        if pos != keep:
            Zr[support[keep]] += Zr[support[pos]]
            Zr[support[pos]] = 0.0
    return Zr


def _support_residual(
    R: _Reduced, A: FloatArray, support: IntArray, Zr: FloatArray, tr: FloatArray
) -> float:
    """Norm of the (minimal-norm sub)gradient of the objective over the rows ``support``
    and, with a free bias, the bias (``A``: the support columns, then ``1``)."""
    Zs = Zr[support]
    x = np.concatenate([Zs, tr[None, :]], axis=0) if R.offset_var else Zs
    grad = A.T @ R.grad(A @ x)[0]
    ns = np.linalg.norm(Zs, axis=1)
    nonzero = ns > 0
    grad[: support.size][nonzero] += R.lam * Zs[nonzero] / ns[nonzero, None]
    # a zero row: the distance of its loss gradient from the ball of radius lam
    gz = grad[: support.size][~nonzero]
    gn = np.maximum(np.linalg.norm(gz, axis=1), 1e-300)
    grad[: support.size][~nonzero] = gz * (np.maximum(gn - R.lam, 0.0) / gn)[:, None]
    return float(np.linalg.norm(grad))


#: The most unknowns of Newton on the support (:func:`_support_newton`).
SUPPORT_NEWTON_VARS = 3000


def _support_newton(
    R: _Reduced,
    Zr: FloatArray,
    tr: FloatArray,
    f: float,
    max_iter: int = 200,
    max_vars: int = SUPPORT_NEWTON_VARS,
    max_drops: int = 8,
    small_vars: int = 1200,
) -> tuple[FloatArray, FloatArray, float]:
    """Damped Newton on the support of ``Z'`` for the true objective; returns ``(Z', t', f)``.

    Stops when a full step is below ``1e-8`` relative (quadratic convergence: the error is
    then at rounding level), when the objective stalls, or when the system would have more
    than ``max_vars`` unknowns. Rows a step would send through zero are dropped, one per
    step; after ``max_drops`` of them (unlimited while the system has at most ``small_vars``
    unknowns, where a step costs little) the support was far from the optimal one and the
    caller's proximal Newton steps take over again.
    """
    lam = R.lam
    cr = R.cr
    n = R.Kd.shape[0]
    drops = 0
    stalls = 0
    damping = 1.0
    Zr = _merge_duplicates(R.Kd, Zr, np.flatnonzero(np.any(Zr != 0, axis=1)))
    support = np.zeros(0, dtype=np.int64)
    A = np.zeros((n, 0))
    for it in range(max_iter):
        norms = np.linalg.norm(Zr, axis=1)
        new_support = np.flatnonzero(norms > 0)
        if drops > max_drops and new_support.size * cr > small_vars:
            break
        s = new_support.size
        q = s + (1 if R.offset_var else 0)
        if q == 0 or q * cr > max_vars:
            break
        if not np.array_equal(new_support, support):
            support = new_support
            A = R.Kd[:, support]
            if R.offset_var:
                A = np.concatenate([A, np.ones((n, 1))], axis=1)
        Zs = Zr[support]
        x = np.concatenate([Zs, tr[None, :]], axis=0) if R.offset_var else Zs
        Ur = A @ x
        Gr, Hs = R.grad(Ur)
        if it >= 2 and drops == 0 and (s + 1) * cr > ALWAYS_NEWTON_VARS:
            # Large systems: when rows outside the support violate their condition
            # ||k_j^T V|| <= lam (and no row left), the support is incomplete; a few Newton
            # steps suffice before the caller's proximal Newton step brings those rows in.
            outside = norms == 0
            worst = np.linalg.norm(R.Kd[:, outside].T @ Gr, axis=1).max(initial=0.0)
            if worst > lam * (1 + 1e-6):
                break
        grad = A.T @ Gr
        ns = norms[support]
        grad[:s] += lam * Zs / ns[:, None]
        H = _loss_hessian(A, Hs, cr)
        H4 = H.reshape(q, cr, q, cr)
        U_s = Zs / ns[:, None]
        for j in range(s):
            H4[j, :, j, :] += (lam / ns[j]) * (np.eye(cr) - np.outer(U_s[j], U_s[j]))
        g = grad.ravel()
        ridge = RIDGE * damping * max(float(np.diag(H).max()), 1e-300)
        try:
            cf = scipy.linalg.cho_factor(H + ridge * np.eye(q * cr), check_finite=False)
            step = scipy.linalg.cho_solve(cf, g, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            w, Vh = np.linalg.eigh(H)
            step = Vh @ ((Vh.T @ g) / np.maximum(w, ridge))
        if not np.all(np.isfinite(step)):
            break
        dec = float(g @ step)
        if not dec > 0.0:
            break
        dx = step.reshape(q, cr)
        dZ = dx[:s]
        dU = A @ dx
        best: tuple[FloatArray, FloatArray, float] | None = None
        # Rows the full step sends through zero want to leave the support. Step to the
        # closest approach of the first of them to zero and drop it there (to first order
        # that lowers the objective when ||grad_j L|| < lam, the condition for a zero row at
        # the optimum); or stop there without dropping it; or backtrack before it. (Dropping
        # all crossing rows at once was tried: on bloated supports of nearly collinear
        # columns the Newton step crosses with dozens of rows, and zeroing them together
        # raised the objective every time.)
        cross = np.sum((Zs - dZ) * Zs, axis=1) <= 0
        alpha = 1.0
        dropped = False
        if np.any(cross):
            dd = np.maximum(np.sum(dZ * dZ, axis=1), 1e-300)
            a_row = np.where(cross, np.sum(Zs * dZ, axis=1) / dd, np.inf)
            jc = int(np.argmin(a_row))
            alpha = float(min(max(a_row[jc], 0.0), 1.0))
            Zt = Zr.copy()
            Zt[support] = Zs - alpha * dZ
            tt = tr - alpha * dx[s] if R.offset_var else tr
            Zt[support[jc]] = 0.0
            ft = R.objective(Zt, tt)
            drop = ft < f
            if not drop and ft <= f + 1e-15 * max(1.0, abs(f)):
                # Rows of norm ~1e-9 change f below its last digit: then the row's own
                # condition decides (zero rows need ||k_j^T V|| <= lam).
                Gt = R.grad(R.predict(Zt, tt))[0]
                drop = bool(np.linalg.norm(R.Kd[:, support[jc]] @ Gt) <= lam)
            if drop:
                best = (Zt, tt, ft)
                drops += 1
                dropped = True
            elif ns[jc] <= 1e-6 * ns.max():
                # A tiny row that must stay but points the wrong way (its penalty curvature
                # lam / r_j freezes its direction): re-solve it exactly, the others fixed.
                # (Measured on degenerate problems: without this the gap stalled at 1e-8
                # with rows of norm 1e-12..1e-9 crossing at every step.)
                j = int(support[jc])
                wj = _block_minimizer(R, Gr, Hs, j, Zr[j])
                if wj is not None and np.any(wj):
                    Zt = Zr.copy()
                    Zt[j] = wj
                    ft = R.objective(Zt, tr)
                    if ft <= f + 1e-15 * max(1.0, abs(f)):
                        best = (Zt, tr, ft)
        if best is None:
            while alpha > 1e-12:
                Zt = Zr.copy()
                Zt[support] = Zs - alpha * dZ
                tt = tr - alpha * dx[s] if R.offset_var else tr
                same = np.all(np.sum(Zt[support] * Zs, axis=1) > 0)
                if same:
                    ft = R.objective(Zt, tt, Ur - alpha * dU)
                    # Near the optimum the decrease is below the rounding of f: the full
                    # step is then taken (the step size decides convergence).
                    if (ft < f and ft <= f - 1e-4 * alpha * dec) or (
                        alpha == 1.0 and ft <= f + 1e-14 * max(1.0, abs(f))
                    ):
                        best = (Zt, tt, ft)
                        break
                alpha *= 0.5
        stalled = best is None
        if best is not None and best[2] >= f and not dropped:
            # No decrease of f that rounding could tell: at rounding level the gradient on
            # the support decides. (A row dropped counts as progress: the support only
            # shrinks here, so that happens finitely often.) Measured on the squared problem
            # of the warm-start test, 60 support rows with 16 exactly dependent column
            # pairs: the Newton decrements were 3e-12..7e-21 against f = 1.64, the steps
            # changed f by at most 9e-16 either way and all counted as stalls, the ridge
            # grew by 1e9, and Newton stopped with the gradient on the support at 2.5e-10
            # and the gap at 2.2e-9 (tol 1e-12); the outer loop then stalled there too.
            stalled = _support_residual(R, A, support, best[0], best[1]) >= float(np.linalg.norm(g))
        if best is not None:
            Zr, tr, f = best
        if stalled:
            # Exactly dependent columns make the system singular, and steps along its null
            # directions are then set by the ridge alone: damp them more (a Levenberg-
            # Marquardt ridge), up to 1e-6 of the largest curvature.
            stalls += 1
            if damping >= 1e9 or stalls > 6:
                break
            damping *= 1e3
            continue
        undamped = damping <= 1.0
        damping = max(1.0, damping * 1e-3)
        # Quadratic convergence: after a full step of relative size <= 1e-8 the error is
        # at rounding level (not after a step that a raised ridge kept short).
        if (
            undamped
            and alpha == 1.0
            and not np.any(cross)
            and np.max(np.abs(dx)) <= 1e-8 * max(float(np.max(np.abs(x))), 1e-300)
        ):
            break
    return Zr, tr, f


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _certificate(
    R: _Reduced, K: FloatArray, Y: FloatArray, Zr: FloatArray, tr: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, float, float, float]:
    """Full-coordinate ``(Z, t, V, primal, dual, max_score)`` over the columns of ``K``."""
    Z, t = R.expand(Zr, tr)
    t, U, V = dual_point(R.loss, K, Y, Z, t, R.fit_offset)
    primal = primal_value(R.loss, U, Y, Z, R.lam)
    scores = column_scores(K, V)
    max_score = float(scores.max()) if scores.size else 0.0
    dual = dual_bound(R.loss, V, Y, R.lam, max_score)
    return Z, t, V, primal, dual, max_score


#: Rows that may join the active set of one proximal Newton step: the worst violators, at
#: most ``max(MIN_NEW_ROWS, NEW_ROWS_FRACTION * support size)``. Block CD spreads weight over
#: every nearly collinear active row (measured: a 4-output squared problem on the 2-D
#: exhaustive dictionary went from 4 to 289 nonzero rows in three steps with all violators
#: admitted, and never recovered), so the support grows gradually instead.
MIN_NEW_ROWS = 10
NEW_ROWS_FRACTION = 0.25
#: Ratio of successive ``lam`` in the continuation of a cold start.
CONTINUATION_FACTOR = 0.25
#: Newton on the support runs after every proximal Newton step while the support has at
#: most this many unknowns (cheap), or the gap is at most ``NEWTON_GAP`` (the support is
#: nearly right: block CD would only crawl), and otherwise once the support stopped changing.
ALWAYS_NEWTON_VARS = 400
NEWTON_GAP = 1e-4
#: At gaps up to this the violating zero rows join the support at their block minimizers
#: (:func:`_add_violators`) rather than by a proximal Newton step, whose model decrease for
#: them is then near the rounding of the objective.
ADD_VIOLATORS_GAP = 1e-6
#: Every ``SLOW_WINDOW`` outer iterations the best gap must have shrunk by ``SLOW_FACTOR``,
#: else the loop returns its best point, so that the solver chain's fallback gets the time
#: left (iris with one feature x1e6, softmax: the group solver crawled on the restricted
#: programs, gap 0.13 after 1331 iterations, and the solve ended uncertified).
SLOW_WINDOW = 20
SLOW_FACTOR = 0.5
RIDGE = 1e-15

Certificate = tuple[FloatArray, FloatArray, FloatArray, float, float, float]


def group_prox_newton(
    K: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    *,
    fit_offset: bool = True,
    Z0: FloatArray | None = None,
    t0: FloatArray | None = None,
    tol: float = 1e-10,
    max_outer: int = 200,
    cd_sweeps: int = 100,
    max_time: float | None = None,
) -> ProgramSolution:
    """Squared-loss group Lasso or softmax program by proximal Newton + Newton on the support.

    Parameters
    ----------
    K : ndarray of shape (n, m)
        The (restricted) dictionary.
    Y : ndarray of shape (n, c)
        Encoded targets (one-hot for softmax).
    loss : Loss
        ``squared`` or ``softmax``.
    lam : float
    fit_offset : bool, default True
        Free output bias.
    Z0 : ndarray of shape (m, c), optional
        Warm start (any point), certified before any step: one whose gap is at most
        ``tol`` already is returned after no iteration. Without one (or with ``Z0 = 0``)
        the solver starts with a continuation in ``lam``: from ``lam_max / 4`` down by
        factors of 4, each stage solved to a gap of ``1e-4`` and warm-starting the next.
    t0 : ndarray of shape (c,), optional
        Warm start of the bias (softmax; refitted anyway).
    tol : float, default 1e-10
        Stop when the relative duality gap over the columns of ``K`` is at most ``tol``.
    max_outer : int, default 200
        Outer (proximal Newton) iterations per stage.
    cd_sweeps : int, default 100
        Coordinate-descent sweeps per model solve.
    max_time : float, optional
        Stop after about this many seconds with the best point so far (its gap is reported).

    Returns
    -------
    ProgramSolution
        ``solver="group-prox-newton"``, with the dual bound over the columns of ``K`` and
        ``V = -grad L`` at the returned point (refitted bias), the point with the smallest
        gap met. A run that stops early simply reports its (larger) gap, for the caller to
        decide; ``iterations`` counts the outer iterations of all stages.
    """
    if not (loss.quadratic or loss.shift_invariant):
        raise ValueError(
            f"group_prox_newton handles quadratic and shift-invariant (softmax) losses, "
            f"not {loss.name!r}"
        )
    start = time.perf_counter()
    K = np.asarray(K, dtype=float)
    Y = np.asarray(Y, dtype=float)
    n, m = K.shape
    c = Y.shape[1]
    if loss.shift_invariant and c < 2:
        raise ValueError(f"the {loss.name} loss needs at least 2 outputs")
    R = _Reduced(K, Y, loss, lam, fit_offset)
    Zr = np.zeros((m, R.cr)) if Z0 is None else np.asarray(Z0, dtype=float).reshape(m, c) @ R.Q
    tr = np.zeros(R.cr) if t0 is None else np.asarray(t0, dtype=float).reshape(c) @ R.Q

    def remaining() -> float | None:
        return None if max_time is None else max_time - (time.perf_counter() - start)

    outer = 0
    # One BLAS thread: the dense algebra here is small or medium sized, where threads add
    # little, and on a busy machine the spinning threads of OpenBLAS slow it down by an order
    # of magnitude (measured on 2 cores: a 300 x 300 Cholesky factor 15x, the 1300 x 159
    # products of the digits Hessian 7x).
    with one_blas_thread():
        tr = R.best_offset(Zr, tr)
        warm = bool(np.any(Zr))
        if not warm:
            # Cold start: continuation from the largest useful lam down. Each stage warm-
            # starts the next with a small support, where Newton converges in a few steps
            # (from zero at a small lam the quadratic models are poor and block CD spreads
            # weight over hundreds of collinear rows).
            G0 = R.grad(R.predict(Zr, tr))[0]
            stage = float(np.max(np.linalg.norm(R.Kd.T @ G0, axis=1))) * CONTINUATION_FACTOR
            while stage > lam:
                left = remaining()
                if left is not None and left <= 0:
                    break
                R.lam = stage
                Zr, tr, _, its = _solve_loop(R, K, Y, Zr, tr, 1e-4, max_outer, cd_sweeps, left)
                outer += its
                stage *= CONTINUATION_FACTOR
            R.lam = float(lam)
        # A warm start is certified before any step: one at the optimum returns at once
        # (rather than after a step whose changes at rounding level could only blur it).
        Zr, tr, best, its = _solve_loop(
            R, K, Y, Zr, tr, tol, max_outer, cd_sweeps, remaining(), check_start=warm
        )
        outer += its
    Z, t, V, primal, dual, max_score = best
    return ProgramSolution(
        Z=Z,
        t=t,
        V=V,
        primal=primal,
        dual=dual,
        max_score=max_score,
        solve_time=time.perf_counter() - start,
        iterations=outer,
        solver="group-prox-newton",
    )


def _solve_loop(
    R: _Reduced,
    K: FloatArray,
    Y: FloatArray,
    Zr: FloatArray,
    tr: FloatArray,
    tol: float,
    max_outer: int,
    cd_sweeps: int,
    max_time: float | None,
    check_start: bool = False,
) -> tuple[FloatArray, FloatArray, Certificate, int]:
    """Proximal Newton steps + Newton on the support until the gap is at most ``tol``.

    Returns the last point, the certificate ``(Z, t, V, primal, dual, max_score)`` of the
    point with the smallest gap, and the number of outer iterations. Also stops after
    ``max_time`` seconds, or when neither a more accurate model solve nor five more
    iterations improve the gap or the objective, or when ``SLOW_WINDOW`` iterations did not
    halve the best gap (``SLOW_FACTOR``). With ``check_start`` (a warm start) the
    start point is certified first, and returned after no iteration if its gap is at most
    ``tol``.

    Once the gap is at most ``ADD_VIOLATORS_GAP`` the zero rows that violate their
    condition join the support at their block minimizers (:func:`_add_violators`) instead
    of through a proximal Newton step, and Newton on the support balances them; after
    such a step that did not lower the gap, the next step is a proximal Newton step again.
    """
    start = time.perf_counter()
    lam = R.lam
    f = R.objective(Zr, tr)
    best: Certificate | None = None
    best_gap = np.inf
    if check_start:
        best = _certificate(R, K, Y, Zr, tr)
        best_gap = relative_gap(best[3], best[4])
        if best_gap <= tol:
            return Zr, tr, best, 0
    since_best = 0
    window_gap = np.inf  # the best gap SLOW_WINDOW iterations ago
    f_last = f
    prev_support: IntArray | None = None
    rel_tol = 1e-4
    n_iter = 0
    added_in_vain = False
    while n_iter < max_outer:
        n_iter += 1
        Gr, Hs, P = R.derivatives(R.predict(Zr, tr))
        scores = np.linalg.norm(R.Kd.T @ Gr, axis=1)
        nonzero = np.any(Zr != 0, axis=1)
        violators = np.flatnonzero((~nonzero) & (scores > lam * (1 + 1e-12)))
        limit = max(MIN_NEW_ROWS, int(NEW_ROWS_FRACTION * np.count_nonzero(nonzero)))
        if violators.size > limit:
            violators = violators[np.argsort(-scores[violators])[:limit]]
        added = False
        unknowns = (np.count_nonzero(nonzero) + violators.size + int(R.offset_var)) * R.cr
        if (
            best_gap <= ADD_VIOLATORS_GAP
            and violators.size > 0
            and not added_in_vain
            and unknowns <= SUPPORT_NEWTON_VARS
        ):
            Zr, tr, f, added = _add_violators(R, Zr, tr, f, Gr, Hs, violators)
        if added:
            moved = True
            Zr, tr, f = _support_newton(R, Zr, tr, f)
            support = np.flatnonzero(np.any(Zr != 0, axis=1))
        else:
            active = np.union1d(np.flatnonzero(nonzero), violators).astype(np.int64)
            Zr, tr, f, moved = _prox_newton_step(
                R, Zr, tr, f, Gr, Hs, P, active, cd_sweeps, rel_tol
            )
            support = np.flatnonzero(np.any(Zr != 0, axis=1))
            stable = prev_support is not None and np.array_equal(support, prev_support)
            if (
                stable
                or not moved
                or support.size * R.cr <= ALWAYS_NEWTON_VARS
                or best_gap <= NEWTON_GAP
            ):
                Zr, tr, f = _support_newton(R, Zr, tr, f)
                support = np.flatnonzero(np.any(Zr != 0, axis=1))
        prev_support = support
        tr = R.best_offset(Zr, tr)
        f = R.objective(Zr, tr)
        cert = _certificate(R, K, Y, Zr, tr)
        gap = relative_gap(cert[3], cert[4])
        improved = best is None or gap < best_gap
        progress = improved or f < f_last - 1e-12 * abs(f_last)
        if improved:
            best, best_gap = cert, gap
        added_in_vain = added and not improved
        since_best = 0 if progress else since_best + 1
        f_last = min(f_last, f)
        if gap <= tol or since_best >= 5:
            break
        if n_iter % SLOW_WINDOW == 0:
            if best_gap > SLOW_FACTOR * window_gap:
                # Crawling (columns in very different units make the models poor): return
                # the best point, so that the solver chain's fallback gets the time left.
                break
            window_gap = best_gap
        if not moved:
            # The model step made no progress: ask the inner solver for more accuracy.
            rel_tol *= 0.01
            if rel_tol < 1e-14:
                break
        if max_time is not None and time.perf_counter() - start > max_time:
            break
    assert best is not None
    return Zr, tr, best, n_iter
