"""Pricing scan in PyTorch on a GPU against the CPU scan (issue 5, optional benchmark).

A full pricing scan of a pair dictionary (``D = 3``: biased l1 in d = 2, bias-free l1 in
d = 3; every hyperplane through two generators, both orientations) written in PyTorch:
per chunk of generator pairs, cross products, unit-l1 normals, ``U = [X, 1] @ H^T`` and
``v^T relu(U)``, ``v^T relu(-U) = v^T relu(U) - v^T U`` in float64, the running maximum and the
top scores. The CPU side is the library's scan (:func:`wedgenet.pricing.price` over
:class:`wedgenet.pricing.DictionaryColumns`, the fused numba kernel on all cores), run in the
same process on the same data. Both are checked to agree (maximum score and the top-50 scores
to 1e-9 relative) before any time is printed.

Needs PyTorch (and a CUDA device for the GPU rows; without one it runs the torch scan on the
CPU, which is only a correctness check). Command, on a machine with a GPU::

    python bench/bench_gpu_pricing.py --sizes 1000,2000,4000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from wedgenet.dictionary import WEIGHT_TOL, WedgeDictionary  # noqa: E402
from wedgenet.geometry import DEPENDENT_TOL  # noqa: E402
from wedgenet.pricing import DictionaryColumns, price  # noqa: E402


def torch_scan(D: WedgeDictionary, v: np.ndarray, n_top: int, chunk: int, device: str):  # type: ignore[no-untyped-def]
    """Max score, top scores and number of columns of a full scan, in PyTorch."""
    import torch

    if D.subset_size_ != 2 or D.basis_ is not None:
        raise ValueError("the torch scan covers pair dictionaries (D = 3) without rank reduction")
    dev = torch.device(device)
    d = D.n_features
    # generators_ are in the dictionary's equilibrated working coordinates; T maps a working
    # normal to the original (w, b) (linear), as in WedgeDictionary._to_original
    G = torch.as_tensor(D.generators_, dtype=torch.float64, device=dev)
    G = G / torch.linalg.vector_norm(G, dim=1, keepdim=True)
    T = torch.as_tensor(D._to_original(np.eye(D.dim_)), dtype=torch.float64, device=dev)
    Xl = torch.as_tensor(np.c_[D.X, np.ones(D.X.shape[0])], dtype=torch.float64, device=dev)
    vt = torch.as_tensor(v, dtype=torch.float64, device=dev)
    P = G.shape[0]
    pairs = torch.triu_indices(P, P, 1, device=dev)
    best = torch.zeros(0, dtype=torch.float64, device=dev)
    max_score = torch.zeros((), dtype=torch.float64, device=dev)
    n_cols = torch.zeros((), dtype=torch.int64, device=dev)
    for s in range(0, pairs.shape[1], chunk):
        i, j = pairs[0, s : s + chunk], pairs[1, s : s + chunk]
        H = torch.linalg.cross(G[i], G[j], dim=1)
        # unit rows: ||cross|| = sin(angle), about twice sigma_min / sigma_max
        ok = torch.linalg.vector_norm(H, dim=1) > 2 * DEPENDENT_TOL
        normals = H @ T
        wnorm = normals[:, :d].abs().sum(dim=1)
        ok &= wnorm > WEIGHT_TOL * torch.linalg.vector_norm(normals, dim=1)
        normals = normals[ok] / wnorm[ok, None]
        U = Xl @ normals.T  # (n, B)
        tot = vt @ U
        pos = vt @ torch.relu_(U)
        scores = torch.cat([pos.abs(), (pos - tot).abs()])
        n_cols += scores.shape[0]
        if scores.numel():
            max_score = torch.maximum(max_score, scores.max())
            k = min(n_top, scores.shape[0])
            merged = torch.cat([best, torch.topk(scores, k).values])
            best = torch.topk(merged, min(n_top, merged.shape[0])).values
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return float(max_score), best.cpu().numpy(), int(n_cols)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,2000,4000")
    ap.add_argument("--chunk", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import numba
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (torch)"
    threads = numba.get_num_threads()
    print(f"torch {torch.__version__} on {name}; CPU scan: numba, {threads} threads")
    print(
        f"{'problem':28s} {'columns':>12s} {'CPU scan s':>10s} {'torch s':>8s} {'speed-up':>8s} "
        f"{'GPU Gcol*smp/s':>14s} {'max-score rel diff':>18s}"
    )
    rng = np.random.default_rng(0)
    for n in [int(s) for s in args.sizes.split(",")]:
        for d, bias in [(2, True), (3, False)]:
            X = rng.standard_normal((n, d))
            v = rng.standard_normal(n)
            v -= v.mean()
            D = WedgeDictionary(X, p=1, bias=bias)
            src = DictionaryColumns(D, chunk_size=65536)
            V = v[:, None]
            price(src, V, 50, 0.0)  # compile
            t_cpu = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ref = price(src, V, 50, 0.0)
                t_cpu.append(time.perf_counter() - t0)
            torch_scan(D, v, 50, args.chunk, device)  # warm-up
            t_gpu = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                mx, top, ncols = torch_scan(D, v, 50, args.chunk, device)
                t_gpu.append(time.perf_counter() - t0)
            rel = abs(mx - ref.max_score) / ref.max_score
            assert ncols == ref.n_columns, (ncols, ref.n_columns)
            assert rel < 1e-9, rel
            np.testing.assert_allclose(np.sort(top), np.sort(ref.top_scores), rtol=1e-9)
            tc, tg = min(t_cpu), min(t_gpu)
            label = f"n={n}, d={d}, {'biased' if bias else 'bias-free'}"
            print(
                f"{label:28s} {ncols:12,d} {tc:10.3f} {tg:8.3f} {tc / tg:8.1f} "
                f"{ncols * n / tg / 1e9:14.1f} {rel:18.1e}"
            )


if __name__ == "__main__":
    main()
