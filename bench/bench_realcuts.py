"""A sweep over random cuts of real tables: certified solves against the cvxpy reference.

Run: ``.venv/bin/python bench/bench_realcuts.py [--trials 40] [--seed 0]``

Each trial takes one of scikit-learn's tables (iris, wine, breast_cancer, diabetes in its
own units, linnerud, digits with its labels mod 3), a random subset of its rows (n = 25-80
for two features, 20-35 for three), two or three random columns, in their own units or
standardized, ``p`` = 1 or 2, a biased dictionary and ``lam`` log-uniform in [0.01, 3], with
the table's natural loss (softmax, logistic or squared). Side by side in this process it
runs the fast path (``solver="auto"``) and the reference (``solver="cvxpy"``: CLARABEL over
the materialized exact dictionary), and prints both objectives, their relative difference,
the fast path's relative gap and certificate, and the time ratio. The summary line counts
the certified results and gives the largest objective difference where both are certified.

The cuts are where the exact dictionary can be enumerated (d = 2-3): they test the engine
on real columns (binary, constant-heavy, tiny or huge units, ties), not its reach.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

import wedgenet as wn

Table = tuple[np.ndarray, np.ndarray, str]


def tables() -> dict[str, Callable[[], Table]]:
    from sklearn import datasets as ds

    def digits() -> Table:
        X, y = ds.load_digits(return_X_y=True)
        return X, y % 3, "softmax"

    def linnerud() -> Table:
        b = ds.load_linnerud()
        return b.data, b.target[:, 0], "squared"

    return {
        "iris": lambda: (*ds.load_iris(return_X_y=True), "softmax"),
        "wine": lambda: (*ds.load_wine(return_X_y=True), "softmax"),
        "breast_cancer": lambda: (*ds.load_breast_cancer(return_X_y=True), "logistic"),
        "diabetes": lambda: (*ds.load_diabetes(return_X_y=True, scaled=False), "squared"),
        "linnerud": linnerud,
        "digits": digits,
    }


@dataclass
class Cut:
    name: str
    X: np.ndarray
    y: np.ndarray
    loss: str
    cols: list[int]
    std: bool
    p: int
    lam: float


def draw(rng: np.random.Generator, name: str, table: Table) -> Cut | None:
    X, y, loss = table
    d = int(rng.integers(2, 4))
    n = min(len(y), int(rng.integers(25, 81) if d == 2 else rng.integers(20, 36)))
    rows = rng.choice(len(y), n, replace=False)
    cols = np.sort(rng.choice(X.shape[1], d, replace=False))
    Xc, yc = X[rows][:, cols].astype(float), y[rows]
    classes = np.unique(yc).size
    if loss != "squared":
        if classes < 2:
            return None
        loss = "logistic" if classes == 2 else "softmax"
    if np.linalg.matrix_rank(Xc - Xc.mean(axis=0)) == 0:
        return None  # every sample alike: refused by the engine with a clear error
    standardized = bool(rng.integers(2))
    if standardized:
        scale = Xc.std(axis=0)
        Xc = (Xc - Xc.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    return Cut(name, Xc, yc, loss, cols.tolist(), standardized, int(rng.integers(1, 3)),
               float(10 ** rng.uniform(-2, np.log10(3))))


def timed(case: Cut, solver: Literal["auto", "cvxpy"]) -> tuple[wn.SolveResult | None, float, str]:
    t0 = time.perf_counter()
    try:
        r = wn.solve(case.X, case.y, loss=case.loss, p=case.p, bias=True, lam=case.lam,
                     solver=solver)
    except Exception as exc:  # reported in the row: the sweep goes on
        return None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:60]
    return r, time.perf_counter() - t0, ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # cvxpy's "solution may be inaccurate" on raw units
    rng = np.random.default_rng(args.seed)
    loaded = {name: load() for name, load in tables().items()}
    names = list(loaded)
    print(f"{'#':>3} {'table':13} {'cols':12} {'n':>3} {'loss':8} p std {'lam':>6} | "
          f"{'wedgenet':>14} {'gap':>8} cert | {'cvxpy':>14} {'cert':>4} | "
          f"{'rel diff':>8} {'time ratio':>10}")
    certified = reference_certified = both = 0
    worst = 0.0
    ratios: list[float] = []
    done = 0
    while done < args.trials:
        case = draw(rng, names[done % len(names)], loaded[names[done % len(names)]])
        if case is None:
            continue
        fast, t_fast, err_fast = timed(case, "auto")
        ref, t_ref, err_ref = timed(case, "cvxpy")
        head = (f"{done:3d} {case.name:13} {str(case.cols):12} {len(case.y):3d} "
                f"{case.loss:8} {case.p} {'y' if case.std else 'n':>3} {case.lam:6.3f} | ")
        left = (f"{fast.primal_objective:14.8g} {fast.relative_gap:8.1e} "
                f"{'yes' if fast.certified else 'no':>4} | " if fast else f"{err_fast:>29} | ")
        right = (f"{ref.primal_objective:14.8g} {'yes' if ref.certified else 'no':>4} | "
                 if ref else f"{err_ref:>19} | ")
        tail = ""
        if fast and ref:
            diff = (fast.primal_objective - ref.primal_objective) / max(
                abs(ref.primal_objective), 1e-300)
            ratios.append(t_ref / max(t_fast, 1e-9))
            tail = f"{diff:8.1e} {ratios[-1]:10.1f}"
            if fast.certified and ref.certified:
                both += 1
                worst = max(worst, abs(diff))
        certified += bool(fast and fast.certified)
        reference_certified += bool(ref and ref.certified)
        print(head + left + right + tail, flush=True)
        done += 1
    print(f"\nwedgenet certified {certified}/{args.trials}, the cvxpy reference "
          f"{reference_certified}/{args.trials}; largest |objective difference| where both "
          f"certified ({both}): {worst:.1e}; time ratio cvxpy/wedgenet: median "
          f"{np.median(ratios):.1f}, min {np.min(ratios):.1f}")


if __name__ == "__main__":
    main()
