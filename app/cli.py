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
import time
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
        # own process group, so the whole worker (main + pool children) is stopped together
        worker = subprocess.Popen(
            worker_command(args.workers), env=env, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    print(f"wedgenet: API on http://{args.host}:{args.port} (docs at /docs); "
          f"database {settings.database_url}", flush=True)
    import uvicorn

    stopper = WorkerStopper(worker, settings.shutdown_grace)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stopper.begin()  # the worker starts its warm shutdown while the API drains
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
        stopper.finish()
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(0)


class WorkerStopper:
    """Stops the worker subprocess within a bounded time, busy or not.

    :meth:`begin` (on the server's stop signal): SIGTERM to the worker's main process, Celery's
    warm shutdown: an idle worker exits at once; a running job gets ``grace`` seconds to
    finish, then the worker hands it back to the queue and it stops at its next checkpoint
    (``worker.housekeeping``). :meth:`finish` waits until ``grace + HARD_AFTER`` seconds after
    :meth:`begin`, then SIGKILLs the worker's whole process group (a job that ignores its
    cancellation, a worker that hangs): no process outlives ``serve``."""

    #: seconds after the grace for the job to stop and the worker to exit by itself
    HARD_AFTER = 4.0

    def __init__(self, proc: subprocess.Popen[bytes] | None, grace: float) -> None:
        self.proc, self.grace = proc, grace
        self.deadline: float | None = None

    def begin(self) -> None:
        if self.deadline is not None or self.proc is None:
            return
        self.deadline = time.monotonic() + self.grace + self.HARD_AFTER
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def finish(self) -> None:
        if self.proc is None:
            return
        self.begin()
        assert self.deadline is not None
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print("wedgenet: the worker did not stop in time; killing it", file=sys.stderr,
                  flush=True)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # no pool process outlives the worker
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "serve":
        print("usage: python -m app serve [--host H] [--port P] [--workers N] [--data-dir D]",
              file=sys.stderr)
        return 2
    return serve_main(argv[1:])
