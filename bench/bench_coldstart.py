"""Cold start: the first solve of a fresh process, with and without the warm-up.

Each measurement is a fresh Python process on its own ``NUMBA_CACHE_DIR`` (temporary folders;
the repository's caches are not touched):

  cold  an empty cache and no warm-up: what a fresh install, worker or container paid before
        (numba compiles the kernels inside the first solve);
  warm  a cache that ``python -m wedgenet.warmup`` populated in an earlier process (what the
        Docker build and a worker's first start leave behind).

A process imports wedgenet, then runs one solve (n = 12, d = 2) of the given loss; the table
shows the import, the first solve and the whole process (interpreter start to exit). The
warm-up itself is timed on the empty cache (once per install or image) and again on the
populated one (what every later worker start costs).

Usage:
  .venv/bin/python bench/bench_coldstart.py
  .venv/bin/python bench/bench_coldstart.py --losses squared,softmax --n 12 --d 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

FIRST_SOLVE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import wedgenet
from wedgenet.warmup import kernel_stats
t1 = time.perf_counter()
loss, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
X = rng.normal(size=(n, d))
y = np.sin(2 * X[:, 0]) + 0.5 * X[:, -1]
if loss == "squared2":
    loss, y = "squared", np.column_stack([y, np.cos(X[:, 0])])
elif loss in ("logistic", "hinge"):
    y = (y > np.median(y)).astype(int)
elif loss == "softmax":
    y = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
res = wedgenet.solve(X, y, loss=loss, lam=0.05)
t2 = time.perf_counter()
s = kernel_stats()
print(json.dumps({"import": t1 - t0, "solve": t2 - t1, "certified": res.certified,
                  "compiled": s.compiled, "loaded": s.loaded}))
"""

LABELS = {"squared": "squared", "squared2": "squared, 2 outputs", "logistic": "logistic",
          "hinge": "hinge", "softmax": "softmax (3)"}


def run(args: list[str], cache: Path) -> tuple[float, str]:
    """Run ``python args`` with ``NUMBA_CACHE_DIR=cache``; returns (wall seconds, stdout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout.strip().splitlines()[-1]


def first_solve(loss: str, n: int, d: int, cache: Path) -> dict[str, Any]:
    wall, out = run(["-c", FIRST_SOLVE, loss, str(n), str(d)], cache)
    return {"wall": wall, **json.loads(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--losses", default="squared,squared2,logistic,hinge,softmax")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--d", type=int, default=2)
    args = ap.parse_args()
    losses = [s.strip() for s in args.losses.split(",") if s.strip()]

    import numba

    print(f"python {sys.version.split()[0]}, numba {numba.__version__}, "
          f"{os.cpu_count()} CPU cores; first solve n={args.n}, d={args.d}, lam=0.05")
    with tempfile.TemporaryDirectory(prefix="wedgenet-coldstart-") as tmp:
        warm_cache = Path(tmp) / "warm"
        wall_w1, out_w1 = run(["-m", "wedgenet.warmup", "--json"], warm_cache)
        wall_w2, out_w2 = run(["-m", "wedgenet.warmup", "--json"], warm_cache)
        w1, w2 = json.loads(out_w1), json.loads(out_w2)
        print(f"\npython -m wedgenet.warmup, empty cache (once per install/image): "
              f"{w1['seconds']:.1f} s warm-up, {wall_w1:.1f} s process, "
              f"{w1['compiled']} signatures compiled")
        print(f"python -m wedgenet.warmup, populated cache (every later worker start): "
              f"{w2['seconds']:.1f} s warm-up, {wall_w2:.1f} s process, "
              f"{w2['compiled']} compiled, {w2['loaded']} loaded")

        rows = []
        for loss in losses:
            cold = first_solve(loss, args.n, args.d, Path(tmp) / f"cold-{loss}")
            warm = first_solve(loss, args.n, args.d, warm_cache)
            rows.append((loss, cold, warm))

    print("\ntime to the first result in a fresh process (seconds)")
    print(f"{'loss':20s} | {'cold: import':>12s} {'solve':>7s} {'process':>8s} {'compiled':>8s}"
          f" | {'warm: import':>12s} {'solve':>7s} {'process':>8s} {'compiled':>8s}"
          f" | {'solve ratio':>11s} {'process ratio':>13s}")
    for loss, c, w in rows:
        print(f"{LABELS.get(loss, loss):20s} | {c['import']:12.2f} {c['solve']:7.2f} "
              f"{c['wall']:8.2f} {c['compiled']:8d} | {w['import']:12.2f} {w['solve']:7.2f} "
              f"{w['wall']:8.2f} {w['compiled']:8d} | {c['solve'] / w['solve']:10.0f}x "
              f"{c['wall'] / w['wall']:12.1f}x")
        assert c["certified"] and w["certified"]


if __name__ == "__main__":
    main()
