"""The storage suite runs on every backend: the database is its subject."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, backend_url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The test's database, on SQLite and on PostgreSQL."""
    with backend_url(request.param, tmp_path) as url:
        yield url
