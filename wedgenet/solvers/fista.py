"""Accelerated proximal gradient (FISTA) with adaptive restarts: a slow but robust solver of
the program for smooth losses, the fallback of last resort when the others fail."""

from __future__ import annotations

import math
import time

import numpy as np
from numpy.typing import NDArray

from wedgenet.programs import Program, ProgramSolution, group_norms

FloatArray = NDArray[np.float64]


def fista(program: Program, tol: float, max_iter: int = 20000) -> ProgramSolution:
    """FISTA on ``program`` (smooth loss) from ``Z = 0``.

    Every 100 iterations the point is finished by :meth:`Program.finish` (Newton on the
    support, dual bound over all columns) and the loop stops at relative gap ``tol``. The
    step is ``1 / (curvature * ||[K, 1]||_2^2)`` with the loss's
    :attr:`~wedgenet.losses.Loss.curvature`.
    """
    start = time.perf_counter()
    K, Y, loss, lam, fit_offset = (
        program.K, program.Y, program.loss, program.lam, program.fit_offset,
    )
    n, M = K.shape
    c = Y.shape[1]
    A = np.concatenate([K, np.ones((n, 1))], axis=1) if fit_offset else K
    Lip = loss.curvature * float(np.linalg.norm(A, 2)) ** 2
    step = 1.0 / max(Lip, 1e-300)
    Z = np.zeros((M, c))
    t = np.zeros(c)
    if fit_offset:
        t = loss.optimal_offset(np.zeros((n, c)), Y, t)
    Zy, ty, Zo, to = Z.copy(), t.copy(), Z.copy(), t.copy()
    theta = 1.0
    f_old = program.objective(Z, t)
    best: ProgramSolution | None = None
    for it in range(1, max_iter + 1):
        G = loss.grad(K @ Zy + ty, Y)
        Zn = Zy - step * (K.T @ G)
        norms = group_norms(Zn)
        shrink = np.maximum(0.0, 1.0 - step * lam / np.where(norms > 0, norms, 1.0))
        Zn *= shrink[:, None]
        tn = ty - step * G.sum(axis=0) if fit_offset else ty
        f_new = program.objective(Zn, tn)
        if f_new > f_old:  # adaptive restart
            theta = 1.0
            Zy, ty = Z.copy(), t.copy()
            continue
        theta_n = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * theta * theta))
        mom = (theta - 1.0) / theta_n
        Zo, to = Z, t
        Z, t, f_old, theta = Zn, tn, f_new, theta_n
        Zy = Z + mom * (Z - Zo)
        ty = t + mom * (t - to)
        if it % 100 == 0 or it == max_iter:
            cand = program.finish(Z.copy(), t.copy(), start, "fista", it)
            if best is None or cand.primal < best.primal:
                best = cand
            if cand.gap <= tol:
                break
    if best is None:  # every step restarted: the start is the best point met
        best = program.finish(Z, t, start, "fista", max_iter)
    return best
