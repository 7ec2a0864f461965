"""The restricted-solver interface: which solver takes which program, what the chain records,
and that every dispatched solution agrees with the cvxpy reference."""

from __future__ import annotations

import time

import numpy as np
import pytest

from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import get_loss
from wedgenet.programs import Program, ProgramSolution
from wedgenet.solvers import CHAIN, Budget, RestrictedSolver, solve_program
from wedgenet.solvers.conic import solve_cvxpy


def relu_columns(n: int = 40, m: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    W = rng.normal(size=(2, m))
    W /= np.abs(W).sum(axis=0)
    b = rng.normal(size=m) * 0.5
    return X, np.maximum(X @ W + b, 0.0)


def targets(loss: str, X: np.ndarray, c: int) -> np.ndarray:
    if loss == "squared":
        return np.column_stack([np.sin(2 * X[:, 0] + k) + X[:, 1] for k in range(c)])
    if loss == "softmax":
        labels = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.3).astype(int)
        Y = np.zeros((X.shape[0], 3))
        Y[np.arange(X.shape[0]), labels] = 1.0
        return Y
    return np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)[:, None]


@pytest.mark.parametrize(
    ("loss", "c", "first"),
    [
        ("squared", 1, "activeset"),
        ("squared", 3, "group-prox-newton"),
        ("logistic", 1, "prox-newton"),
        ("hinge", 1, "highs"),
        ("softmax", 3, "group-prox-newton"),
    ],
)
@pytest.mark.parametrize("fit_offset", [True, False])
def test_chain_dispatches_by_declared_properties_and_matches_cvxpy(
    loss: str, c: int, first: str, fit_offset: bool
) -> None:
    X, K = relu_columns()
    Y = targets(loss, X, c)
    lam = 0.05
    program = Program(K, Y, get_loss(loss), lam, fit_offset)
    sol = solve_program(program, tol=1e-9)
    assert sol.tried[0] == first
    assert sol.solver in sol.tried
    accepting = [s.name for s in CHAIN if s.accepts(program)]
    assert accepting[0] == first
    ref = solve_cvxpy(K, Y, get_loss(loss), lam, fit_offset=fit_offset)
    # the two are independent: each one's dual bound is below the other's primal value
    scale = max(1.0, abs(ref.primal))
    assert sol.dual <= ref.primal + 1e-9 * scale
    assert ref.dual <= sol.primal + 1e-9 * scale
    assert sol.primal == pytest.approx(ref.primal, rel=1e-6)
    assert program.objective(sol.Z, sol.t) == pytest.approx(sol.primal, rel=1e-12)


def test_program_validates_lam_and_shapes() -> None:
    K = np.ones((3, 2))
    Y = np.ones((3, 1))
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "x"):
        with pytest.raises(WedgeNetError, match="lam must be a positive number"):
            Program(K, Y, get_loss("squared"), bad)  # type: ignore[arg-type]
    with pytest.raises(WedgeNetError, match="do not match"):
        Program(K, np.ones((4, 1)), get_loss("squared"), 0.1)


def test_program_without_columns_returns_the_best_offset() -> None:
    Y = np.array([[1.0], [2.0], [4.0]])
    sol = solve_program(Program(np.zeros((3, 0)), Y, get_loss("squared"), 0.1))
    assert sol.Z.shape == (0, 1) and sol.solver == "zero"
    assert sol.t[0] == pytest.approx(7 / 3)
    assert sol.gap <= 1e-15


class _Fake(RestrictedSolver):
    """A stand-in solver for unit tests of the chain's control flow."""

    def __init__(self, name: str, gap: float | None, *, slow: bool = False,
                 last_resort: bool = False, fail: bool = False, sleep: float = 0.0) -> None:
        self.name = name  # type: ignore[misc]
        self.slow = slow  # type: ignore[misc]
        self.last_resort = last_resort  # type: ignore[misc]
        self.gap_value = gap
        self.fail = fail
        self.sleep = sleep
        self.calls = 0

    def accepts(self, program: Program) -> bool:
        return True

    def solve(self, program: Program, budget: Budget) -> ProgramSolution | None:
        self.calls += 1
        time.sleep(self.sleep)
        if self.fail:
            raise WedgeNetError("numerical trouble")
        if self.gap_value is None:
            return None
        m, c = program.n_columns, program.n_outputs
        return ProgramSolution(
            Z=np.zeros((m, c)), t=np.zeros(c), V=np.zeros((3, c)), primal=1.0,
            dual=1.0 - self.gap_value, max_score=0.0, solve_time=0.0, solver=self.name,
        )


def _program(m: int = 2) -> Program:
    return Program(np.ones((3, m)), np.ones((3, 1)), get_loss("squared"), 0.1)


def test_chain_stops_at_tol_keeps_the_best_and_records_what_ran() -> None:
    a, b, c = _Fake("a", 1e-3), _Fake("b", 1e-2), _Fake("c", 1e-12)
    sol = solve_program(_program(), tol=1e-9, chain=[a, b, c, _Fake("d", 0.0)])
    assert sol.solver == "c" and sol.tried == ("a", "b", "c")
    worse_later = solve_program(_program(), tol=1e-9, chain=[_Fake("a", 1e-3), _Fake("b", 1e-2)])
    assert worse_later.solver == "a" and worse_later.tried == ("a", "b")


def test_failures_are_skipped_and_reported() -> None:
    sol = solve_program(
        _program(), tol=1e-9,
        chain=[_Fake("bad", None, fail=True), _Fake("none", None), _Fake("ok", 0.0)],
    )
    assert sol.solver == "ok" and sol.tried == ("bad", "none", "ok")
    with pytest.raises(WedgeNetError, match="bad: numerical trouble"):
        solve_program(_program(), chain=[_Fake("bad", None, fail=True)])


def test_last_resort_runs_only_without_any_solution() -> None:
    rescue = _Fake("rescue", 0.5, last_resort=True)
    sol = solve_program(_program(), tol=1e-9, chain=[_Fake("a", 1e-3), rescue])
    assert sol.solver == "a" and rescue.calls == 0
    sol = solve_program(_program(), tol=1e-9, chain=[_Fake("a", None), rescue])
    assert sol.solver == "rescue" and rescue.calls == 1


def test_deadline_stops_the_chain_and_big_programs_skip_slow_solvers() -> None:
    late = _Fake("late", 0.0)
    sol = solve_program(
        _program(), tol=1e-9, deadline=time.perf_counter() + 0.01,
        chain=[_Fake("first", 1e-3, sleep=0.05), late],
    )
    assert sol.solver == "first" and late.calls == 0
    slow = _Fake("slow", 0.0, slow=True)
    big = Program(np.ones((1000, 1001)), np.ones((1000, 1)), get_loss("squared"), 0.1)
    sol = solve_program(
        big, tol=1e-9, deadline=time.perf_counter() + 60, chain=[_Fake("fast", 1e-3), slow]
    )
    assert sol.solver == "fast" and slow.calls == 0
    # without a deadline the slow solver runs
    sol = solve_program(big, tol=1e-9, chain=[_Fake("fast", 1e-3), slow])
    assert sol.solver == "slow"
