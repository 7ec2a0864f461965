"""Working-set (column generation) solver with streamed pricing.

The full dictionary is never materialized. Each outer iteration

1. solves the restricted program on the working set, warm-started, by
   :func:`wedgenet.solvers.solve_program` (the solver chain: active set, proximal Newton,
   HiGHS, group proximal Newton; coordinate descent and CLARABEL only where these miss the
   requested accuracy),
2. forms the dual point ``V = -grad L`` at the restricted solution,
3. *prices* every column of the dictionary chunk by chunk: ``||k_j^T V||_2``,
4. scales ``V`` into the dual feasible set with the maximum score over **all** columns, which
   gives a lower bound on the full program, and adds the worst violators to the working set.

It stops when the relative duality gap over the full dictionary is at most ``tol`` (or at a
time limit or iteration cap, with the gap of the returned point still valid: it comes from a
full scan). Memory is ``O(n * chunk_size + n * |working set|)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from wedgenet.dictionary import Atoms
from wedgenet.exceptions import WedgeNetError
from wedgenet.interrupt import checkpoint
from wedgenet.losses import Loss
from wedgenet.pricing import ColumnSource, PricingResult, price
from wedgenet.programs import (
    Program,
    ProgramSolution,
    column_scores,
    dual_bound,
    dual_point,
    kkt_dual_point,
    primal_value,
    relative_gap,
)
from wedgenet.solvers import solve_program
from wedgenet.validation import check_lam

FloatArray = NDArray[np.float64]
Progress = Callable[[float, str], None]
#: ``pricer(V, n_top, threshold)`` scans the whole dictionary (possibly on several workers).
Pricer = Callable[[FloatArray, int, float], PricingResult]
PartialPricer = Callable[[FloatArray, int, float, int], PricingResult]
#: full scans in a row that find no violator outside the working set while the restricted
#: solves are already at their tightest tolerance: then column generation stops ("stalled")
MAX_STALLED = 3
#: quadratic losses: a converged solution whose gap is above this fraction of ``tol`` also
#: tries the dual point solved from the optimality conditions (one more full scan)
KKT_SHARPEN = 0.01


@dataclass
class WorkingSetResult:
    """Solution over the full dictionary found by column generation."""

    atoms: Atoms
    solution: ProgramSolution
    n_columns: int
    n_outer: int
    history: list[dict[str, float]] = field(default_factory=list)
    #: Why column generation stopped short of ``tol``: ``"max_time"`` (time limit),
    #: ``"max_outer"`` (iteration cap), ``"stalled"`` (no violator outside the working set
    #: and no more accuracy to gain: the gap is at rounding level for this data), or ``""``
    #: (converged: gap <= tol).
    stopped: str = ""


def solve_working_set(
    source: ColumnSource,
    Y: FloatArray,
    loss: Loss,
    lam: float,
    *,
    fit_offset: bool = True,
    tol: float = 1e-6,
    initial_size: int = 256,
    min_add: int = 128,
    max_add: int = 1024,
    max_outer: int = 200,
    max_age: int = 3,
    max_partial: int = 10,
    initial_atoms: Atoms | None = None,
    progress: Progress | None = None,
    pricer: Pricer | None = None,
    partial_pricer: PartialPricer | None = None,
    max_time: float | None = None,
) -> WorkingSetResult:
    """Solve the program over every column of ``source`` by column generation.

    Parameters
    ----------
    source : ColumnSource
        The dictionary, streamed in chunks.
    Y : ndarray of shape (n, c)
        Encoded targets.
    loss, lam, fit_offset
        The program (see :mod:`wedgenet.programs`).
    tol : float, default 1e-6
        Target relative duality gap over the whole dictionary.
    initial_size : int
        Size of the first working set (highest scores at the zero solution).
    min_add, max_add : int
        Columns added per outer iteration: twice the support, clipped to this range.
    initial_atoms : Atoms, optional
        Seed atoms (e.g. polished neurons, or the support at a previous ``lam``).
    progress : callable, optional
        ``progress(fraction, stage)`` after each scan; may raise to abort.
    partial_pricer : callable, optional
        ``partial_pricer(V, n_top, threshold, iteration)`` scanning a (random) part of the
        dictionary; tried before each full scan (partial pricing).
    max_partial : int, default 10
        At most this many partial-pricing rounds in a row; then a full scan runs (it reports
        the gap over the whole dictionary and may stop), whatever the partial scans find.
    pricer : callable, optional
        ``pricer(V, n_top, threshold) -> PricingResult`` replacing the in-process scan of
        ``source`` (e.g. a scan split over several workers); it must cover every column.
    max_time : float, optional
        Time limit in seconds (default: none). Once exceeded, column generation stops after
        the current restricted solve: the restricted solver skips its slow fallback, one full
        scan prices the current point (so its dual bound and gap are valid for it), and the
        fully scanned point with the lowest objective is returned with
        ``stopped="max_time"``. The overrun is at most one restricted solve and one scan.

    Returns
    -------
    WorkingSetResult
        ``solution.solver`` is ``"workingset/<restricted solver of the last iteration>"``;
        ``stopped`` says whether ``tol`` was reached.
    """
    start = time.perf_counter()
    if pricer is None:

        def pricer(V: FloatArray, n_top: int, threshold: float) -> PricingResult:
            return price(source, V, n_top, threshold)

    lam = check_lam(lam)
    n, c = Y.shape
    t0 = np.zeros(c)
    Zeros = np.zeros((n, c))
    # Dual point at Z = 0 (with the best offset) and the first scan.
    if fit_offset and loss.smooth:
        t0 = loss.optimal_offset(Zeros, Y, t0)
    V0 = -loss.grad(Zeros + t0, Y)
    if fit_offset and loss.quadratic:
        V0 = V0 - V0.mean(axis=0)
    scan = pricer(V0, max(initial_size, 1), 0.0)
    n_columns = scan.n_columns
    if n_columns == 0:
        raise WedgeNetError("the dictionary is empty (every subset was degenerate)")
    history: list[dict[str, float]] = []
    p0 = loss.value(Zeros + t0, Y)
    d0 = dual_bound(loss, V0, Y, lam, scan.max_score)
    if scan.max_score <= lam * (1 + 1e-12):
        # Zero network is optimal.
        zero_sol = ProgramSolution(
            Z=np.zeros((0, c)),
            t=t0,
            V=V0,
            primal=p0,
            dual=d0,
            max_score=scan.max_score,
            solve_time=0.0,
            solver="workingset",
        )
        empty = scan.top_atoms.take(np.zeros(0, dtype=np.int64))
        return WorkingSetResult(empty, zero_sol, n_columns, 0, history)
    if progress is not None:
        progress(0.0, f"column generation: first scan, {n_columns} columns")
    first = source.canonical(scan.top_atoms)
    W = first if initial_atoms is None else _union(initial_atoms, first)
    keys = {_key(W, i) for i in range(len(W))}
    age = np.zeros(len(W), dtype=np.int64)
    Z = None
    gap0 = relative_gap(p0, d0)
    # Restricted solves are inexact while the outer gap is large (CD then rarely needs the
    # interior-point fallback) and tighten as it closes, down to `inner_floor`.
    inner_floor = min(tol * 0.1, 1e-8)
    sol: ProgramSolution | None = None
    best: ProgramSolution | None = None
    best_atoms = W
    stopped = "max_outer"
    sol_atoms = W
    last_gap = gap0
    outer = 0
    threshold = lam * (1 + 0.5 * tol)
    sharpened_at = float("nan")  # the primal value whose KKT dual point was last tried
    n_stalled = 0
    n_full = 0
    n_partial_run = 0
    for outer in range(1, max_outer + 1):
        checkpoint("column generation")
        K_W = source.columns(W)
        Zw0 = None if Z is None else np.vstack([Z, np.zeros((len(W) - Z.shape[0], c))])
        inner_tol = max(inner_floor, min(1e-3, 0.01 * last_gap))
        deadline = None if max_time is None else start + max_time
        inner = solve_program(
            Program(K_W, Y, loss, lam, fit_offset), tol=inner_tol, Z0=Zw0, deadline=deadline
        )
        out_of_time = deadline is not None and time.perf_counter() > deadline
        Z = inner.Z
        t, U, V = dual_point(loss, K_W, Y, Z, inner.t, fit_offset)
        if not loss.smooth:
            V = inner.V  # read off the solver's multipliers: a subgradient is no dual point
        primal = primal_value(loss, U, Y, Z, lam)
        n_support = int(np.count_nonzero(np.any(Z != 0, axis=1)))
        n_add = int(min(max_add, max(min_add, 2 * n_support)))
        cand: Atoms | None = None
        if partial_pricer is not None and n_partial_run < max_partial and not out_of_time:
            # Partial pricing: look for violators in a random part of the dictionary first;
            # the full scan (and with it the certificate) runs only when that finds none.
            part = partial_pricer(V, n_add, threshold, outer)
            cand = _new_atoms(source.canonical(part.top_atoms), keys)
            if len(cand):
                history.append(
                    {
                        "outer": outer,
                        "primal": primal,
                        "dual": float("nan"),
                        "gap": float("nan"),
                        "size": len(W),
                        "time": time.perf_counter() - start,
                    }
                )
                if progress is not None:
                    progress(
                        _fraction(gap0, last_gap, tol),
                        f"column generation: partial scan {outer}, {len(W)} columns",
                    )
                W, Z, age, keys = _grow(W, Z, age, cand, max_age)
                n_partial_run += 1
                continue
        scan = pricer(V, n_add, threshold)
        n_full += 1
        n_partial_run = 0
        dual = dual_bound(loss, V, Y, lam, max(scan.max_score, inner.max_score))
        gap = last_gap = relative_gap(primal, dual)
        history.append(
            {
                "outer": outer,
                "primal": primal,
                "dual": dual,
                "gap": gap,
                "size": len(W),
                "time": time.perf_counter() - start,
            }
        )
        if progress is not None:
            frac = 1.0 if gap <= tol else _fraction(gap0, gap, tol)
            progress(
                frac,
                f"column generation: full scan {n_full}, objective {primal:.6g}, gap {gap:.2e}, "
                f"{len(W)} columns",
            )
        sol = ProgramSolution(
            Z=Z,
            t=t,
            V=V,
            primal=primal,
            dual=dual,
            max_score=scan.max_score,
            solve_time=time.perf_counter() - start,
            iterations=outer,
            solver=f"workingset/{inner.solver}",
        )
        sol_atoms = W
        cand = _new_atoms(source.canonical(scan.top_atoms), keys)
        if (loss.quadratic and gap > KKT_SHARPEN * tol and (gap <= tol or not len(cand))
                and primal != sharpened_at):
            # About to stop, or no violator outside the working set: the bound may be limited
            # by the residual's rounding along big columns (columns in very different units).
            # Solve the dual point from the optimality conditions instead and keep the better.
            sharpened_at = primal
            kkt = _kkt_bound(pricer, K_W, Y, Z, loss, lam, fit_offset, n_add, threshold)
            if kkt is not None and kkt.dual > dual:
                dual = kkt.dual
                sol = replace(sol, V=kkt.V, dual=dual, max_score=kkt.max_score)
                gap = last_gap = relative_gap(primal, dual)
                history[-1].update(dual=dual, gap=gap)
        if best is None or primal <= best.primal:
            best, best_atoms = sol, W
        if gap <= tol:
            stopped = ""
            break
        if out_of_time:
            stopped = "max_time"
            break
        if not len(cand):
            # No violator outside the working set: the inner solve needs more accuracy,
            # unless it is already at its tightest.
            if inner_floor <= 1e-14:
                n_stalled += 1
                if n_stalled >= MAX_STALLED:
                    stopped = "stalled"
                    break
            inner_floor = max(min(inner_floor, inner_tol) * 0.01, 1e-14)
            last_gap = 0.0
            continue
        n_stalled = 0
        W, Z, age, keys = _grow(W, Z, age, cand, max_age)
    if sol is None:  # pragma: no cover - only when max_outer is exhausted by partial scans
        raise WedgeNetError("column generation stopped before any full scan; raise max_outer")
    if stopped and best is not None:
        # Not converged: the fully scanned point with the lowest objective (its own bound).
        sol, sol_atoms = best, best_atoms
    return WorkingSetResult(sol_atoms, sol, n_columns, outer, history, stopped)


class DualBound(NamedTuple):
    """A dual point priced over every column, with its bound."""

    V: FloatArray
    dual: float
    max_score: float


def _kkt_bound(
    pricer: Pricer,
    K_W: FloatArray,
    Y: FloatArray,
    Z: FloatArray,
    loss: Loss,
    lam: float,
    fit_offset: bool,
    n_top: int,
    threshold: float,
) -> DualBound | None:
    """The dual point solved from the optimality conditions on the support
    (:func:`wedgenet.programs.kkt_dual_point`; supports cut at two contribution thresholds,
    the one scoring lower on the working set) priced over every column; ``None`` without a
    support."""
    best: tuple[float, FloatArray] | None = None
    for cut in (1e-9, 1e-6):
        V = kkt_dual_point(K_W, Y, Z, lam, fit_offset, cut)
        if V is not None:
            score = float(column_scores(K_W, V).max())
            if best is None or score < best[0]:
                best = (score, V)
    if best is None:
        return None
    V = best[1]
    max_score = max(pricer(V, n_top, threshold).max_score, best[0])
    return DualBound(V, dual_bound(loss, V, Y, lam, max_score), max_score)


def _new_atoms(cand: Atoms, keys: set[bytes]) -> Atoms:
    return cand.take([i for i in range(len(cand)) if _key(cand, i) not in keys])


def _grow(
    W: Atoms, Z: FloatArray, age: NDArray[np.int64], add: Atoms, max_age: int
) -> tuple[Atoms, FloatArray, NDArray[np.int64], set[bytes]]:
    """Add ``add`` to the working set; drop columns that stayed at zero ``max_age`` times.

    Dropping long-zero columns keeps the restricted problems small without cycling on
    columns dropped too early.
    """
    zero = ~np.any(Z != 0, axis=1)
    age = np.where(zero, age + 1, 0)
    keep = np.flatnonzero(age < max_age)
    W, Z = _union(W.take(keep), add), Z[keep]
    age = np.concatenate([age[keep], np.zeros(len(add), dtype=np.int64)])
    return W, Z, age, {_key(W, i) for i in range(len(W))}


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
