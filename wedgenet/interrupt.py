"""Cooperative stopping of long computations (a cancelled job, a closed client).

Long loops of the engine call :func:`checkpoint` between bounded pieces of work (a chunk of
dictionary columns priced, a search walk, an outer iteration, a restricted solver, a polished
layer, a restart of the non-convex trainer). Inside :func:`stop_when` those checkpoints raise
:class:`~wedgenet.exceptions.SolveAborted` as soon as the given predicate returns true::

    with stop_when(cancelled.is_set):
        wedgenet.solve(X, y, lam=0.1)        # raises SolveAborted soon after cancelled.set()

The predicate is called at every checkpoint and must be cheap (a ``threading.Event`` check,
not a database query). Outside :func:`stop_when` a checkpoint costs one context-variable
lookup. The scope is a :class:`contextvars.ContextVar`: it holds for the thread (or task)
that entered it, not for helper threads the engine starts, which only run bounded pieces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from wedgenet.exceptions import SolveAborted

_should_stop: ContextVar[Callable[[], bool] | None] = ContextVar(
    "wedgenet_should_stop", default=None
)


@contextlib.contextmanager
def stop_when(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Within the block, :func:`checkpoint` raises once ``should_stop()`` is true."""
    token = _should_stop.set(should_stop)
    try:
        yield
    finally:
        _should_stop.reset(token)


def checkpoint(where: str) -> None:
    """Raise :class:`SolveAborted` if the current :func:`stop_when` predicate is true."""
    should_stop = _should_stop.get()
    if should_stop is not None and should_stop():
        raise SolveAborted(f"stopped on request ({where})")
