"""Shared fixtures for the service tests (app, worker, integration)."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

KEY_A = "test-key-a"
KEY_B = "test-key-b"
ROOT = Path(__file__).resolve().parent.parent


#: The Postgres the service tests use (CI creates it; each module that needs isolation derives
#: its own database from it with :func:`private_pg_database`).
PG_URL = os.environ.get("WEDGENET_TEST_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/wedgenet_test")


def reset_postgres(url: str) -> None:
    """Create the database of ``url`` if missing and empty its schema; fails the test when
    Postgres does not answer."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    try:
        admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            if not c.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                            {"d": u.database}):
                c.execute(text(f'CREATE DATABASE "{u.database}"'))
        admin.dispose()
        eng = create_engine(url, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text("DROP SCHEMA public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        eng.dispose()
    except Exception as exc:
        pytest.fail(f"Postgres at {url} is not reachable: {exc}")


def private_pg_database(suffix: str) -> str:
    """``<test database>_<suffix>`` on the test Postgres: created if missing, its schema
    reset and migrated; the URL. Fails the test when Postgres does not answer."""
    from sqlalchemy.engine import make_url

    from app.core.config import Settings
    from app.db import migrate

    base = make_url(PG_URL)
    url = base.set(database=f"{base.database}_{suffix}").render_as_string(hide_password=False)
    reset_postgres(url)
    migrate(Settings(database_url=url))
    return url


def truncate_all(url: str) -> None:
    """Empty every table of a migrated database (the schema stays)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        tables = c.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                "AND tablename <> 'alembic_version'")).all()
        if tables:
            c.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
    eng.dispose()


def sqlite_or_postgres(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """The database URL of a test parametrized over ``["sqlite", "postgres"]``: a fresh SQLite
    file ``<name>.db``, or the module's ``pg_database`` fixture (a private Postgres database)
    with every table emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    url: str = request.getfixturevalue("pg_database")
    truncate_all(url)
    return url


@contextmanager
def recorded_statements(engine: Any) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends to the database inside the ``with`` block."""
    from sqlalchemy import event

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def npy(arr: object) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def small_problem(n: int = 12, d: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, -1]
    return X, y


@pytest.fixture
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """In-process settings: a fresh SQLite file, a filesystem broker folder, two API keys."""
    from app.core.config import get_settings

    env = {
        "WEDGENET_DATABASE_URL": f"sqlite:///{tmp_path / 'wedgenet.db'}",
        "WEDGENET_BROKER_URL": "filesystem://",
        "WEDGENET_BROKER_DIR": str(tmp_path / "broker"),
        "WEDGENET_API_KEYS": f"{KEY_A},{KEY_B}",
        "WEDGENET_API_SWEEPER": "false",
        "WEDGENET_MAX_UPLOAD_BYTES": str(256 * 1024),
        "WEDGENET_MAX_ARRAY_BYTES": str(1024 * 1024),
        "WEDGENET_MAX_DICTIONARY_COLUMNS": "100000",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def client(service_env: dict[str, str]) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as c:
        c.headers["X-API-Key"] = KEY_A
        yield c


@pytest.fixture
def upload(client):  # type: ignore[no-untyped-def]
    """Upload (X, y) as .npy files with key A and return the dataset JSON."""

    def _upload(X: np.ndarray, y: np.ndarray, key: str = KEY_A) -> dict:  # type: ignore[type-arg]
        r = client.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
                        headers={"X-API-Key": key})
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    return _upload


def run_pending_jobs() -> list[str]:
    """Run every queued job in-process (what a worker would do)."""
    from sqlalchemy import select

    from app.db import session_scope
    from app.models import Job
    from worker.tasks import run_job_now

    with session_scope() as s:
        ids = s.scalars(select(Job.id).where(Job.state == "queued")).all()
    return [run_job_now(i) for i in ids]


os.environ.setdefault("WEDGENET_TEST", "1")


# ------------------------------------------------------------------ processes (Linux /proc)


def children(pid: int) -> list[int]:
    """Process ids of the direct children of ``pid``."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid``: its children, their children, ..."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
