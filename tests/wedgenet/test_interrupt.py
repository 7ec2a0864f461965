"""Cooperative stopping: every long stage of the engine stops soon after it is asked to."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import wedgenet as wn
from wedgenet.interrupt import checkpoint, stop_when


def _stop_after(seconds: float) -> tuple[threading.Event, threading.Timer]:
    event = threading.Event()
    timer = threading.Timer(seconds, event.set)
    timer.start()
    return event, timer


def test_checkpoint_raises_only_inside_a_stopped_scope() -> None:
    checkpoint("outside")  # no scope: nothing happens
    flag = [False]
    with stop_when(lambda: flag[0]):
        checkpoint("not yet")
        flag[0] = True
        with pytest.raises(wn.SolveAborted, match="stopped on request \\(here\\)"):
            checkpoint("here")
    checkpoint("outside again")


@pytest.mark.parametrize(
    ("stage", "kwargs"),
    [
        # a sampled dictionary far too large to finish in the test's time
        ("sample", {"source": "sample", "n_columns": 3_000_000, "solver": "workingset"}),
        ("search", {"source": "search", "max_time": 60.0}),
    ],
)
def test_a_long_solve_stops_within_a_second_of_the_request(stage: str, kwargs: dict) -> None:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 12))
    y = np.abs(X[:, 0]) - X[:, 1]
    event, timer = _stop_after(1.0)
    start = time.perf_counter()
    try:
        with stop_when(event.is_set), pytest.raises(wn.SolveAborted):
            wn.solve(X, y, lam=0.1, **kwargs)
    finally:
        timer.cancel()
    # cooperative checkpoints come every second or so, also on this shared 2-core machine
    assert time.perf_counter() - start < 1.0 + 3.0, f"{stage} did not stop in time"


def test_polish_stops_between_stages() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    layers = [(rng.normal(size=(3, 20)), rng.normal(size=20)),
              (rng.normal(size=(20, 20)), rng.normal(size=20)),
              (rng.normal(size=(20, 1)), np.zeros(1))]
    with stop_when(lambda: True), pytest.raises(wn.SolveAborted):
        wn.polish(X, X[:, 0], layers, lam=0.1)
