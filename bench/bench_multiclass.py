"""Vector outputs: the working set with the group solvers against cvxpy/CLARABEL.

Three parts, each printed as a table (objective, relative gap, seconds, time ratio):

1. 3-class softmax, n = 60 in 2-D (three Gaussian blobs, seed 0), exhaustive dictionary
   (p = 1, biased neurons), lam = 0.1 and 0.01: ``wedgenet.solve(..., solver="workingset")``
   against ``wedgenet.solve(..., solver="cvxpy")`` (CLARABEL over the whole dictionary).
2. Squared loss with 4 outputs on the same points, the same two solvers.
3. One restricted softmax program of digits size: ``sklearn.datasets.load_digits``
   standardized, n = 1300 (seeded subset), 10 classes, ``K = relu(X W + b)`` for 500 random
   hyperplanes (unit normals, offsets N(0, 0.25)); lam = 5 and 1;
   :func:`wedgenet.solvers.groupsolve.group_prox_newton` cold and warm-started (from the optimum
   over the first 80% of the columns, as column generation warm-starts) against
   :func:`wedgenet.solvers.conic.solve_cvxpy` (CLARABEL); then the same with 2000 hyperplanes,
   without CLARABEL.

    python bench/bench_multiclass.py [--quick]

``--quick`` skips CLARABEL on the digits program (about half an hour on 2 busy cores).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import wedgenet as wn
from wedgenet.losses import get_loss
from wedgenet.programs import relative_gap
from wedgenet.solvers.conic import solve_cvxpy
from wedgenet.solvers.groupsolve import group_prox_newton

warnings.filterwarnings("ignore")


def blobs(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in the plane, classes 0, 1, 2 in turn."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 1.0], [-0.9, -0.5], [0.9, -0.5]])
    y = np.arange(n) % 3
    return centers[y] + 0.6 * rng.standard_normal((n, 2)), y


def four_targets(X: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Y = np.c_[np.sin(2 * X[:, 0]), np.cos(X[:, 1]), X[:, 0] * X[:, 1], np.abs(X[:, 0]) - X[:, 1]]
    return np.asarray(Y + 0.1 * rng.standard_normal(Y.shape))


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = call()
    return out, time.perf_counter() - t0


def table(title: str, rows: list[tuple[str, float, float, str, float]]) -> None:
    """Rows ``(solver, objective, gap, certified, seconds)``; the first is the reference
    for the objective difference, the last one for the time ratio."""
    print(f"\n{title}")
    print(
        f"{'solver':34s} {'objective':>20s} {'rel. gap':>9s} {'cert.':>5s} "
        f"{'seconds':>8s} {'ratio':>7s} {'rel. diff':>9s}"
    )
    ref_obj = rows[0][1]
    ref_time = rows[-1][4]
    for name, obj, gap, cert, sec in rows:
        diff = (obj - ref_obj) / abs(ref_obj)
        print(
            f"{name:34s} {obj:20.12f} {gap:9.1e} {cert:>5s} {sec:8.2f} "
            f"{sec / ref_time:7.3f} {diff:9.1e}",
            flush=True,
        )


def solve_pair(X: np.ndarray, y: np.ndarray, loss: str, lam: float) -> None:
    fast, t_fast = timed(lambda: wn.solve(X, y, loss=loss, lam=lam, solver="workingset"))
    ref, t_ref = timed(lambda: wn.solve(X, y, loss=loss, lam=lam, solver="cvxpy"))
    c = len(np.unique(y)) if loss == "softmax" else y.shape[1]
    table(
        f"{loss}, n = {X.shape[0]}, c = {c}, lam = {lam}: exhaustive dictionary of "
        f"{fast.n_columns} columns, {len(fast.history)} outer iterations",
        [
            (
                "workingset (group solvers)",
                fast.primal_objective,
                fast.relative_gap,
                str(fast.certified),
                t_fast,
            ),
            (
                "cvxpy/CLARABEL (whole dictionary)",
                ref.primal_objective,
                ref.relative_gap,
                str(ref.certified),
                t_ref,
            ),
        ],
    )


def digits_program(
    n: int = 1300, n_planes: int = 500, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))[:n]
    X, y = X[idx], y[idx]
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-12)
    W = rng.standard_normal((X.shape[1], n_planes))
    W /= np.linalg.norm(W, axis=0)
    b = 0.5 * rng.standard_normal(n_planes)
    K = np.maximum(X @ W + b, 0.0)
    Y, _ = get_loss("softmax").encode(y)
    return K, Y


def digits(lam: float, clarabel: bool, n_planes: int = 500) -> None:
    K, Y = digits_program(n_planes=n_planes)
    loss = get_loss("softmax")
    m = K.shape[1]
    tol = 1e-8
    cold, t_cold = timed(lambda: group_prox_newton(K, Y, loss, lam, tol=tol))
    part = group_prox_newton(K[:, : int(0.8 * m)], Y, loss, lam, tol=tol)
    Z0 = np.vstack([part.Z, np.zeros((m - part.Z.shape[0], Y.shape[1]))])
    warm, t_warm = timed(lambda: group_prox_newton(K, Y, loss, lam, Z0=Z0, t0=part.t, tol=tol))
    rows = [
        ("group-prox-newton, cold", cold.primal, cold.gap, "", t_cold),
        ("group-prox-newton, warm", warm.primal, warm.gap, "", t_warm),
    ]
    support = int(np.count_nonzero(np.any(cold.Z != 0, axis=1)))
    if clarabel:
        ref, t_ref = timed(lambda: solve_cvxpy(K, Y, loss, lam))
        rows.append(("cvxpy/CLARABEL", ref.primal, relative_gap(ref.primal, ref.dual), "", t_ref))
    table(
        f"digits restricted softmax: n = {K.shape[0]}, c = {Y.shape[1]}, m = {m}, lam = {lam}"
        f" (support {support} rows; gaps over these m columns)",
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="no CLARABEL on digits")
    args = parser.parse_args()
    X, y = blobs()
    # Compile (or load from numba's cache) the kernels outside the timings.
    wn.solve(X[:12], y[:12], loss="softmax", lam=0.1)
    wn.solve(X[:12], four_targets(X[:12]), loss="squared", lam=0.1)
    for lam in (0.1, 0.01):
        solve_pair(X, y, "softmax", lam)
    Y4 = four_targets(X)
    for lam in (0.1, 0.01):
        solve_pair(X, Y4, "squared", lam)
    for lam in (5.0, 1.0):
        digits(lam, clarabel=not args.quick)
    # A working set of 2000 columns (CLARABEL not run: hours).
    for lam in (5.0, 1.0):
        digits(lam, clarabel=False, n_planes=2000)


if __name__ == "__main__":
    main()
