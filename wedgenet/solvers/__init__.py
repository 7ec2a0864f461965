"""Restricted solvers: one interface and one dispatch chain.

A *restricted program* is the convex program over a materialized (small) dictionary,
:class:`wedgenet.programs.Program`. Every solver here is a :class:`RestrictedSolver`: it
declares which programs it accepts (:meth:`RestrictedSolver.accepts`, by the loss's declared
properties and the number of outputs), takes the program and returns a
:class:`~wedgenet.programs.ProgramSolution` whose dual bound and gap hold over the columns of
the program (or ``None`` where it has no answer). :func:`solve_program` is the only dispatch:
the column-generation loop (:mod:`wedgenet.workingset`), polishing's refits
(:mod:`wedgenet.polish`) and therefore the ``lam`` path all call it, and the returned
solution names the solver that produced it (``solver``) and every solver that ran
(``tried``).

The chain, in order (a later solver runs only while the best solution so far misses the
requested gap):

======================  ==========================================  ====================
solver                  accepts                                     module
======================  ==========================================  ====================
``activeset``           quadratic loss, one output                  :mod:`.activeset`
``prox-newton``         logistic loss (one output)                  :mod:`.activeset`
``highs``               hinge loss (a linear program, one output)   :mod:`.conic`
``group-prox-newton``   quadratic with several outputs; softmax     :mod:`.groupsolve`
``cd+newton`` (slow)    quadratic loss                              :mod:`.cd`
``cvxpy/CLARABEL`` (slow) every loss (SCS if CLARABEL fails on hinge)  :mod:`.conic`
``fista`` (last resort) smooth losses, only if nothing else returned  :mod:`.fista`
======================  ==========================================  ====================

Slow solvers cannot be interrupted: under a deadline they are skipped once the deadline has
passed, and always for programs of more than :data:`SLOW_FALLBACK_MAX_ENTRIES` entries.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.interrupt import checkpoint
from wedgenet.losses import HingeLoss, LogisticLoss
from wedgenet.programs import Program, ProgramSolution, finish, refine_on_support

FloatArray = NDArray[np.float64]

#: Under a deadline, restricted programs with more entries (n x columns x outputs) than this
#: never go to the slow solvers (coordinate descent sweeps, CLARABEL).
SLOW_FALLBACK_MAX_ENTRIES = 1_000_000


@dataclass(frozen=True)
class Budget:
    """What a solve may spend and aim for.

    Attributes
    ----------
    tol : float
        Target relative duality gap over the program's columns.
    Z0 : ndarray of shape (m, c), optional
        Warm start (solvers that cannot use it ignore it).
    deadline : float, optional
        A :func:`time.perf_counter` value; solvers that can stop early stop there.
    max_sweeps : int
        Sweep budget of coordinate descent.
    """

    tol: float = 1e-8
    Z0: FloatArray | None = None
    deadline: float | None = None
    max_sweeps: int = 300

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.perf_counter(), 0.0)


class RestrictedSolver(ABC):
    """A solver of :class:`~wedgenet.programs.Program` (in the spirit of skglm's solvers)."""

    #: Name recorded in :attr:`ProgramSolution.solver`.
    name: ClassVar[str] = ""
    #: Cannot be interrupted and may take minutes on large programs (see the module notes).
    slow: ClassVar[bool] = False
    #: Runs only when no other solver returned a solution.
    last_resort: ClassVar[bool] = False
    #: Gaps at or below this are as good as this solver's fallbacks get: the chain stops
    #: there whatever ``tol`` asks.
    accuracy_floor: ClassVar[float] = 0.0

    @abstractmethod
    def accepts(self, program: Program) -> bool:
        """Whether this solver handles ``program``."""

    @abstractmethod
    def solve(self, program: Program, budget: Budget) -> ProgramSolution | None:
        """Solve ``program``; the result's dual bound is over the program's columns."""


class ActiveSet(RestrictedSolver):
    """Primal active-set method (squared loss, one output), to rounding whatever ``tol``
    asks: its last face solves are cheap, and an exact solution gives pricing a dual point
    it can trust."""

    name = "activeset"

    def accepts(self, program: Program) -> bool:
        return program.loss.quadratic and program.n_outputs == 1

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.activeset import lasso_active_set

        return lasso_active_set(
            program.K, program.Y, program.lam, fit_offset=program.fit_offset, Z0=budget.Z0,
            tol=min(budget.tol, 1e-12),
        )


class LogisticProxNewton(RestrictedSolver):
    """Proximal Newton over the active-set method (logistic loss)."""

    name = "prox-newton"

    def accepts(self, program: Program) -> bool:
        return isinstance(program.loss, LogisticLoss) and program.n_outputs == 1

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.activeset import logistic_prox_newton

        return logistic_prox_newton(
            program.K, program.Y, program.lam, fit_offset=program.fit_offset, Z0=budget.Z0,
            tol=budget.tol,
        )


class HingeLinearProgram(RestrictedSolver):
    """The hinge program as a linear program (HiGHS), exact."""

    name = "highs"

    def accepts(self, program: Program) -> bool:
        return isinstance(program.loss, HingeLoss) and program.n_outputs == 1

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.conic import solve_hinge_lp

        return solve_hinge_lp(program.K, program.Y, program.lam, fit_offset=program.fit_offset)


class GroupProxNewton(RestrictedSolver):
    """Proximal Newton with block coordinate descent on its model, then Newton on the
    support (several outputs: squared, softmax)."""

    name = "group-prox-newton"
    #: CLARABEL (at ``conic.CLARABEL_OPTS``) stops at gaps of 1e-13 to 1e-11 at best, so the
    #: fallback could not do better (the working set asks for down to 1e-14 when a full scan
    #: finds no violator outside the working set).
    accuracy_floor = 1e-11

    def accepts(self, program: Program) -> bool:
        loss = program.loss
        return loss.shift_invariant or (loss.quadratic and program.n_outputs > 1)

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.groupsolve import group_prox_newton

        return group_prox_newton(
            program.K, program.Y, program.loss, program.lam, fit_offset=program.fit_offset,
            Z0=budget.Z0, tol=budget.tol, max_time=budget.remaining(),
        )


class CoordinateDescentNewton(RestrictedSolver):
    """(Block) coordinate descent from the warm start, alternated with Newton on the support
    (quadratic loss), within ``budget.max_sweeps`` sweeps.

    Dictionaries with near-duplicate columns (a polished neuron a degree away from its
    original) make coordinate descent crawl; once it has found the support, a few Newton
    steps on the support reach the optimum to rounding.
    """

    name = "cd+newton"
    slow = True

    def accepts(self, program: Program) -> bool:
        return program.loss.quadratic

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.cd import lasso_cd

        start = time.perf_counter()
        K, Y, loss, lam, fit = (
            program.K, program.Y, program.loss, program.lam, program.fit_offset,
        )
        total = max(int(budget.max_sweeps), 10)
        chunk = min(total, 1000)
        sol = lasso_cd(K, Y, lam, fit_offset=fit, tol=budget.tol, max_sweeps=chunk, Z0=budget.Z0)
        used = sol.iterations
        while sol.gap > budget.tol:
            checkpoint("coordinate descent")
            Z, t = refine_on_support(loss, K, Y, sol.Z, sol.t, lam, fit)
            fin = finish(loss, K, Y, Z, t, lam, fit, start, self.name, used)
            if fin.primal <= sol.primal:
                sol = fin
            if sol.gap <= budget.tol or used >= total:
                break
            more = lasso_cd(K, Y, lam, fit_offset=fit, tol=budget.tol, Z0=sol.Z,
                            max_sweeps=min(chunk, total - used))
            used += more.iterations
            if more.primal <= sol.primal:
                sol = more
        sol.iterations = used
        sol.solver = self.name
        sol.solve_time = time.perf_counter() - start
        return sol


class Clarabel(RestrictedSolver):
    """cvxpy with CLARABEL at high accuracy (which retries looser settings itself); SCS when
    CLARABEL fails on a non-smooth loss."""

    name = "cvxpy/CLARABEL"
    slow = True

    def accepts(self, program: Program) -> bool:
        return True

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.conic import solve_cvxpy

        args = (program.K, program.Y, program.loss, program.lam)
        try:
            return solve_cvxpy(*args, fit_offset=program.fit_offset)
        except WedgeNetError:
            if program.loss.smooth:
                raise
            return solve_cvxpy(*args, fit_offset=program.fit_offset, solver="SCS")


class Fista(RestrictedSolver):
    """Accelerated proximal gradient (smooth losses): slow, but it does not fail."""

    name = "fista"
    slow = True
    last_resort = True

    def accepts(self, program: Program) -> bool:
        return program.loss.smooth

    def solve(self, program: Program, budget: Budget) -> ProgramSolution:
        from wedgenet.solvers.fista import fista

        return fista(program, budget.tol)


#: The dispatch chain of :func:`solve_program`.
CHAIN: tuple[RestrictedSolver, ...] = (
    ActiveSet(),
    LogisticProxNewton(),
    HingeLinearProgram(),
    GroupProxNewton(),
    CoordinateDescentNewton(),
    Clarabel(),
    Fista(),
)


def solve_program(
    program: Program,
    *,
    tol: float = 1e-8,
    Z0: FloatArray | None = None,
    deadline: float | None = None,
    max_sweeps: int = 300,
    chain: Sequence[RestrictedSolver] = CHAIN,
) -> ProgramSolution:
    """Solve ``program`` by the first solvers of ``chain`` that accept it.

    Each accepting solver runs while the best solution so far has a relative gap above
    ``max(tol, floor)`` (``floor``: that solution's solver's
    :attr:`~RestrictedSolver.accuracy_floor`); the best solution (smallest gap) is warm
    start for the next and is returned. With a ``deadline``, nothing more runs once it has
    passed (the best solution is returned with its gap), and slow solvers are skipped for
    programs of more than :data:`SLOW_FALLBACK_MAX_ENTRIES` entries. A program without
    columns returns the best offset alone (``solver="zero"``).

    Raises
    ------
    WedgeNetError
        When no accepting solver returned a solution (the failures are listed).
    """
    if program.n_columns == 0:
        return program.zero_solution()
    best: ProgramSolution | None = None
    floor = tol
    tried: list[str] = []
    failures: list[str] = []
    warm = Z0
    for solver in chain:
        if not solver.accepts(program) or (solver.last_resort and best is not None):
            continue
        if best is not None:
            if best.gap <= floor:
                break
            if deadline is not None and time.perf_counter() > deadline:
                break
            if solver.slow and deadline is not None and (
                program.entries > SLOW_FALLBACK_MAX_ENTRIES
            ):
                continue
        checkpoint("restricted solve")
        tried.append(solver.name)
        try:
            sol = solver.solve(program, Budget(tol, warm, deadline, max_sweeps))
        except WedgeNetError as exc:
            failures.append(f"{solver.name}: {exc}")
            continue
        if sol is None:
            continue
        if best is None or sol.gap < best.gap:
            best = sol
            floor = max(tol, solver.accuracy_floor)
            warm = best.Z
    if best is None:
        raise WedgeNetError("no solver could solve the restricted program: " + "; ".join(failures))
    best.tried = tuple(tried)
    return best


__all__ = [
    "CHAIN",
    "SLOW_FALLBACK_MAX_ENTRIES",
    "Budget",
    "RestrictedSolver",
    "solve_program",
]
