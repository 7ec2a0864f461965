"""``wedgenet serve`` / ``python -m app serve``: the embedded default, no servers to install.

Starts the API (uvicorn) and a Celery worker subprocess on SQLite and Celery's filesystem
broker under ``./var/``. Environment variables (``WEDGENET_*``) override every default.

The worker compiles the numerical kernels before it takes jobs (on the first start after an
install, about half a minute; later starts load them from numba's on-disk cache in a second or
two; see :mod:`wedgenet.warmup`), so a job queued meanwhile waits instead of compiling.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: modules of the ``service`` extra that ``serve`` needs (this module itself imports only the
#: standard library, so ``wedgenet serve`` can say what is missing)
SERVICE_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "celery", "pydantic_settings")


def missing_service_modules() -> list[str]:
    return [m for m in SERVICE_MODULES if importlib.util.find_spec(m) is None]


def embedded_env(data_dir: str) -> dict[str, str]:
    var = Path(data_dir).resolve()
    var.mkdir(parents=True, exist_ok=True)
    env = {
        "WEDGENET_DATABASE_URL": f"sqlite:///{var / 'wedgenet.db'}",
        "WEDGENET_BROKER_URL": "filesystem://",
        "WEDGENET_BROKER_DIR": str(var / "broker"),
        "WEDGENET_EMBEDDED": "true",
    }
    return {k: os.environ.get(k, v) for k, v in env.items()}


def worker_command(concurrency: int = 1, loglevel: str = "INFO") -> list[str]:
    """The Celery worker process ``serve`` starts (the worker is run, never imported)."""
    from app.broker import QUEUE

    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            f"--loglevel={loglevel}", f"--concurrency={concurrency}", "-Q", QUEUE,
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the worker's main process is killed (SIGKILL) if ``serve`` dies without
    stopping it (serve itself SIGKILLed); its pool processes then exit by themselves
    (``worker.housekeeping.watch_parent``), so nothing is left computing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG
    except Exception:
        pass


def serve_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wedgenet serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (concurrency)")
    parser.add_argument("--data-dir", default="./var", help="SQLite file and broker folder")
    parser.add_argument("--no-worker", action="store_true", help="run the API only")
    parser.add_argument("--no-warmup", action="store_true",
                        help="the worker skips compiling the numerical kernels at start "
                             "(its first jobs then compile what they use)")
    args = parser.parse_args(argv)
    missing = missing_service_modules()
    if missing:
        print("error: 'wedgenet serve' needs the service extra: pip install 'wedgenet[service]' "
              f"(missing: {', '.join(missing)})", file=sys.stderr)
        return 2

    os.environ.update(embedded_env(args.data_dir))
    from app.core.config import DEV_KEY, get_settings

    get_settings.cache_clear()
    settings = get_settings()
    if not settings.api_keys.strip():
        print(f"wedgenet: no WEDGENET_API_KEYS set; using the development key {DEV_KEY!r} "
              "(send it as the X-API-Key header)", flush=True)
    from app.db import migrate

    migrate(settings)
    worker = None
    if not args.no_worker:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        if args.no_warmup:
            env["WEDGENET_WARMUP"] = "false"
        command = worker_command(args.workers)

        def start_worker() -> subprocess.Popen[bytes]:
            # own process group, so the whole worker (main + pool children) is stopped together
            return subprocess.Popen(
                command, env=env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

        worker = WorkerSupervisor(start_worker, settings.shutdown_grace)
        worker.start()
    print(f"wedgenet: API on http://{args.host}:{args.port} (docs at /docs); "
          f"database {settings.database_url}", flush=True)
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if worker is not None:
                worker.begin()  # the worker starts its warm shutdown while the API drains
            super().handle_exit(sig, frame)

    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the
    # ``finally`` below still stops the worker
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        os.environ["WEDGENET_MIGRATE_ON_START"] = "false"
        get_settings.cache_clear()
        config = uvicorn.Config("app.main:app", host=args.host, port=args.port,
                                log_level="info",
                                timeout_graceful_shutdown=max(1, int(settings.shutdown_grace)))
        Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        # a second SIGTERM/SIGINT must not cut the worker's stop short (that orphans it)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if worker is not None:
            worker.finish()
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(0)


class WorkerSupervisor:
    """Runs the worker subprocess of ``serve``: restarts it when it dies by itself, and stops it
    within a bounded time, busy or not.

    A worker that exits while ``serve`` is not stopping (killed by the OOM killer, a crash) is
    started again after a pause that doubles with each failure in a row (1 s up to
    ``MAX_RESTART_DELAY``; a worker that ran ``HEALTHY_AFTER`` seconds resets it). Its process
    group is killed first, so no pool process of the dead worker goes on computing; the job it
    was running is re-queued by the recovery sweep (``WEDGENET_STALE_AFTER``) and taken up by
    the new worker.

    :meth:`begin` (on the server's stop signal): no more restarts; SIGTERM to the worker's main
    process, Celery's warm shutdown: an idle worker exits at once; a running job gets ``grace``
    seconds to finish, then the worker hands it back to the queue and it stops at its next
    checkpoint (``worker.housekeeping``). :meth:`finish` waits until ``grace + HARD_AFTER``
    seconds after :meth:`begin`, then SIGKILLs the worker's whole process group (a job that
    ignores its cancellation, a worker that hangs): no process outlives ``serve``."""

    #: seconds after the grace for the job to stop and the worker to exit by itself
    HARD_AFTER = 4.0
    #: longest pause before restarting a worker that keeps dying
    MAX_RESTART_DELAY = 30.0
    #: a worker that ran this long before it died is restarted after the shortest pause
    HEALTHY_AFTER = 60.0
    #: how often the watcher looks at the worker
    POLL_INTERVAL = 0.5

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], grace: float) -> None:
        self._start, self.grace = start, grace
        self.proc: subprocess.Popen[bytes] | None = None
        self.deadline: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker and the thread that restarts it when it dies."""
        with self._lock:
            self.proc = self._start()
        self._watcher = threading.Thread(target=self._watch, name="wedgenet-worker-watch",
                                         daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        failures, started = 0, time.monotonic()
        while not self._stopping.wait(self.POLL_INTERVAL):
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            ran = time.monotonic() - started
            failures = 1 if ran >= self.HEALTHY_AFTER else failures + 1
            delay = min(self.MAX_RESTART_DELAY, 2.0 ** (failures - 1))
            print(f"wedgenet: the worker exited (code {proc.returncode}) after {ran:.0f} s; "
                  f"restarting it in {delay:.0f} s", file=sys.stderr, flush=True)
            _kill_group(proc.pid)  # pool processes of the dead worker
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._start()
            started = time.monotonic()

    def begin(self) -> None:
        with self._lock:
            if self.deadline is not None:
                return
            self._stopping.set()
            self.deadline = time.monotonic() + self.grace + self.HARD_AFTER
            proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def finish(self) -> None:
        self.begin()
        assert self.deadline is not None
        if self._watcher is not None:
            self._watcher.join()
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print("wedgenet: the worker did not stop in time; killing it", file=sys.stderr,
                  flush=True)
        _kill_group(proc.pid)  # no pool process outlives the worker
        proc.wait()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "serve":
        print("usage: python -m app serve [--host H] [--port P] [--workers N] [--data-dir D]",
              file=sys.stderr)
        return 2
    return serve_main(argv[1:])
