"""Alembic migrations produce exactly the ORM's schema, and 0002 upgrades existing data."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text


def _config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    from app import db

    here = Path(db.__file__).resolve().parent
    cfg = Config(str(here / "alembic.ini"))
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


def test_migrations_match_models(tmp_path: Path) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.models import Base

    url = f"sqlite:///{tmp_path / 'm.db'}"
    command.upgrade(_config(url), "head")
    eng = create_engine(url)
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    eng.dispose()
    assert diff == [], diff


def test_0002_upgrades_existing_networks(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = _config(url)
    command.upgrade(cfg, "0001")
    eng = create_engine(url)
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, owner, kind, state, params, progress, stage, "
                          "attempts, created_at) VALUES ('j', 'o', 'solve', 'succeeded', '{}', "
                          "1.0, 'done', 1, '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO networks (id, owner, job_id, n_features, n_outputs, "
                          "n_neurons, output_bias, certified, summary, created_at) VALUES "
                          "('n', 'o', 'j', 2, 1, 0, '[0.0]', 1, '{}', '2026-01-01 00:00:00')"))
    command.upgrade(cfg, "head")
    with eng.connect() as conn:
        assert conn.execute(text("SELECT kind, layers FROM networks")).one() == ("solve", None)
        assert conn.scalar(text("SELECT count(*) FROM pricing_parts")) == 0
    command.downgrade(cfg, "0001")
    with eng.connect() as conn:
        with pytest.raises(Exception, match="pricing_parts"):
            conn.execute(text("SELECT count(*) FROM pricing_parts"))
    eng.dispose()
