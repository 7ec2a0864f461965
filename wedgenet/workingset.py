"""Working-set (column generation) solver with streamed pricing.

The full dictionary is never materialized. Each outer iteration

1. solves the restricted program on the working set (coordinate descent for the squared
   loss, warm-started; cvxpy for the other losses),
2. forms the dual point ``V = -grad L`` at the restricted solution,
3. *prices* every column of the dictionary chunk by chunk: ``||k_j^T V||_2``,
4. scales ``V`` into the dual feasible set with the maximum score over **all** columns, which
   gives a lower bound on the full program, and adds the worst violators to the working set.

It stops when the relative duality gap over the full dictionary is at most ``tol``. Memory is
``O(n * chunk_size + n * |working set|)``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from wedgenet.cd import lasso_cd
from wedgenet.dictionary import Atoms, WedgeDictionary, features
from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import Loss
from wedgenet.programs import (
    ProgramSolution,
    column_scores,
    dual_bound,
    dual_point,
    primal_value,
    relative_gap,
    solve_cvxpy,
)

FloatArray = NDArray[np.float64]
Progress = Callable[[float, str], None]


class ColumnSource(Protocol):
    """Anything that yields the dictionary as (atoms, columns) chunks."""

    def chunks(self) -> Iterable[tuple[Atoms, FloatArray]]: ...


@dataclass
class DictionaryColumns:
    """Columns of a :class:`WedgeDictionary`, computed chunk by chunk on demand."""

    dictionary: WedgeDictionary
    chunk_size: int = 4096
    start: int = 0
    stop: int | None = None

    def chunks(self) -> Iterator[tuple[Atoms, FloatArray]]:
        for atoms in self.dictionary.iter_atoms(self.chunk_size, self.start, self.stop):
            if len(atoms):
                yield atoms, features(self.dictionary.X, atoms.normals)


@dataclass
class PricingResult:
    """Outcome of one scan: the maximum score and the best violating atoms."""

    max_score: float
    n_columns: int
    top_scores: FloatArray
    top_atoms: Atoms


def price(
    source: ColumnSource,
    V: FloatArray,
    lam: float,
    n_top: int,
    *,
    threshold: float | None = None,
) -> PricingResult:
    """Scan every column of ``source`` against the dual point ``V``.

    Returns the maximum score ``max_j ||k_j^T V||`` and the ``n_top`` highest-scoring atoms
    with score above ``threshold`` (default ``lam``).
    """
    thr = lam if threshold is None else threshold
    heap: list[tuple[float, int, int]] = []  # (score, chunk id, row)
    kept: dict[int, Atoms] = {}
    max_score = 0.0
    n_cols = 0
    proto: Atoms | None = None
    for cid, (atoms, K) in enumerate(source.chunks()):
        if proto is None:
            proto = atoms
        scores = column_scores(K, V)
        n_cols += scores.shape[0]
        if scores.size:
            max_score = max(max_score, float(scores.max()))
        cand = np.flatnonzero(scores > thr)
        if cand.size == 0:
            continue
        if cand.size > n_top:
            cand = cand[np.argpartition(-scores[cand], n_top - 1)[:n_top]]
        used = False
        for row in cand:
            item = (float(scores[row]), cid, int(row))
            if len(heap) < n_top:
                heapq.heappush(heap, item)
                used = True
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
                used = True
        if used:
            kept[cid] = atoms
    best = sorted(heap, reverse=True)
    parts = [kept[cid].take([row]) for _, cid, row in best]
    if parts:
        top = Atoms(
            np.concatenate([a.subsets for a in parts]),
            np.concatenate([a.normals for a in parts]),
            np.concatenate([a.signs for a in parts]),
        )
    elif proto is not None:
        top = proto.take(np.zeros(0, dtype=np.int64))
    else:
        top = Atoms(np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0)), np.zeros(0, np.int64))
    return PricingResult(
        max_score=max_score,
        n_columns=n_cols,
        top_scores=np.array([s for s, _, _ in best]),
        top_atoms=top,
    )


@dataclass
class WorkingSetResult:
    """Solution over the full dictionary found by column generation."""

    atoms: Atoms
    solution: ProgramSolution
    n_columns: int
    n_outer: int
    history: list[dict[str, float]] = field(default_factory=list)


def solve_restricted(
    K: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    fit_offset: bool,
    Z0: FloatArray | None,
    tol: float,
    cd_sweeps: int = 300,
) -> ProgramSolution:
    """The program on a materialized (small) dictionary.

    Squared loss: coordinate descent (warm-started) with a sweep budget; ReLU columns are
    often nearly collinear, where CD crawls (measured: 10-40x slower than CLARABEL on the
    two-spirals dictionary, see docs/benchmarks.md), so past the budget the interior-point
    solver finishes the job. Other losses: cvxpy/CLARABEL.
    """
    if loss.name == "squared":
        sol = lasso_cd(K, Y, lam, fit_offset=fit_offset, Z0=Z0, tol=tol, max_sweeps=cd_sweeps)
        if sol.gap <= tol:
            return sol
    return solve_cvxpy(K, Y, loss, lam, fit_offset=fit_offset)


def solve_working_set(
    source: ColumnSource,
    X: FloatArray,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    *,
    fit_offset: bool = True,
    tol: float = 1e-6,
    initial_size: int = 64,
    max_add: int = 512,
    max_outer: int = 200,
    initial_atoms: Atoms | None = None,
    progress: Progress | None = None,
) -> WorkingSetResult:
    """Solve the program over every column of ``source`` by column generation.

    Parameters
    ----------
    source : ColumnSource
        The dictionary, streamed in chunks.
    X : ndarray of shape (n, d)
        Inputs at which atoms are evaluated (the dictionary's data).
    Y : ndarray of shape (n, c)
        Encoded targets.
    loss, lam, fit_offset
        The program (see :mod:`wedgenet.programs`).
    tol : float, default 1e-6
        Target relative duality gap over the whole dictionary.
    initial_size : int
        Size of the first working set (highest scores at the zero solution).
    max_add : int
        Most columns added per outer iteration.
    initial_atoms : Atoms, optional
        Seed atoms (e.g. polished neurons, or the support at a previous ``lam``).
    progress : callable, optional
        ``progress(fraction, stage)`` after each scan; may raise to abort.
    """
    if lam <= 0:
        raise WedgeNetError(f"lam must be > 0, got {lam}")
    n, c = Y.shape
    t0 = np.zeros(c)
    Zeros = np.zeros((n, c))
    # Dual point at Z = 0 (with the best offset) and the first scan.
    if fit_offset and loss.smooth:
        t0 = loss.optimal_offset(Zeros, Y, t0)
    V0 = -loss.grad(Zeros + t0, Y)
    if fit_offset and loss.name == "squared":
        V0 = V0 - V0.mean(axis=0)
    scan = price(source, V0, lam, max(initial_size, 1), threshold=0.0)
    n_columns = scan.n_columns
    if n_columns == 0:
        raise WedgeNetError("the dictionary is empty (every subset was degenerate)")
    history: list[dict[str, float]] = []
    p0 = loss.value(Zeros + t0, Y)
    d0 = dual_bound(loss, V0, Y, lam, scan.max_score)
    if scan.max_score <= lam * (1 + 1e-12):
        # Zero network is optimal.
        sol = ProgramSolution(
            Z=np.zeros((0, c)), t=t0, V=V0, primal=p0, dual=d0, max_score=scan.max_score,
            solve_time=0.0, solver="workingset",
        )
        empty = scan.top_atoms.take(np.zeros(0, dtype=np.int64))
        return WorkingSetResult(empty, sol, n_columns, 0, history)
    W = scan.top_atoms if initial_atoms is None else _union(initial_atoms, scan.top_atoms)
    keys = {_key(W, i) for i in range(len(W))}
    Z = None
    gap0 = relative_gap(p0, d0)
    inner_tol = min(tol * 0.1, 1e-8)
    start = time.perf_counter()
    sol: ProgramSolution | None = None
    outer = 0
    for outer in range(1, max_outer + 1):
        K_W = features(X, W.normals)
        Zw0 = None if Z is None else np.vstack([Z, np.zeros((len(W) - Z.shape[0], c))])
        sol = solve_restricted(K_W, Y, loss, lam, fit_offset, Zw0, inner_tol)
        Z = sol.Z
        t, U, V = dual_point(loss, K_W, Y, Z, sol.t, fit_offset)
        if loss.name == "hinge":
            V = sol.V
        primal = primal_value(loss, U, Y, Z, lam)
        n_support = int(np.count_nonzero(np.any(Z != 0, axis=1)))
        n_add = int(min(max_add, max(16, 2 * n_support)))
        scan = price(source, V, lam, n_add, threshold=lam * (1 + 0.5 * tol))
        dual = dual_bound(loss, V, Y, lam, max(scan.max_score, sol.max_score))
        gap = relative_gap(primal, dual)
        history.append(
            {"outer": outer, "primal": primal, "dual": dual, "gap": gap, "size": len(W),
             "time": time.perf_counter() - start}
        )
        if progress is not None:
            frac = 1.0 if gap <= tol else _fraction(gap0, gap, tol)
            progress(frac, f"column generation: scan {outer}, gap {gap:.2e}, {len(W)} columns")
        sol = ProgramSolution(
            Z=Z, t=t, V=V, primal=primal, dual=dual, max_score=scan.max_score,
            solve_time=time.perf_counter() - start, iterations=outer, solver="workingset",
        )
        if gap <= tol:
            break
        new = [i for i in range(len(scan.top_atoms)) if _key(scan.top_atoms, i) not in keys]
        if not new:
            # No violator outside the working set: the inner solve needs more accuracy.
            inner_tol = max(inner_tol * 0.01, 1e-14)
            continue
        add = scan.top_atoms.take(new)
        keys.update(_key(add, i) for i in range(len(add)))
        # Drop columns that have stayed at zero, keep the support and the newcomers.
        support = np.flatnonzero(np.any(Z != 0, axis=1))
        if len(W) > 4 * max_add and support.size < len(W):
            keep = np.union1d(support, np.arange(max(0, len(W) - max_add), len(W)))
            W, Z = W.take(keep), Z[keep]
            keys = {_key(W, i) for i in range(len(W))} | {_key(add, i) for i in range(len(add))}
        W = _union(W, add)
    assert sol is not None
    return WorkingSetResult(W, sol, n_columns, outer, history)


def _fraction(gap0: float, gap: float, tol: float) -> float:
    if gap0 <= tol or gap >= gap0:
        return 0.0
    return float(min(0.99, np.log(gap0 / gap) / np.log(gap0 / tol)))


def _key(atoms: Atoms, i: int) -> bytes:
    return atoms.subsets[i].tobytes() + int(atoms.signs[i]).to_bytes(1, "little", signed=True)


def _union(a: Atoms, b: Atoms) -> Atoms:
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    return Atoms(
        np.concatenate([a.subsets, b.subsets]),
        np.concatenate([a.normals, b.normals]),
        np.concatenate([a.signs, b.signs]),
    )
