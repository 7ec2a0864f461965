"""Real processes: uvicorn API, Celery workers, Redis broker, Postgres database.

These tests FAIL (never skip) when Redis or Postgres cannot be reached. Configure with
``WEDGENET_TEST_DATABASE_URL`` and ``WEDGENET_TEST_REDIS_URL`` (``.ci/run`` sets both).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY_A, KEY_B, ROOT, reset_postgres

PG_URL = os.environ.get("WEDGENET_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/wedgenet_test")
REDIS_URL = os.environ.get("WEDGENET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping_redis(url: str) -> None:
    import redis

    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=3)
        r.ping()
        r.flushdb()
    except Exception as exc:
        pytest.fail(f"Redis at {url} is not reachable: {exc}")


class Stack:
    """Starts and stops the API and worker processes for one test."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = {**os.environ, **env,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                os.environ.get("PYTHONPATH")]))}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.n = 0

    def _spawn(self, cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        self.n += 1
        log = open(self.tmp / f"{self.n:02d}-{name}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def start_api(self, cmd: list[str] | None = None, timeout: float = 60) -> None:
        cmd = cmd or [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                      "--port", str(self.port), "--log-level", "warning"]
        p = self._spawn(cmd, "api")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                pytest.fail(f"API exited with {p.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail(f"API did not come up:\n{self.logs()}")

    def start_worker(self) -> subprocess.Popen[bytes]:
        from app.cli import worker_command

        p = self._spawn(worker_command(1, "INFO"), "worker")
        self.workers.append(p)
        return p

    def wait_workers_ready(self, timeout: float = 90) -> None:
        """Until every started worker logged Celery's ``ready.`` line (consuming)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = [f.read_text(errors="replace") for f in sorted(self.tmp.glob("*-worker.log"))]
            if len(logs) >= len(self.workers) and all(" ready." in t for t in logs):
                return
            for p in self.workers:
                if p.poll() is not None:
                    pytest.fail(f"a worker exited with {p.returncode}:\n{self.logs()}")
            time.sleep(0.2)
        pytest.fail(f"workers did not become ready:\n{self.logs()}")

    def kill_worker(self, p: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children (like a container being killed)."""
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def logs(self, tail: int = 3000) -> str:
        out = []
        for f in sorted(self.tmp.glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def stack_env(database_url: str, broker_url: str, tmp: Path) -> dict[str, str]:
    return {
        "WEDGENET_DATABASE_URL": database_url,
        "WEDGENET_BROKER_URL": broker_url,
        "WEDGENET_BROKER_DIR": str(tmp / "broker"),
        "WEDGENET_API_KEYS": f"{KEY_A},{KEY_B}",
        "WEDGENET_HEARTBEAT_INTERVAL": "0.5",
        "WEDGENET_STALE_AFTER": "4",
        "WEDGENET_QUEUED_STALE_AFTER": "6",
        "WEDGENET_SWEEP_INTERVAL": "1",
        "WEDGENET_EMBEDDED": "false",
    }


@pytest.fixture
def pg_url() -> str:
    reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def redis_url() -> str:
    ping_redis(REDIS_URL)
    return REDIS_URL


@pytest.fixture
def stack_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    stacks: list[Stack] = []

    def make(database_url: str, broker_url: str, **extra: str) -> Stack:
        st = Stack(tmp_path, {**stack_env(database_url, broker_url, tmp_path), **extra})
        stacks.append(st)
        return st

    yield make
    failed = getattr(request.node, "rep_call", None)
    for st in stacks:
        st.stop()
        if failed is not None and failed.failed:
            print(st.logs())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def count_networks(database_url: str, job_id: str) -> int:
    from sqlalchemy import create_engine, text

    eng = create_engine(database_url)
    with eng.connect() as c:
        n = c.scalar(text("SELECT count(*) FROM networks WHERE job_id = :j"), {"j": job_id})
    eng.dispose()
    return int(n or 0)
