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
from pathlib import Path

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
    """Linux: have the worker receive SIGTERM if ``serve`` dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PDEATHSIG
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

    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the
    # ``finally`` below still stops the worker
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        os.environ["WEDGENET_MIGRATE_ON_START"] = "false"
        get_settings.cache_clear()
        uvicorn.run("app.main:app", host=args.host, port=args.port, log_level="info")
    finally:
        if worker is not None:
            _stop_group(worker)
    return 0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown of the worker (SIGTERM to its main process: a running job may finish),
    then SIGKILL whatever is left of its process group after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # no pool child outlives the worker
    except ProcessLookupError:
        pass
    proc.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "serve":
        print("usage: python -m app serve [--host H] [--port P] [--workers N] [--data-dir D]",
              file=sys.stderr)
        return 2
    return serve_main(argv[1:])
