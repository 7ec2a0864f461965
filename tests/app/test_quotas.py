"""Per-key quotas (app/quotas.py) on SQLite and Postgres: active jobs, stored bytes, request
rate; 429 with Retry-After, checked before any work, nothing stored; 0 disables each. The
Postgres runs use their own database ``<WEDGENET_TEST_DATABASE_URL's name>_quotas``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import (
    KEY_A,
    KEY_B,
    npy,
    private_pg_database,
    small_problem,
    sqlite_or_postgres,
)

REDIS_URL = os.environ.get("WEDGENET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="module")
def pg_database() -> str:
    return private_pg_database("quotas")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return sqlite_or_postgres(request, tmp_path, "quotas")


Client = Callable[..., Any]


@pytest.fixture
def make_client(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """``make_client(**settings)``: an in-process client with these quota settings (the
    others off unless given)."""
    from fastapi.testclient import TestClient

    from app.core.config import get_settings
    from app.main import create_app

    opened: list[Any] = []

    def make(**settings: str) -> Any:
        env = {"WEDGENET_DATABASE_URL": db_url, "WEDGENET_BROKER_URL": "filesystem://",
               "WEDGENET_BROKER_DIR": str(tmp_path / "broker"),
               "WEDGENET_API_KEYS": f"{KEY_A},{KEY_B}", "WEDGENET_API_SWEEPER": "false",
               "WEDGENET_QUOTA_ACTIVE_JOBS": "0", "WEDGENET_QUOTA_STORAGE_BYTES": "0",
               "WEDGENET_RATE_LIMIT": "0",
               **{f"WEDGENET_{k.upper()}": v for k, v in settings.items()}}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        c = TestClient(create_app())
        c.__enter__()
        c.headers["X-API-Key"] = KEY_A
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)
    get_settings.cache_clear()


def _upload(c: Any, seed: int, key: str = KEY_A) -> Any:
    X, y = small_problem(n=20, seed=seed)
    return c.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
                  headers={"X-API-Key": key})


def _too_many(r: Any, mentions: str) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert mentions in r.json()["detail"]


def test_active_jobs_quota(make_client: Client) -> None:
    c = make_client(quota_active_jobs="3")
    ds = _upload(c, 0).json()["id"]
    ids = []
    for k in range(3):
        r = c.post("/jobs", json={"dataset_id": ds, "params": {"lam": 0.1 + k}},
                   headers={"Idempotency-Key": f"k{k}"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    r = c.post("/jobs", json={"dataset_id": ds, "params": {"lam": 5.0}})
    _too_many(r, "WEDGENET_QUOTA_ACTIVE_JOBS")
    assert r.headers["Retry-After"] == "5"
    # checked before anything else: even an unknown dataset answers 429, not 404
    _too_many(c.post("/jobs", json={"dataset_id": "nope", "params": {"lam": 1.0}}),
              "quota is 3")
    assert c.get("/jobs").json()["total"] == 3  # nothing stored
    # a replayed request is not new work: the same job again
    again = c.post("/jobs", json={"dataset_id": ds, "params": {"lam": 0.1}},
                   headers={"Idempotency-Key": "k0"})
    assert again.status_code == 202 and again.json()["id"] == ids[0]
    # per key: another key is not affected
    ds_b = _upload(c, 0, key=KEY_B).json()["id"]
    assert c.post("/jobs", json={"dataset_id": ds_b, "params": {"lam": 0.1}},
                  headers={"X-API-Key": KEY_B}).status_code == 202
    # a finished (cancelled) job frees its slot
    assert c.post(f"/jobs/{ids[0]}/cancel").status_code == 200
    assert c.post("/jobs", json={"dataset_id": ds, "params": {"lam": 5.0}}).status_code == 202


def test_active_jobs_quota_disabled(make_client: Client) -> None:
    c = make_client(quota_active_jobs="0")
    ds = _upload(c, 0).json()["id"]
    for k in range(6):
        assert c.post("/jobs", json={"dataset_id": ds,
                                     "params": {"lam": 0.1 + k}}).status_code == 202


def _blob_count(c: Any) -> int:
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import Blob

    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(Blob)) or 0)


def test_storage_quota(make_client: Client) -> None:
    # one dataset of n = 20, d = 2: X 448 bytes + y 288 bytes as .npy blobs
    per_dataset = 448 + 288
    c = make_client(quota_storage_bytes=str(2 * per_dataset + 100))
    first = _upload(c, 0)
    assert first.status_code == 201
    assert _upload(c, 1).status_code == 201
    blobs = _blob_count(c)
    # over the quota once parsed: refused, nothing stored
    _too_many(_upload(c, 2), "WEDGENET_QUOTA_STORAGE_BYTES")
    assert c.get("/datasets").json()["total"] == 2 and _blob_count(c) == blobs
    # the same content again takes no space: still the existing dataset
    again = _upload(c, 0)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # weight sets count too
    W1, b1 = np.ones((2, 30)), np.zeros(30)
    files = {"W": ("W.npy", npy(W1)), "b": ("b.npy", npy(b1))}
    _too_many(c.post("/weights", files=files), "delete datasets or weight sets")
    # per key
    assert _upload(c, 2, key=KEY_B).status_code == 201


def test_storage_quota_full_refuses_before_reading(make_client: Client) -> None:
    c = make_client(quota_storage_bytes=str(448 + 288))
    assert _upload(c, 0).status_code == 201  # exactly at the quota now
    # refused before the body is parsed: a malformed upload answers 429, not 422
    junk = {"X": ("X.npy", b"not an array"), "y": ("y.npy", b"nor this")}
    _too_many(c.post("/datasets", files=junk), "quota is 736 bytes")
    _too_many(c.post("/weights", files={"file": ("w.npz", b"junk")}), "quota")
    assert c.get("/datasets").status_code == 200  # reading is not refused
    # deleting frees the space
    ds = c.get("/datasets").json()["items"][0]["id"]
    assert c.delete(f"/datasets/{ds}").status_code == 204
    assert _upload(c, 1).status_code == 201


def test_rate_limit(make_client: Client) -> None:
    c = make_client(rate_limit="2", rate_burst="5")
    assert [c.get("/datasets").status_code for _ in range(5)] == [200] * 5
    r = c.get("/datasets")
    _too_many(r, "WEDGENET_RATE_LIMIT")
    # per key; no key or a wrong key: 401 as always (not limited, no bucket)
    assert c.get("/datasets", headers={"X-API-Key": KEY_B}).status_code == 200
    assert c.get("/datasets", headers={"X-API-Key": "nope"}).status_code == 401
    assert c.get("/health").status_code == 200
    time.sleep(0.6)  # a token comes back every 0.5 s
    assert c.get("/datasets").status_code == 200
    assert c.get("/datasets").status_code == 429
    # uploads are refused before the body is read
    _too_many(c.post("/datasets", files={"X": ("X.npy", b"junk")}), "requests per second")


def test_rate_limit_disabled(make_client: Client) -> None:
    c = make_client(rate_limit="0", rate_burst="1")
    assert all(c.get("/datasets").status_code == 200 for _ in range(30))


def test_rate_limit_shared_through_redis(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With a Redis broker every API process takes from the same bucket of a key; while
    Redis cannot be reached the limit is not enforced (fail open)."""
    import redis
    from fastapi.testclient import TestClient

    from app.core.config import get_settings
    from app.main import create_app

    try:
        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        r.delete(*r.keys("wedgenet:rate:*") or ["-"])
    except Exception as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
    env = {"WEDGENET_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}",
           "WEDGENET_BROKER_URL": REDIS_URL, "WEDGENET_API_KEYS": KEY_A,
           "WEDGENET_API_SWEEPER": "false", "WEDGENET_RATE_LIMIT": "0.5",
           "WEDGENET_RATE_BURST": "4"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        h = {"X-API-Key": KEY_A}
        with TestClient(create_app()) as one, TestClient(create_app()) as two:
            codes = [c.get("/datasets", headers=h).status_code for c in (one, two, one, two)]
            assert codes == [200] * 4
            third = two.get("/datasets", headers=h)
            _too_many(third, "0.5 requests per second")
            assert int(third.headers["Retry-After"]) == 2
        monkeypatch.setenv("WEDGENET_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing there
        get_settings.cache_clear()
        with TestClient(create_app()) as down:
            assert all(down.get("/datasets", headers=h).status_code == 200 for _ in range(6))
    finally:
        get_settings.cache_clear()
        r.delete(*r.keys("wedgenet:rate:*") or ["-"])
        r.close()


def test_more_concurrent_requests_than_connections(make_client: Client) -> None:
    """64 concurrent GET /jobs/{id} (more than the 15 pooled connections and the 40 worker
    threads): every one answers. Before, every worker thread could wait for a connection held
    by a request whose response still needed a worker thread: no answer within 30 s."""
    import asyncio

    import httpx

    c = make_client()
    ds = _upload(c, 0).json()["id"]
    job = c.post("/jobs", json={"dataset_id": ds, "params": {"lam": 0.1}}).json()["id"]

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=c.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     headers={"X-API-Key": KEY_A}, timeout=20) as ac:
            rs = await asyncio.gather(*(ac.get(f"/jobs/{job}") for _ in range(64)))
        return [r.status_code for r in rs]

    t0 = time.monotonic()
    assert asyncio.run(burst()) == [200] * 64
    assert time.monotonic() - t0 < 20
