"""Solver comparison on wedge dictionaries (issue 2): time ratio at equal objective.

Runs, in one process and on the same materialized dictionary, the wedgenet working-set
path (`solve(..., solver="workingset")`, which prices the dictionary streamed), cvxpy with
CLARABEL, and scikit-learn / celer / skglm Lasso (alpha = lam / n, since they average the
loss). Prints one table per problem: seconds, ratio to the working-set path, and the relative
objective difference to the CLARABEL reference.

    python bench/bench_solvers.py [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import wedgenet as wn
from wedgenet.dictionary import WedgeDictionary, features
from wedgenet.losses import get_loss
from wedgenet.pricing import MaterializedColumns
from wedgenet.solvers.conic import solve_cvxpy
from wedgenet.workingset import solve_working_set

warnings.filterwarnings("ignore")


def two_spirals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.5, 3 * np.pi, n // 2)
    a = np.c_[t * np.cos(t), t * np.sin(t)] / 5 + 0.01 * rng.standard_normal((n // 2, 2))
    return np.r_[a, -a], np.r_[np.ones(n // 2), -np.ones(n // 2)]


def lasso_objective(K: np.ndarray, y: np.ndarray, z: np.ndarray, t: float, lam: float) -> float:
    return 0.5 * float(np.sum((K @ z + t - y) ** 2)) + lam * float(np.abs(z).sum())


def run_problem(  # type: ignore[no-untyped-def]
    name: str, K: np.ndarray, y: np.ndarray, lam: float, ws_call, cd: bool = True
) -> None:
    n = K.shape[0]
    rows = []
    t0 = time.perf_counter()
    ref = solve_cvxpy(K, y[:, None], get_loss("squared"), lam)
    rows.append(("cvxpy/CLARABEL", time.perf_counter() - t0, ref.primal))
    t0 = time.perf_counter()
    ws = ws_call()
    rows.insert(0, ("wedgenet workingset", time.perf_counter() - t0, ws.primal_objective))
    # The same working-set solver handed the materialized matrix, like the CD solvers below:
    # solver against solver, without building or pricing the wedge dictionary.
    t0 = time.perf_counter()
    mat = solve_working_set(MaterializedColumns(K), y[:, None], get_loss("squared"), lam)
    rows.insert(1, ("wedgenet workingset (given K)", time.perf_counter() - t0, mat.solution.primal))
    from sklearn.linear_model import Lasso

    for label, make in [] if not cd else [
        ("scikit-learn Lasso", lambda: Lasso(alpha=lam / n, tol=1e-8, max_iter=2000)),
        ("celer Lasso", lambda: __import__("celer").Lasso(alpha=lam / n, tol=1e-8, max_iter=1000)),
        ("skglm Lasso", lambda: __import__("skglm").Lasso(alpha=lam / n, tol=1e-8, max_iter=1000)),
    ]:
        try:
            model = make()
            t0 = time.perf_counter()
            model.fit(K, y)
            dt = time.perf_counter() - t0
            rows.append((label, dt, lasso_objective(K, y, model.coef_, model.intercept_, lam)))
        except Exception as exc:  # noqa: BLE001 - report, keep benchmarking
            rows.append((f"{label} (failed: {type(exc).__name__})", float("nan"), float("nan")))
    base = rows[0][1]
    print(f"\n{name}: n={K.shape[0]}, columns={K.shape[1]}, lam={lam}")
    print(f"{'solver':28s} {'seconds':>9s} {'time/ws':>9s} {'rel. objective - ref':>22s}")
    for label, dt, obj in rows:
        print(
            f"{label:28s} {dt:9.3f} {dt / base:9.2f} {(obj - ref.primal) / abs(ref.primal):22.2e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller problems")
    ap.add_argument("--problems", default="spirals,gaussian",
                    help="comma-separated subset of spirals, gaussian, logistic, hinge")
    ap.add_argument("--spiral-n", type=int, default=100, help="two-spirals size (issue: 160)")
    ap.add_argument("--no-cd", action="store_true", help="skip scikit-learn, celer and skglm")
    args = ap.parse_args()
    # Warm up numba once so compile time is not charged to the first problem.
    wn.solve(np.random.default_rng(0).standard_normal((8, 2)), np.arange(8.0), lam=0.1)

    problems = set(args.problems.split(","))
    n = 60 if args.quick else args.spiral_n
    X, y = two_spirals(n)
    lam = 0.05
    D = WedgeDictionary(X, p=1, bias=True)
    K = features(X, D.atoms().normals)
    K = K[:, np.any(K > 0, axis=0)]
    if "spirals" in problems:
        run_problem(
            "two spirals (biased l1 pair dictionary, d=2)",
            K,
            y,
            lam,
            lambda: wn.solve(X, y, lam=lam, p=1, bias=True, solver="workingset"),
            cd=not args.no_cd,
        )
    for closs in [c for c in ("logistic", "hinge") if c in problems]:
        # Classification: the logistic program (proximal Newton + active set on the working
        # sets) or the hinge program (linear programs by HiGHS) against cvxpy/CLARABEL on the
        # materialized dictionary (its build included).
        print(f"\ntwo spirals, {closs} loss (biased l1 pair dictionary, d=2), lam={lam}")
        print(f"{'n':>5s} {'columns':>8s} {'cvxpy s':>8s} {'workingset s':>12s} {'ratio':>7s} "
              f"{'rel. obj diff':>13s} {'cvxpy gap':>9s} {'ws gap':>9s}")
        for nl in [60, 100, 160] if not args.quick else [40, 60]:
            Xl, yl = two_spirals(nl)
            t0 = time.perf_counter()
            ref = wn.solve(Xl, yl, loss=closs, lam=lam, p=1, bias=True, solver="cvxpy")
            t_ref = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = wn.solve(Xl, yl, loss=closs, lam=lam, p=1, bias=True, solver="workingset")
            t_ws = time.perf_counter() - t0
            diff = (got.primal_objective - ref.primal_objective) / ref.primal_objective
            print(f"{nl:5d} {ref.n_columns:8d} {t_ref:8.2f} {t_ws:12.3f} {t_ref / t_ws:7.1f} "
                  f"{diff:13.1e} {ref.relative_gap:9.1e} {got.relative_gap:9.1e}")
    if "gaussian" not in problems:
        return

    # Gaussian dictionary: K = relu(G) with G Gaussian (a sampled bias-free dictionary).
    rng = np.random.default_rng(1)
    n, m = (100, 5000) if args.quick else (200, 20000)
    Xg = rng.standard_normal((n, 8))
    yg = np.tanh(Xg[:, 0]) + 0.1 * rng.standard_normal(n)
    Dg = WedgeDictionary(Xg, p=2, bias=False, source="sample", n_hyperplanes=m // 2, seed=0)
    Kg = features(Xg, Dg.atoms().normals)
    lam_g = 0.1 * float(np.max(np.abs(Kg.T @ (yg - yg.mean()))))
    run_problem(
        "Gaussian d=8, sampled l2 bias-free dictionary",
        Kg,
        yg,
        lam_g,
        lambda: wn.solve(
            Xg,
            yg,
            lam=lam_g,
            p=2,
            bias=False,
            source="sample",
            n_columns=m // 2,
            solver="workingset",
        ),
        cd=not args.no_cd,
    )


if __name__ == "__main__":
    main()
