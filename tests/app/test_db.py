"""Engine set-up (``app/db.py``): SQLite pragmas, pinging idle Postgres connections, and a
503 (not a 500) when the database goes away in the middle of a request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from app import db
from app.core.config import get_settings
from tests.conftest import KEY_A, private_pg_database, recorded_statements


def test_sqlite_synchronous_setting(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``normal`` by default (a commit is one write to the log, synced at checkpoints);
    ``WEDGENET_SQLITE_SYNCHRONOUS=full`` syncs at every commit. WAL in both."""
    for setting, expected in [(None, 1), ("full", 2), ("normal", 1)]:
        if setting is None:
            monkeypatch.delenv("WEDGENET_SQLITE_SYNCHRONOUS", raising=False)
        else:
            monkeypatch.setenv("WEDGENET_SQLITE_SYNCHRONOUS", setting)
        get_settings.cache_clear()
        engine = db.get_engine(f"sqlite:///{tmp_path / f'{setting}.db'}")
        with engine.connect() as c:
            assert c.scalar(text("PRAGMA synchronous")) == expected
            assert c.scalar(text("PRAGMA journal_mode")) == "wal"
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def pg_url() -> str:
    return private_pg_database("db")


def _kill_backends(url: str) -> int:
    """Terminate every other server connection to ``url``'s database; how many."""
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        killed = c.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": make_url(url).database}
        ).all()
    admin.dispose()
    time.sleep(0.2)  # let the terminations land
    return len(killed)


@pytest.fixture
def fresh_engine(pg_url: str) -> Iterator[str]:
    """``pg_url`` with no engine cached for it (each test builds its own pool)."""
    engine = db._engines.pop(pg_url, None)
    if engine is not None:
        engine.dispose()
    yield pg_url
    engine = db._engines.pop(pg_url, None)
    if engine is not None:
        engine.dispose()


def _backend_pid(url: str) -> int:
    with db.get_engine(url).connect() as c:
        return int(c.scalar(text("SELECT pg_backend_pid()")))


def test_idle_connection_is_pinged_and_replaced(fresh_engine: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooled connection whose server side went away while it sat idle is found dead by
    the ping and replaced: the caller never sees the error."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.05)
    first = _backend_pid(fresh_engine)
    assert _kill_backends(fresh_engine) >= 1
    second = _backend_pid(fresh_engine)  # idle > 0.05 s: pinged, dead, reconnected
    assert second != first


def test_connection_in_steady_use_is_not_pinged(fresh_engine: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection checked in moments ago is handed out without a round trip (what
    ``pool_pre_ping`` cost every request)."""
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 60.0)
    engine = db.get_engine(fresh_engine)
    _backend_pid(fresh_engine)
    with recorded_statements(engine) as statements:
        _backend_pid(fresh_engine)
    assert statements == ["SELECT pg_backend_pid()"], statements


def test_database_lost_mid_use_answers_503_then_recovers(
    fresh_engine: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """The server side of a connection in steady use goes away (a restart): that request
    answers 503 with Retry-After, and the next one works on a new connection."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 60.0)  # no ping would catch it
    for k, v in {"WEDGENET_DATABASE_URL": fresh_engine, "WEDGENET_API_KEYS": KEY_A,
                 "WEDGENET_BROKER_URL": "filesystem://",
                 "WEDGENET_BROKER_DIR": str(tmp_path / "broker"),
                 "WEDGENET_API_SWEEPER": "false"}.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as client:
            client.headers["X-API-Key"] = KEY_A
            assert client.get("/datasets").status_code == 200
            assert _kill_backends(fresh_engine) >= 1
            r = client.get("/datasets")
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "1" and "unavailable" in r.json()["detail"]
            assert client.get("/datasets").status_code == 200
    finally:
        get_settings.cache_clear()
