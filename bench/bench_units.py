"""A feature in other units: certified solves when one feature is scaled by 1e3 .. 1e7.

Run: ``.venv/bin/python bench/bench_units.py``

Gaussian data (n = 20, d = 3, biased dictionary, ``lam = 0.1``) with feature 0 multiplied by
``factor``: the exact dictionary's column norms then span many orders of magnitude (1e-16 to
1e8 at x1e7). For the squared loss (a Gaussian target) and the logistic loss (+-1 labels),
``p = 1`` and ``p = 2``, each row runs, side by side in this process, the fast path
(``solver="workingset"``) and the reference (``solver="cvxpy"``, CLARABEL over the
materialized dictionary), and prints the objective, the relative gap, whether the result is
certified, and the time. Objectives change with the factor (the weights' norm is not unit
free), so compare the two solvers within a row.
"""

from __future__ import annotations

import time

import numpy as np

import wedgenet as wn


def case(loss: str, factor: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    z = rng.standard_normal(20)
    X[:, 0] *= factor
    return X, (z if loss == "squared" else np.where(z > 0, 1.0, -1.0))


def run(X: np.ndarray, y: np.ndarray, loss: str, p: int, solver: str) -> str:
    t0 = time.perf_counter()
    try:
        r = wn.solve(X, y, loss=loss, p=p, bias=True, lam=0.1, solver=solver)
    except Exception as exc:  # the reference may fail outright on these scales
        return f"{'failed: ' + type(exc).__name__:>36} {time.perf_counter() - t0:7.2f}"
    cert = "yes" if r.certified else "no"
    return (f"{r.primal_objective:14.9g} {r.relative_gap:9.1e} {cert:>4} "
            f"{time.perf_counter() - t0:7.2f}")


def main() -> None:
    head = f"{'objective':>14} {'gap':>9} {'cert':>4} {'time s':>7}"
    print(f"{'loss':9} {'p':>2} {'factor':>7} | workingset: {head} | cvxpy: {head}")
    for loss in ("squared", "logistic"):
        for p in (1, 2):
            for factor in (1.0, 1e3, 1e6, 1e7):
                X, y = case(loss, factor)
                ws = run(X, y, loss, p, "workingset")
                ref = run(X, y, loss, p, "cvxpy")
                print(f"{loss:9} {p:>2} {factor:7.0e} | {'':12}{ws} | {'':7}{ref}")


if __name__ == "__main__":
    main()
