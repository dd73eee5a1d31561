"""Shared fixtures: the bundled spaces, settings isolated from the developer's environment, and a database per test
on every backend: a SQLite file and a real PostgreSQL server.

PostgreSQL is the server on 127.0.0.1:5432 (trust authentication, database ``test``; ``.ci/run`` starts it). Each
test gets a database of its own, created and dropped around it. Set BRAINSEARCH_TEST_POSTGRES_URL to use another.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from brainsearch.settings import get_settings
from brainsearch.space import bundled_space_names, bundled_spaces_dir
from brainsearch.storage import Repository, make_engine, migrate

BUNDLED = bundled_space_names()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("BRAINSEARCH_DATABASE_URL", "BRAINSEARCH_API_TOKEN", "BRAINSEARCH_MAX_SPACE_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BRAINSEARCH_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(params=BUNDLED)
def bundled_space_path(request: pytest.FixtureRequest) -> Path:
    return bundled_spaces_dir() / f"{request.param}.yaml"


ADMIN_URL = os.environ.get("BRAINSEARCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"brainsearch_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'brainsearch.db'}"
        return
    with fresh_postgres() as url:
        yield url


@pytest.fixture
def repo(database_url: str) -> Iterator[Repository]:
    engine = make_engine(database_url)
    migrate(engine)
    yield Repository(engine)
    engine.dispose()


# The machine is shared and noisy: no per-example deadline. Examples are kept moderate so the suite stays fast.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("brainsearch", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("brainsearch")
