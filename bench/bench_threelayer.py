"""Certified three-layer solves (Theorems 12 and 13) against CLARABEL, and three vs two layers.

Table 1: for each (d, n, first-layer bias), the certified solve of
:func:`wedgenet.solve_three_layer` (enumeration, streamed pricing, column generation,
independent re-check) against cvxpy/CLARABEL on the materialized dictionary (the distinct
canonical columns, :meth:`ThreeLayerDictionary.materialize`; its build time is shown
separately and not counted in CLARABEL's time). CLARABEL is skipped where the estimated
dictionary has more than ``--clarabel-entries`` entries (n x columns; measured about 5 s per
million entries here, so the default 25 million is about two minutes).

Table 2: on the same data (``y = sin(2 x_1) + relu(x_d) / 2 + noise``), the three-layer
networks (with and without first-layer biases) against the certified two-layer network of
:func:`wedgenet.solve` (``p = 1``, biased neurons, Theorem 16) at the same ``lam``: training
objective, test mean squared error (1000 fresh samples), blocks / neurons, seconds.

    python bench/bench_threelayer.py [--quick] [--clarabel-entries 25e6]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import wedgenet as wn
from wedgenet.losses import get_loss
from wedgenet.solvers.conic import solve_cvxpy
from wedgenet.threelayer import ThreeLayerDictionary, n_direction_subsets

warnings.filterwarnings("ignore")

LAM_PER_SAMPLE = 0.005  # lam = LAM_PER_SAMPLE * n (the loss is summed)


def data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2.0 * X[:, 0]) + 0.5 * np.maximum(X[:, -1], 0.0) + 0.1 * rng.normal(size=n)
    return X, y


def estimated_columns(n: int, d: int, bias: bool) -> int:
    """Distinct canonical columns, roughly: 2n ReLUs and n^2/2 ramps (Thm 13) or 4n
    (Thm 12) per direction."""
    per = 2 * n + (n * n // 2 if bias else 2 * n)
    return n_direction_subsets(n, d, bias=bias) * per


def table_clarabel(cases: list[tuple[int, int]], max_entries: float) -> None:
    head = (f"{'d':>2} {'n':>4} {'bias':>5} {'directions':>10} {'columns':>12} "
            f"{'three-layer s':>13} {'cert':>5} {'gap':>8} {'build s':>8} "
            f"{'CLARABEL s':>10} {'ratio':>7} {'rel. diff':>9}")
    print(head)
    print("-" * len(head))
    for d, n in cases:
        for bias in (False, True):
            X, y = data(n, d)
            lam = LAM_PER_SAMPLE * n
            t0 = time.perf_counter()
            res = wn.solve_three_layer(X, y, lam=lam, bias=bias)
            t3 = time.perf_counter() - t0
            est = estimated_columns(n, d, bias)
            cols, tb, tc, ratio, diff = "-", "-", "skipped", "-", "-"
            if est * n <= max_entries:
                t0 = time.perf_counter()
                _, K = ThreeLayerDictionary(X, bias=bias).materialize(max_columns=None)
                tb = f"{time.perf_counter() - t0:.2f}"
                t0 = time.perf_counter()
                ref = solve_cvxpy(K, y[:, None], get_loss("squared"), lam)
                secs = time.perf_counter() - t0
                cols, tc = f"{K.shape[1]:,}", f"{secs:.2f}"
                ratio = f"{secs / t3:.0f}x"
                diff = f"{(res.primal_objective - ref.primal) / abs(ref.primal):+.1e}"
            else:
                cols = f"~{est:,}"
            print(f"{d:>2} {n:>4} {str(bias):>5} {res.n_directions:>10,} {cols:>12} "
                  f"{t3:>13.2f} {str(res.certified):>5} {res.relative_gap:>8.1e} {tb:>8} "
                  f"{tc:>10} {ratio:>7} {diff:>9}", flush=True)


def table_layers(cases: list[tuple[int, int]]) -> None:
    head = (f"{'d':>2} {'n':>4} {'model':<28} {'objective':>10} {'test MSE':>9} "
            f"{'units':>5} {'cert':>5} {'s':>7}")
    print(head)
    print("-" * len(head))
    for d, n in cases:
        X, y = data(n, d)
        Xt, yt = data(1000, d, seed=1)
        lam = LAM_PER_SAMPLE * n
        rows = []
        for bias in (True, False):
            t0 = time.perf_counter()
            r3 = wn.solve_three_layer(X, y, lam=lam, bias=bias)
            label = "three-layer, Thm 13 (bias)" if bias else "three-layer, Thm 12 (no b1)"
            rows.append((label, r3.primal_objective, r3.decision_function(Xt),
                         len(r3.blocks), r3.certified, time.perf_counter() - t0))
        t0 = time.perf_counter()
        r2 = wn.solve(X, y, lam=lam, p=1, bias=True)
        rows.append(("two-layer, Thm 16 (p = 1)", r2.primal_objective,
                     r2.network.decision_function(Xt), len(r2.network.neurons), r2.certified,
                     time.perf_counter() - t0))
        for label, obj, pred, units, cert, secs in rows:
            mse = float(np.mean((pred - yt) ** 2))
            print(f"{d:>2} {n:>4} {label:<28} {obj:>10.5f} {mse:>9.5f} {units:>5} "
                  f"{str(cert):>5} {secs:>7.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cases only")
    ap.add_argument("--clarabel-entries", type=float, default=25e6,
                    help="skip CLARABEL above this many dictionary entries (n x columns)")
    args = ap.parse_args()
    wn.solve_three_layer(*data(8, 2), lam=0.05)  # compile / load the kernels first
    solve_cvxpy(np.eye(3), np.ones((3, 1)), get_loss("squared"), 0.1)  # import cvxpy first
    if args.quick:
        cases1 = [(1, 20), (2, 20), (3, 12)]
        cases2 = [(1, 50), (2, 30)]
    else:
        cases1 = [(1, 20), (1, 50), (1, 100), (1, 200), (2, 20), (2, 50), (2, 100), (2, 200),
                  (3, 20), (3, 40)]
        cases2 = [(1, 200), (2, 100), (2, 200), (3, 40)]
    print(f"Certified three-layer solves vs CLARABEL (lam = {LAM_PER_SAMPLE} n, squared loss)")
    table_clarabel(cases1, args.clarabel_entries)
    print()
    print("Three layers vs two layers on the same data and lam")
    table_layers(cases2)


if __name__ == "__main__":
    main()
