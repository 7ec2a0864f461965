"""Cancellation reaches a job in every stage: a real Celery worker stops a huge sampled solve
soon after the cancel, its pool process goes idle, and the next job runs at once."""

from __future__ import annotations

import time

import numpy as np
import pytest

from app.client import WedgenetClient
from tests.conftest import KEY_A, small_problem
from tests.conftest import children as _children

pytestmark = pytest.mark.integration


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().split(")")[-1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


def _busy(pids: list[int], window: float = 1.0) -> float:
    before = sum(_cpu_seconds(p) for p in pids)
    time.sleep(window)
    return sum(_cpu_seconds(p) for p in pids) - before


def test_cancel_stops_a_long_job_and_frees_the_worker(pg_url, redis_url, stack_factory) -> None:  # type: ignore[no-untyped-def]
    st = stack_factory(pg_url, redis_url)
    st.start_api()
    worker = st.start_worker()
    st.wait_workers_ready()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 20))
    y = np.abs(X[:, 0]) - X[:, 1]
    with WedgenetClient(st.base_url, KEY_A) as c:
        ds = c.upload_dataset(X, y)
        # the case: minutes of dictionary building and pricing
        job = c.submit(ds["id"], lam=0.1, source="sample", n_columns=2_000_000,
                       solver="workingset")
        deadline = time.monotonic() + 60
        while c.job(job["id"])["state"] != "running":
            assert time.monotonic() < deadline, c.job(job["id"])
            time.sleep(0.1)
        time.sleep(2.0)  # well inside the sampling / pricing
        pool = _children(worker.pid)
        assert pool and _busy(pool, 0.5) > 0.2, "the job should be computing"
        cancelled_at = time.monotonic()
        assert c.cancel(job["id"])["state"] == "cancelled"
        # cooperative stop: within the heartbeat interval (2 s) plus one checkpoint
        stopped = None
        while time.monotonic() - cancelled_at < 15:
            if _busy(_children(worker.pid), 0.5) < 0.1:
                stopped = time.monotonic() - cancelled_at
                break
        assert stopped is not None, "the worker kept computing the cancelled job"
        assert stopped < 8.0, f"stopped only after {stopped:.1f} s"
        # the worker is free: a small job is done at once
        Xs, ys = small_problem()
        small = c.submit(c.upload_dataset(Xs, ys)["id"], lam=0.1)
        done = c.wait(small["id"], timeout=60)
        assert done["state"] == "succeeded"
        assert done["finished_at"] is not None
        assert c.job(job["id"])["state"] == "cancelled"
    assert "did not stop within" not in st.logs(tail=10**6)  # no hard stop was needed
