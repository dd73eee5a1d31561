"""Shared fixtures: the bundled spaces, and settings isolated from the developer's environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brainsearch.settings import get_settings
from brainsearch.space import bundled_space_names, bundled_spaces_dir

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


# The machine is shared and noisy: no per-example deadline. Examples are kept moderate so the suite stays fast.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("brainsearch", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("brainsearch")
