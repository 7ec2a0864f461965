"""Property-based API test over the OpenAPI schema (schemathesis, in-process ASGI):
no 5xx, responses conform to the schema and declared content types."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from app.main import create_app
from tests.conftest import KEY_A, npy, small_problem

app = create_app()
# loaded from the app object, not over ASGI: fetching /openapi.json would run the app's lifespan
# (migrations) against the default database before the fixture below sets the environment
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app


@pytest.fixture(scope="module", autouse=True)
def _env() -> Iterator[None]:
    from app.core.config import get_settings
    from app.db import migrate

    tmp = tempfile.mkdtemp(prefix="wedgenet-st-")
    env = {
        "WEDGENET_DATABASE_URL": f"sqlite:///{tmp}/st.db",
        "WEDGENET_BROKER_URL": "filesystem://",
        "WEDGENET_BROKER_DIR": f"{tmp}/broker",
        "WEDGENET_API_KEYS": KEY_A,
        "WEDGENET_API_SWEEPER": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    migrate()
    # one real dataset so some generated requests reach deeper code
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        X, y = small_problem()
        c.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
               headers={"X-API-Key": KEY_A})
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()
    shutil.rmtree(tmp, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_openapi_conformance(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers={"X-API-Key": KEY_A},
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
