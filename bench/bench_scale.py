"""Certified solves at scale and pricing throughput (issue 5).

    python bench/bench_scale.py [--quick] [--skip-solve]

Prints, side by side in one process:
1. pricing throughput of the fused kernel vs. a chunked matmul ``[X, 1] @ H^T`` of the same
   size and vs. the straightforward chunked numpy scan (relu, two matrix-vector products);
2. the pricing scan split over 1 and 2 worker processes (how distributed pricing scales);
3. certified solves: bias-free l1 Gaussian d=3 and biased l1 d=2 with n=1000 (time to a
   certified gap <= 1e-6, peak memory);
4. the working-set path vs. cvxpy/CLARABEL on the materialized dictionary (n=150..300).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import wedgenet as wn
from wedgenet.dictionary import WedgeDictionary
from wedgenet.pricing import (
    DictionaryColumns,
    hyperplane_scores,
    merge_pricing,
    price,
    split_ranges,
)


def gaussian_problem(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w1, w2 = rng.standard_normal(d), rng.standard_normal(d)
    y = np.maximum(X @ w1, 0) - np.maximum(X @ w2 - 0.3, 0) + 0.1 * rng.standard_normal(n)
    return X, y


def pricing_throughput(n: int, d: int, bias: bool) -> None:
    X, _ = gaussian_problem(n, d)
    V = np.random.default_rng(1).standard_normal((n, 1))
    D = WedgeDictionary(X, p=1, bias=bias)
    chunks = [D.hyperplanes(s, dedupe=False)[1] for s in D.iter_subsets(16384)]
    hyperplane_scores(X, chunks[0][:10], V)  # compile
    Xl = np.c_[X, np.ones(n)]
    t0 = time.perf_counter()
    for H in chunks:
        hyperplane_scores(X, H, V)
    t_kernel = time.perf_counter() - t0
    t0 = time.perf_counter()
    for H in chunks:
        Xl @ H.T
    t_mm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for H in chunks[: max(1, len(chunks) // 4)]:
        U = Xl @ H.T
        np.maximum(U, 0).T @ V
        np.maximum(-U, 0).T @ V
    t_np = (time.perf_counter() - t0) * len(chunks) / max(1, len(chunks) // 4)
    t0 = time.perf_counter()
    res = price(DictionaryColumns(D), V, 100, 0.0)
    t_scan = time.perf_counter() - t0
    cols = res.n_columns
    print(f"\npricing, n={n}, d={d}, bias={bias}: {cols:,} columns")
    print(f"{'method':40s} {'seconds':>8s} {'Mcol*samples/s':>15s} {'ratio to matmul':>16s}")
    for label, t in [
        ("matmul [X,1] @ H^T (chunked)", t_mm),
        ("fused kernel (both orientations)", t_kernel),
        ("full scan (subsets+normals+kernel)", t_scan),
        ("numpy chunked scan (relu, 2 matvecs)", t_np),
    ]:
        print(f"{label:40s} {t:8.3f} {cols * n / t / 1e6:15.1f} {t / t_mm:16.2f}")


def _scan_part(args: tuple[np.ndarray, np.ndarray, int, int]) -> dict:
    import numba

    numba.set_num_threads(1)
    X, V, a, b = args
    D = WedgeDictionary(X, p=1, bias=False)
    return price(DictionaryColumns(D, start=a, stop=b), V, 50, 0.0).to_dict()


def distributed_scan(n: int, d: int) -> None:
    X, _ = gaussian_problem(n, d)
    V = np.random.default_rng(1).standard_normal((n, 1))
    D = WedgeDictionary(X, p=1, bias=False)
    print(f"\nscan split over worker processes (1 numba thread each), n={n}, d={d}")
    print(f"{'processes':>10s} {'seconds':>8s} {'speed-up':>9s}")
    base = None
    for procs in (1, 2):
        ranges = split_ranges(D.n_raw_subsets, procs)
        with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_scan_part, [(X[:40], V[:40], 0, 100)] * procs))  # warm up
            t0 = time.perf_counter()
            parts = list(pool.map(_scan_part, [(X, V, a, b) for a, b in ranges]))
            dt = time.perf_counter() - t0
        from wedgenet.pricing import PricingResult

        merge_pricing([PricingResult.from_dict(p, D.subset_size_, d) for p in parts], 50)
        base = dt if base is None else base
        print(f"{procs:10d} {dt:8.3f} {base / dt:9.2f}")


def certified_solves(n: int) -> None:
    print("\ncertified solves (tol 1e-6)")
    print(
        f"{'problem':36s} {'columns':>10s} {'seconds':>8s} {'gap':>9s} {'certified':>9s} "
        f"{'neurons':>7s} {'peak RSS MB':>11s}"
    )
    for label, d, bias, lam in [
        ("Gaussian d=3, bias-free l1", 3, False, 1.0),
        ("Gaussian d=2, biased l1", 2, True, 1.0),
    ]:
        X, y = gaussian_problem(n, d)
        t0 = time.perf_counter()
        r = wn.solve(X, y, p=1, bias=bias, lam=lam, tol=1e-6)
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{label:36s} {r.n_columns:10,d} {dt:8.2f} {r.relative_gap:9.1e} "
            f"{str(r.certified):>9s} {len(r.network.neurons):7d} {rss:11.0f}"
        )


def against_cvxpy(sizes: list[int]) -> None:
    print("\nworking set vs cvxpy/CLARABEL on the materialized biased l1 dictionary (d=2)")
    print(
        f"{'n':>5s} {'columns':>8s} {'cvxpy s':>8s} {'workingset s':>12s} {'ratio':>7s} "
        f"{'rel. obj diff':>13s}"
    )
    for n in sizes:
        X, y = gaussian_problem(n, 2)
        t0 = time.perf_counter()
        ref = wn.solve(X, y, p=1, bias=True, lam=0.5, solver="cvxpy")
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        ws = wn.solve(X, y, p=1, bias=True, lam=0.5, solver="workingset")
        t_ws = time.perf_counter() - t0
        diff = (ws.primal_objective - ref.primal_objective) / ref.primal_objective
        print(
            f"{n:5d} {ref.n_columns:8d} {t_ref:8.2f} {t_ws:12.2f} {t_ref / t_ws:7.1f} {diff:13.1e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-solve", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    wn.solve(np.random.default_rng(0).standard_normal((10, 2)), np.arange(10.0), lam=0.1)
    n = 300 if args.quick else 1000
    pricing_throughput(n, 3, False)
    pricing_throughput(n, 2, True)
    distributed_scan(n, 3)
    if not args.skip_solve:
        certified_solves(n)
    against_cvxpy([100, 150] if args.quick else [150, 200, 300])


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", os.environ.get("NUMBA_NUM_THREADS", "2"))
    main()
