"""Compile the numerical kernels ahead of the first solve (``python -m wedgenet.warmup``).

The inner loops of the library (pricing, the active-set method, coordinate descent) are
numba kernels (``@njit(cache=True)``). Numba compiles a kernel the first time it is called
with a new combination of argument types, which takes tens of seconds for the whole set,
and keeps the machine code in an on-disk cache that later processes load in well under a
second. Without a warm-up that compilation lands in the first solve of every fresh install,
worker or container (at "building dictionary 0.0%").

:func:`warm_up` runs tiny problems through the public entry points (:func:`wedgenet.solve`
for every loss and output shape, :func:`wedgenet.polish`), so that every kernel they reach is
compiled for the argument types the library passes in practice and written to the cache.
The service calls it when a worker starts (``wedgenet serve`` and the Celery worker, before
they take jobs); the Docker image runs it at build time.

Where the cache lives: ``$NUMBA_CACHE_DIR`` when set; otherwise ``__pycache__`` next to the
package's source files when that folder is writable, else numba's per-user cache folder
(``~/.cache/numba``). The cache is keyed by the source files' contents, the argument types,
the numba version and the CPU model and features of the machine (see ``NUMBA_CPU_NAME``), so
a cache made on one CPU model is not used on another (there the kernels are compiled again
on first use and the cache gains entries for that CPU too).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import pkgutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger("wedgenet.warmup")

__all__ = ["KernelStats", "kernel_stats", "kernels", "warm_up"]


@dataclass(frozen=True)
class KernelStats:
    """Counters of the package's numba kernels in this process.

    Attributes
    ----------
    kernels : int
        Number of ``@njit`` kernels found in the imported ``wedgenet`` modules.
    compiled : int
        Signatures compiled in this process (on-disk cache misses).
    loaded : int
        Signatures loaded from the on-disk cache.
    unreached : tuple of str
        Kernels with no compiled signature in this process. A kernel that is only called
        from other kernels is compiled along with its caller, but when the caller is loaded
        from the cache the callee stays unreached, so this is meaningful after compiling
        from an empty cache only.
    cache_dirs : tuple of str
        The folders the kernels' caches live in.
    """

    kernels: int
    compiled: int
    loaded: int
    unreached: tuple[str, ...]
    cache_dirs: tuple[str, ...]


def kernels(import_all: bool = False) -> dict[str, Any]:
    """The ``@njit`` kernels defined in the imported ``wedgenet`` modules, by qualified name.

    Parameters
    ----------
    import_all : bool, default False
        Import every submodule of the package first (those whose import fails, for a missing
        optional dependency, are skipped), so that kernels of modules that nothing imported
        yet are listed too.

    Returns
    -------
    dict
        ``"module.function"`` -> numba dispatcher.
    """
    from numba.core.dispatcher import Dispatcher

    import wedgenet

    if import_all:
        for info in pkgutil.iter_modules(wedgenet.__path__, "wedgenet."):
            try:
                importlib.import_module(info.name)
            except ImportError:  # pragma: no cover - optional dependencies
                continue
    found: dict[str, Any] = {}
    for name, module in sorted(sys.modules.items()):
        if module is None or not (name == "wedgenet" or name.startswith("wedgenet.")):
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == name:
                found[f"{name}.{obj.py_func.__name__}"] = obj
    return found


def kernel_stats(import_all: bool = False) -> KernelStats:
    """Compilation counters of the package's kernels in this process (see :class:`KernelStats`).

    Parameters
    ----------
    import_all : bool, default False
        As :func:`kernels`.

    Returns
    -------
    KernelStats
    """
    found = kernels(import_all)
    compiled = loaded = 0
    unreached: list[str] = []
    dirs: set[str] = set()
    for name, disp in found.items():
        stats = disp.stats
        compiled += sum(stats.cache_misses.values())
        loaded += sum(stats.cache_hits.values())
        if stats.cache_path:
            dirs.add(str(stats.cache_path))
        if not disp.signatures:
            unreached.append(name)
    return KernelStats(len(found), compiled, loaded, tuple(unreached), tuple(sorted(dirs)))


def _problems() -> Iterator[tuple[str, dict[str, Any]]]:
    """Tiny problems covering every loss and output shape: ``(label, solve kwargs)``."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 2))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
    binary = np.where(y > np.median(y), 1, 0)
    classes = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    Y2 = np.column_stack([y, np.cos(X[:, 1])])
    yield "squared", {"X": X, "y": y, "loss": "squared"}
    yield "squared, vector output", {"X": X, "y": Y2, "loss": "squared"}
    yield "squared, p=2, no bias", {"X": X, "y": y, "loss": "squared", "p": 2, "bias": False}
    yield "logistic", {"X": X, "y": binary, "loss": "logistic"}
    yield "hinge", {"X": X, "y": binary, "loss": "hinge"}
    yield "softmax", {"X": X, "y": classes, "loss": "softmax"}
    # pricing by local search (the path of dictionaries too large to enumerate)
    search = {"source": "search", "n_columns": 8}
    yield "squared, searched dictionary", {"X": X, "y": y, "loss": "squared", **search}
    yield "squared, vector output, searched", {"X": X, "y": Y2, "loss": "squared", **search}


def _polish_problems() -> Iterator[tuple[str, dict[str, Any]]]:
    """Tiny polishing problems (scalar and vector output): ``(label, polish kwargs)``."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 2))
    layers = [(rng.normal(size=(2, 3)), rng.normal(size=3)), (rng.normal(size=(3, 1)), np.zeros(1))]
    y = np.maximum(X @ layers[0][0] + layers[0][1], 0) @ layers[1][0][:, 0]
    yield "polish, squared", {"X": X, "y": y, "layers": layers, "loss": "squared"}
    layers2 = [layers[0], (rng.normal(size=(3, 2)), np.zeros(2))]
    Y2 = np.maximum(X @ layers[0][0] + layers[0][1], 0) @ layers2[1][0]
    yield "polish, vector output", {"X": X, "y": Y2, "layers": layers2, "loss": "squared"}


def warm_up(*, verbose: bool = False) -> float:
    """Compile every numerical kernel the library uses and persist it in numba's cache.

    Runs tiny problems (8 samples in 2 dimensions) through the public code paths:
    :func:`wedgenet.solve` with the squared loss (scalar and vector output, ``p`` = 1 and 2),
    the logistic, hinge and softmax losses, with ``source="search"`` (scalar and vector
    output), and :func:`wedgenet.polish` (scalar and vector output). Each kernel they reach
    is compiled for the argument types (dtype, dimensions, memory layout) the library passes
    in practice, or loaded from the on-disk cache when an earlier process compiled it
    already; either way it is in memory afterwards, so a process that forks workers after
    the warm-up hands them compiled code. (Measured: after the warm-up no further signature
    is compiled by solves with float32, int, Fortran-ordered or strided inputs, warm starts,
    regularization paths, ``price_range``, polishing of MLPs or the estimators.) It also
    runs :func:`wedgenet.solve_three_layer` with and without first-layer biases.

    Rule for new kernels: the warm-up names no kernel, it only calls public entry points, so
    a kernel added anywhere in the package is covered as soon as one of these calls reaches
    it. A kernel reached only from another entry point needs a tiny call of that entry point
    added here (the test ``tests/wedgenet/test_warmup.py`` fails on a kernel left unreached).

    Parameters
    ----------
    verbose : bool, default False
        Log each problem with its time (logger ``wedgenet.warmup``, level INFO).

    Returns
    -------
    float
        Seconds spent: tens of seconds when everything is compiled, one or two when it is
        loaded from the cache, mostly importing cvxpy (:func:`kernel_stats` tells which).
    """
    import wedgenet

    start = time.perf_counter()
    for label, kw in _problems():
        t = time.perf_counter()
        try:
            wedgenet.solve(kw.pop("X"), kw.pop("y"), lam=0.05, **kw)
        except wedgenet.WedgeNetError as exc:
            # a tree without source="search" (wedgenet/search.py) rejects that case only
            if "unknown source" not in str(exc):
                raise
            log.debug("warm-up: solve (%s) skipped: %s", label, exc)
            continue
        if verbose:
            log.info("warm-up: solve (%s) %.2f s", label, time.perf_counter() - t)
    for label, kw in _polish_problems():
        t = time.perf_counter()
        wedgenet.polish(kw.pop("X"), kw.pop("y"), kw.pop("layers"), lam=0.05, **kw)
        if verbose:
            log.info("warm-up: %s %.2f s", label, time.perf_counter() - t)
    t = time.perf_counter()
    rng = np.random.default_rng(2)
    X3 = rng.normal(size=(8, 2))
    for bias in (True, False):  # three-layer pricing (wedgenet/threelayer/pricing.py)
        wedgenet.solve_three_layer(X3, np.sin(2 * X3[:, 0]), lam=0.05, bias=bias)
    if verbose:
        log.info("warm-up: three-layer solves %.2f s", time.perf_counter() - t)
    t = time.perf_counter()
    _restricted_solvers()
    if verbose:
        log.info("warm-up: every compiled restricted solver %.2f s", time.perf_counter() - t)
    return time.perf_counter() - start


def _restricted_solvers() -> None:
    """Each compiled restricted solver of the chain once, on tiny programs: the calls above
    reach the fallbacks (coordinate descent) only when a faster solver misses its tolerance."""
    from wedgenet.losses import get_loss
    from wedgenet.programs import Program
    from wedgenet.solvers import CHAIN, Budget, Clarabel, Fista

    rng = np.random.default_rng(0)
    K = np.maximum(rng.normal(size=(12, 6)), 0.0)
    Y = rng.normal(size=(12, 2))
    for program in (Program(K, Y[:, :1], get_loss("squared"), 0.05),
                    Program(K, Y, get_loss("squared"), 0.05)):
        for solver in CHAIN:
            if solver.accepts(program) and not isinstance(solver, (Clarabel, Fista)):
                solver.solve(program, Budget(tol=1e-8, max_sweeps=20))


def main(argv: list[str] | None = None) -> int:
    """``python -m wedgenet.warmup [--json] [--verbose]``: compile and cache the kernels."""
    parser = argparse.ArgumentParser(
        prog="python -m wedgenet.warmup",
        description="Compile wedgenet's numerical kernels into numba's on-disk cache, so that "
        "the first solve of later processes does not compile them.",
    )
    parser.add_argument("--json", action="store_true", help="print the counters as JSON")
    parser.add_argument("--verbose", action="store_true", help="time each warm-up problem")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    seconds = warm_up(verbose=args.verbose)
    stats = kernel_stats(import_all=args.json)
    if args.json:
        print(json.dumps({"seconds": seconds, **asdict(stats)}))
    else:
        print(f"wedgenet: numerical kernels ready in {seconds:.1f} s ({stats.compiled} "
              f"compiled, {stats.loaded} loaded from the cache in "
              f"{', '.join(stats.cache_dirs) or 'no cache'})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
