"""End to end over real HTTP with real Celery workers: Redis + Postgres, and the embedded
default (SQLite + filesystem broker); SIGKILLed workers and a Redis restart lose nothing."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.client import WedgenetClient, WedgenetError
from tests.conftest import KEY_A, KEY_B, alive, children, small_problem
from tests.integration.conftest import count_networks, free_port

pytestmark = pytest.mark.integration

# A real, deliberately slow job for the tests that kill a worker (or Redis) mid-job: the
# reference cvxpy/CLARABEL solve over the materialized exhaustive dictionary (about 23,000
# columns), several seconds on 2 cores, so the job surely is still running at the kill.
LONG = {"n": 150, "d": 2, "lam": 0.05}


def long_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(LONG["n"], LONG["d"]))
    return X, np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1]) + 0.1 * rng.normal(size=LONG["n"])


def check_flow(c: WedgenetClient, other: WedgenetClient | None = None) -> None:
    X, y = small_problem()
    ds = c.upload_dataset(X, y, name="small")
    job = c.submit(ds["id"], lam=0.1)
    assert job["state"] == "queued"
    seen: list[float] = []
    done = c.wait(job["id"], timeout=120, on_progress=lambda j: seen.append(
        j["progress"]["fraction"]))
    assert done["state"] == "succeeded" and done["progress"]["fraction"] == 1.0
    net = c.network(done["network_id"])
    assert net["certified"] and net["n_neurons"] == len(net["neurons"]) > 0
    import wedgenet

    ref = wedgenet.solve(X, y, lam=0.1)
    np.testing.assert_allclose(c.predict(net["id"], X), ref.network.decision_function(X),
                               atol=1e-5)
    assert abs(net["primal_objective"] - ref.primal_objective) <= 1e-6 * max(
        1.0, abs(ref.primal_objective))
    sample = net["neurons"][0]["index_set"]["samples"][0]
    hits = c.neurons(sample)["items"]
    assert net["neurons"][0]["id"] in {h["neuron_id"] for h in hits}
    if other is not None:
        for call in (lambda: other.job(job["id"]), lambda: other.network(net["id"]),
                     lambda: other.cancel(job["id"]), lambda: other.dataset(ds["id"])):
            with pytest.raises(WedgenetError) as exc:
                call()
            assert exc.value.status == 404


def test_e2e_redis_postgres(pg_url, redis_url, stack_factory) -> None:
    st = stack_factory(pg_url, redis_url)
    st.start_api()
    st.start_worker()
    with WedgenetClient(st.base_url, KEY_A) as a, WedgenetClient(st.base_url, KEY_B) as b:
        check_flow(a, b)


def _wait_running(c: WedgenetClient, job_id: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = c.job(job_id)
        if j["state"] == "running":
            return j
        assert j["state"] in ("queued", "running"), j
        time.sleep(0.1)
    raise AssertionError(f"job never got going: {c.job(job_id)}")


def _submit_long(c: WedgenetClient) -> str:
    X, y = long_problem()
    ds = c.upload_dataset(X, y)
    return str(c.submit(ds["id"], lam=LONG["lam"], solver="cvxpy")["id"])


def test_sigkill_worker_mid_job(pg_url, redis_url, stack_factory) -> None:
    st = stack_factory(pg_url, redis_url)
    st.start_api()
    w = st.start_worker()
    with WedgenetClient(st.base_url, KEY_A) as c:
        job_id = _submit_long(c)
        _wait_running(c, job_id)
        time.sleep(1.0)
        st.kill_worker(w)
        j = c.job(job_id)
        assert j["state"] == "running" and j["attempts"] == 1, j
        st.start_worker()
        done = c.wait(job_id, timeout=180)
        assert done["state"] == "succeeded" and done["attempts"] >= 2, done
        time.sleep(2)  # give any redelivered duplicate a chance to run
        assert count_networks(pg_url, job_id) == 1
        assert c.job(job_id)["state"] == "succeeded"


def test_redis_restart(pg_url, stack_factory, tmp_path: Path) -> None:
    """Redis (AOF) killed mid-job and restarted; a job submitted while it is down is kept."""
    redis_bin = shutil.which("redis-server")
    assert redis_bin, "redis-server binary is required for this test"
    port = free_port()
    rdir = tmp_path / "redis"
    rdir.mkdir()
    cmd = [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir),
           "--appendonly", "yes", "--appendfsync", "always", "--save", ""]

    def start_redis() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                return p
            except Exception:
                time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    rp = start_redis()
    try:
        st = stack_factory(pg_url, f"redis://127.0.0.1:{port}/0")
        st.start_api()
        st.start_worker()
        with WedgenetClient(st.base_url, KEY_A, timeout=60) as c:
            long_id = _submit_long(c)
            _wait_running(c, long_id)
            rp.send_signal(signal.SIGKILL)
            rp.wait()
            X, y = small_problem(seed=3)
            ds = c.upload_dataset(X, y)
            small = c.submit(ds["id"], lam=0.1)  # broker down: accepted, kept in SQL
            assert small["state"] == "queued"
            time.sleep(2)
            rp = start_redis()
            for jid in (long_id, small["id"]):
                done = c.wait(jid, timeout=180)
                assert done["state"] == "succeeded", done
            time.sleep(1)
            assert count_networks(pg_url, long_id) == 1
            assert count_networks(pg_url, small["id"]) == 1
    finally:
        if rp.poll() is None:
            rp.terminate()
            rp.wait(timeout=10)


def test_embedded_default(tmp_path: Path, stack_factory) -> None:
    """``python -m app serve``: SQLite + filesystem broker + worker subprocess, dev key."""
    data = tmp_path / "var"
    st = stack_factory(f"sqlite:///{data / 'wedgenet.db'}", "filesystem://")
    for k in ("WEDGENET_DATABASE_URL", "WEDGENET_BROKER_URL", "WEDGENET_BROKER_DIR",
              "WEDGENET_API_KEYS", "WEDGENET_EMBEDDED"):
        st.env.pop(k, None)
    st.start_api([sys.executable, "-m", "app", "serve", "--port", str(st.port),
                  "--data-dir", str(data)])
    with WedgenetClient(st.base_url, "dev-key") as c:
        check_flow(c)
    assert (data / "wedgenet.db").exists()
    assert "dev-key" in st.logs(tail=10**7)
    api = st.procs[0]
    worker = children(api.pid)
    assert len(worker) == 1, worker
    pids = worker + children(worker[0])  # the worker's main process and its pool child
    api.send_signal(signal.SIGTERM)  # serve stops its worker process group itself
    api.wait(timeout=40)
    time.sleep(0.5)
    assert [p for p in pids if alive(p)] == [], "serve left worker processes running"


def test_embedded_sigkill_worker(tmp_path: Path, stack_factory) -> None:
    """Filesystem broker: the message is gone once a worker took it; the sweeper recovers."""
    data = tmp_path / "var"
    st = stack_factory(f"sqlite:///{data / 'wedgenet.db'}", "filesystem://",
                       WEDGENET_BROKER_DIR=str(data / "broker"))
    st.start_api([sys.executable, "-m", "app", "serve", "--port", str(st.port),
                  "--data-dir", str(data), "--no-worker"])
    w = st.start_worker()
    with WedgenetClient(st.base_url, KEY_A) as c:
        job_id = _submit_long(c)
        _wait_running(c, job_id)
        st.kill_worker(w)
        st.start_worker()
        done = c.wait(job_id, timeout=180)
        assert done["state"] == "succeeded" and done["attempts"] >= 2, done
        time.sleep(1)
        assert count_networks(f"sqlite:///{data / 'wedgenet.db'}", job_id) == 1


