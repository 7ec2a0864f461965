"""Certified convex solve vs. PyTorch Adam on the same objective (issue 5).

    pip install torch==2.13.0      # optional, benchmarks only (the `torch` extra)
    python bench/bench_adam.py [--quick]

Objective (docs/conventions.md section 2), p = 1, biased neurons, squared loss summed:

    P = 0.5 * sum (f(x_i) - y_i)^2 + (lam / 2) * sum_j (||w_j||_1^2 + a_j^2)

Adam minimizes exactly this P (the penalty is in the loss, not Adam's weight_decay), full
batch, over a learning-rate grid and 5 seeds, with the same width as the certified network and
with 4x that width. Prints the ratio of Adam's final objective to the certified optimum and of
wall times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import wedgenet as wn


def adam_objective(
    X: np.ndarray, y: np.ndarray, lam: float, width: int, lr: float, seed: int, steps: int
) -> tuple[float, float]:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    Xt = torch.tensor(X)
    yt = torch.tensor(y)
    d = X.shape[1]
    W = torch.nn.Parameter(torch.randn(d, width, dtype=torch.float64) / np.sqrt(d))
    b = torch.nn.Parameter(torch.randn(width, dtype=torch.float64) * 0.1)
    a = torch.nn.Parameter(torch.randn(width, dtype=torch.float64) / np.sqrt(width))
    c = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    opt = torch.optim.Adam([W, b, a, c], lr=lr)

    def objective() -> torch.Tensor:
        f = torch.relu(Xt @ W + b) @ a + c
        reg = (W.abs().sum(dim=0) ** 2).sum() + (a**2).sum()
        return 0.5 * ((f - yt) ** 2).sum() + 0.5 * lam * reg

    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = objective()
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(objective())
    return final, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("PyTorch is not installed: pip install torch==2.13.0") from None
    rng = np.random.default_rng(0)
    n = 100 if args.quick else 200
    X = rng.standard_normal((n, 2))
    y = np.sin(2 * X[:, 0]) * np.cos(X[:, 1]) + 0.05 * rng.standard_normal(n)
    lam = 0.1
    steps = 1000 if args.quick else 5000
    wn.solve(X[:10], y[:10], lam=lam)  # compile
    t0 = time.perf_counter()
    res = wn.solve(X, y, lam=lam, p=1, bias=True)
    t_convex = time.perf_counter() - t0
    opt = res.primal_objective
    m = len(res.network.neurons)
    print(
        f"n={n}, d=2, lam={lam}: certified optimum {opt:.6f} (gap {res.relative_gap:.1e}, "
        f"{res.n_columns:,} columns) with {m} neurons in {t_convex:.2f} s"
    )
    print(f"\nAdam, full batch, {steps} steps, 5 seeds per (width, lr)")
    print(
        f"{'width':>6s} {'lr':>7s} {'best P/opt':>11s} {'median P/opt':>13s} {'worst P/opt':>12s} "
        f"{'time/convex':>12s}"
    )
    for width in (m, 4 * m):
        for lr in (1e-3, 3e-3, 1e-2, 3e-2):
            vals, times = [], []
            for seed in range(5):
                v, t = adam_objective(X, y, lam, width, lr, seed, steps)
                vals.append(v / opt)
                times.append(t)
            vals_arr = np.array(vals)
            print(
                f"{width:6d} {lr:7.0e} {vals_arr.min():11.4f} {np.median(vals_arr):13.4f} "
                f"{vals_arr.max():12.4f} {np.mean(times) / t_convex:12.1f}"
            )


if __name__ == "__main__":
    main()
