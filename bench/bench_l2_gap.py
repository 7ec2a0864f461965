"""How far is the p = 2 (weight decay) wedge program from the best non-convex network?

For ``p = 2`` the wedge-dictionary program is an upper bound on the training optimum, not
equal to it (docs/conventions.md section 7). This benchmark measures, on the small evidence
datasets of :func:`wedgenet.nonconvex.evidence_datasets` plus a few random ones, the ratio

    (convex p = 2 value) / (best non-convex p = 2 value found)

where the non-convex value is the best of

* ``--restarts`` random L-BFGS-B starts of :func:`wedgenet.nonconvex.train_nonconvex`
  (width ``--width-factor * n``),
* local refinement (L-BFGS-B) started at the convex p = 2 network, jittered off the ReLU
  kinks by 1e-9, 1e-6 and 1e-3 (relative),
* local refinement under p = 2 started at the certified p = 1 network.

A ratio of 1 means the wedge network is as good as anything found; 1.10 means it is 10 %
above. The best non-convex value is itself only an upper bound on the true optimum, so the
true gap is at least what is shown. The p = 1 column is the certified optimum of the l1
problem (an upper bound on the p = 2 optimum, since ||w||_2 <= ||w||_1).

With ``--l1`` it prints the p = 1 control instead: the certified optimum (both solvers),
its dual bound, and the best of the random non-convex restarts, which must never be below
the dual bound (the same check as ``tests/wedgenet/test_nonconvex_evidence.py``).

Usage::

    .venv/bin/python bench/bench_l2_gap.py               # full p = 2 table (a few minutes)
    .venv/bin/python bench/bench_l2_gap.py --quick       # fewer restarts, evidence sets only
    .venv/bin/python bench/bench_l2_gap.py --l1 --restarts 8   # p = 1 control table
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np

import wedgenet
from wedgenet.nonconvex import EvidenceDataset, evidence_datasets, train_nonconvex


def measure_l1(ds: EvidenceDataset, bias: bool, lam: float, restarts: int, width_factor: int,
               max_iter: int, seed: int) -> dict[str, Any]:
    """p = 1 control: certified optimum (both solvers) vs random non-convex restarts."""
    X, y, loss = ds.X, ds.y, ds.loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = {s: wedgenet.solve(X, y, loss=loss, p=1, bias=bias, lam=lam, solver=s)
               for s in ("cvxpy", "workingset")}
    nc = train_nonconvex(X, y, loss=loss, p=1, bias=bias, lam=lam, max_iter=max_iter,
                         seed=seed, width=width_factor * X.shape[0], restarts=restarts)
    opt = res["workingset"].primal_objective
    values = np.array(nc.objectives_per_restart)
    return {
        "name": ds.name, "loss": loss, "n": X.shape[0], "d": X.shape[1], "bias": bias,
        "cvxpy": res["cvxpy"].primal_objective, "workingset": opt,
        "dual": max(r.dual_objective for r in res.values()),
        "certified": all(r.certifies_network for r in res.values()),
        "best": nc.objective, "ratio": nc.objective / opt,
        "hits": int(np.sum(values <= opt * 1.001)), "runs": len(values),
    }


def main_l1(datasets: list[EvidenceDataset], args: argparse.Namespace, restarts: int) -> None:
    print("| dataset | loss | n | d | bias | P1 cvxpy | P1 workingset | dual bound | certified "
          "| best non-convex | best / P1 | runs within 0.1 % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    start = time.perf_counter()
    for ds in datasets:
        for bias in (True, False):
            r = measure_l1(ds, bias, args.lam, restarts, args.width_factor, args.max_iter,
                           args.seed)
            rows.append(r)
            print(f"| {r['name']} | {r['loss']} | {r['n']} | {r['d']} | {'yes' if bias else 'no'}"
                  f" | {r['cvxpy']:.8f} | {r['workingset']:.8f} | {r['dual']:.8f}"
                  f" | {'yes' if r['certified'] else 'NO'} | {r['best']:.8f}"
                  f" | {r['ratio']:.6f} | {r['hits']}/{r['runs']} |", flush=True)
    ratios = np.array([r["ratio"] for r in rows])
    below = [r for r in rows if r["best"] < r["dual"] - 1e-9 * abs(r["workingset"])]
    print(f"\n{len(rows)} configurations in {time.perf_counter() - start:.0f} s")
    print(f"best non-convex / P1: min {ratios.min():.8f}  median {np.median(ratios):.6f}  "
          f"max {ratios.max():.6f}")
    print(f"non-convex below the dual bound: {len(below)} (must be 0)")


def measure(ds: EvidenceDataset, bias: bool, lam: float, restarts: int, width_factor: int,
            max_iter: int, seed: int) -> dict[str, Any]:
    """p = 2: wedge program value vs the best non-convex value found."""
    X, y, loss = ds.X, ds.y, ds.loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        l2 = wedgenet.solve(X, y, loss=loss, p=2, bias=bias, lam=lam, solver="workingset")
        l1 = wedgenet.solve(X, y, loss=loss, p=1, bias=bias, lam=lam, solver="workingset")
    common: dict[str, Any] = dict(loss=loss, p=2, bias=bias, lam=lam, max_iter=max_iter,
                                  seed=seed)
    rand = train_nonconvex(X, y, width=width_factor * X.shape[0], restarts=restarts, **common)
    refined = [
        train_nonconvex(X, y, restarts=0, init=l2.network, init_jitter=j, **common).objective
        for j in (1e-9, 1e-6, 1e-3)
    ]
    from_l1 = train_nonconvex(X, y, restarts=0, init=l1.network, init_jitter=1e-9,
                              **common).objective
    candidates = {"random": rand.objective, "refine-l2": min(refined), "refine-l1": from_l1}
    where = min(candidates, key=lambda k: candidates[k])
    best = candidates[where]
    return {
        "name": ds.name, "loss": loss, "n": X.shape[0], "d": X.shape[1], "bias": bias,
        "l1": l1.primal_objective, "l1_certified": l1.certifies_network,
        "l2": l2.primal_objective, "l2_gap": l2.relative_gap,
        "random": rand.objective, "refine_l2": min(refined), "refine_l1": from_l1,
        "best": best, "where": where, "ratio": l2.primal_objective / best,
        "ratio_random": l2.primal_objective / rand.objective,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--restarts", type=int, default=30)
    parser.add_argument("--width-factor", type=int, default=2)
    parser.add_argument("--max-iter", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="8 restarts, evidence datasets only")
    parser.add_argument("--l1", action="store_true",
                        help="p = 1 control table (certified optimum vs non-convex)")
    args = parser.parse_args(argv)
    restarts = 8 if args.quick else args.restarts
    datasets = evidence_datasets(include_random=not args.quick)
    print(f"lam={args.lam} restarts={restarts} width={args.width_factor}n "
          f"max_iter={args.max_iter} seed={args.seed}\n")
    if args.l1:
        main_l1(datasets, args, restarts)
        return
    print("| dataset | loss | n | d | bias | P1 (certified) | P2 wedge | best non-convex "
          "(from) | P2 wedge / best | P2 wedge / best random | P2 wedge / P1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    start = time.perf_counter()
    for ds in datasets:
        for bias in (True, False):
            r = measure(ds, bias, args.lam, restarts, args.width_factor, args.max_iter,
                        args.seed)
            rows.append(r)
            cert = "" if r["l1_certified"] else " (NOT certified)"
            print(f"| {r['name']} | {r['loss']} | {r['n']} | {r['d']} | {'yes' if bias else 'no'}"
                  f" | {r['l1']:.6f}{cert} | {r['l2']:.6f} | {r['best']:.6f} ({r['where']})"
                  f" | {r['ratio']:.6f} | {r['ratio_random']:.6f} | {r['l2'] / r['l1']:.4f} |",
                  flush=True)
    ratios = np.array([r["ratio"] for r in rows])
    rand = np.array([r["ratio_random"] for r in rows])
    print(f"\n{len(rows)} configurations in {time.perf_counter() - start:.0f} s")
    print(f"P2 wedge / best:        min {ratios.min():.6f}  median {np.median(ratios):.6f}  "
          f"max {ratios.max():.6f}")
    print(f"P2 wedge / best random: min {rand.min():.6f}  median {np.median(rand):.6f}  "
          f"max {rand.max():.6f}")
    print(f"wedge within 0.1 % of best: {int(np.sum(ratios <= 1.001))}/{len(rows)};  "
          f"> 1 % above: {int(np.sum(ratios > 1.01))};  > 5 % above: {int(np.sum(ratios > 1.05))}")
    above = [f"{r['name']}/{r['loss']}/{'bias' if r['bias'] else 'nobias'}" for r in rows
             if r["l2"] > r["l1"] * (1 + 1e-9)]
    print(f"P2 wedge above the certified P1 optimum (itself >= the P2 optimum): "
          f"{len(above)}/{len(rows)} {above}")


if __name__ == "__main__":
    main()
