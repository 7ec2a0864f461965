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

A second table: real tables cut to 2-3 features in their own units (wine's alcohol,
magnesium and proline; diabetes' age and binary sex, also x1e5; iris' sepal with one column
x1e6), ``p = 1``, ``lam = 1``, exact dictionary, fast path only (60 s limit).
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


def real_tables() -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """Real tables cut to 2-3 features in their own units (exact dictionary: certifiable)."""
    from sklearn.datasets import load_diabetes, load_iris, load_wine

    Xw, yw = load_wine(return_X_y=True)
    Xd, yd = load_diabetes(return_X_y=True, scaled=False)
    Xi, yi = load_iris(return_X_y=True)
    sex_1e5 = Xd[:, :2].copy()
    sex_1e5[:, 1] *= 1e5
    sepal_1e6 = Xi[:, :2].copy()
    sepal_1e6[:, 0] *= 1e6
    return [
        ("wine alcohol, magnesium, proline", Xw[:, [0, 4, 12]], yw, "softmax"),
        ("diabetes age, sex (binary)", Xd[:, :2], yd, "squared"),
        ("diabetes age, sex x1e5", sex_1e5, yd, "squared"),
        ("iris sepal, length x1e6", sepal_1e6, yi, "softmax"),
    ]


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
    print(f"\n{'real table (p = 1, lam = 1)':34} {'loss':8} | workingset: {head} neurons")
    for name, X, y, loss in real_tables():
        t0 = time.perf_counter()
        try:
            r = wn.solve(X, y, loss=loss, lam=1.0, max_time=60)
        except Exception as exc:
            print(f"{name:34} {loss:8} | failed: {type(exc).__name__}: {exc}")
            continue
        cert = "yes" if r.certified else "no"
        print(f"{name:34} {loss:8} | {'':12}{r.primal_objective:14.9g} {r.relative_gap:9.1e} "
              f"{cert:>4} {time.perf_counter() - t0:7.2f} {len(r.network.neurons):7d}")


if __name__ == "__main__":
    main()
