"""Shared fixtures: the bundled spaces, settings isolated from the developer's environment, a database per test,
and one real tiny search trained once per session for the tests that only read one.

Databases: a SQLite file for every test; the suites whose subject is the database (``tests/storage``,
``tests/reliability``) and the end-to-end search of each executor run on a real PostgreSQL server too
(:func:`backend_url`). PostgreSQL is the server on 127.0.0.1:5432 (trust authentication, database ``test``;
``.ci/run`` starts it). Each test gets a database of its own, created and dropped around it. Set
BRAINSEARCH_TEST_POSTGRES_URL to use another.

Threads: every test process (and the processes it starts) runs one torch thread unless a test sets its own: tests
run two at a time (pytest-xdist), and two processes spinning two OpenMP threads each on two cores slow each other
several times over (``benchmarks/thread_policy.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads OpenMP, which reads it once

import fcntl
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from brainsearch.settings import get_settings
from brainsearch.space import bundled_space_names, bundled_spaces_dir
from brainsearch.storage import Repository, make_engine, migrate

BUNDLED = bundled_space_names()
BACKENDS = ("sqlite", "postgresql")


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


@contextmanager
def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database on ``backend``: a SQLite file under ``tmp_path``, or a PostgreSQL database of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'brainsearch.db'}"
        return
    with fresh_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The test's database: SQLite, unless the test (or its suite's conftest) asks for PostgreSQL too."""
    with backend_url(request.param, tmp_path) as url:
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use Ray run on one xdist worker, one after the other (two local Rays on two cores fight over them):
    those marked ``ray``, those parametrized with a Ray executor or launcher and those on the search suite's shared
    Ray get the marker and the group. Every Ray or browser test is ``slow``."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        params = getattr(getattr(item, "callspec", None), "params", {})
        uses_ray = "ray" in (params.get("executor_kind"), params.get("launcher"))
        shared = {"ray_session", "ray_cluster"} & set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("ray") is None and (uses_ray or shared):
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))
            item.add_marker(pytest.mark.slow)


class DatabaseClock:
    """The repository's clock (leases, timestamps), held still and moved by hand: a lease expires when a test says
    so, not after a wall-clock sleep."""

    def __init__(self) -> None:
        from brainsearch.storage import repository

        self.now = repository._now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def database_clock(monkeypatch: pytest.MonkeyPatch) -> DatabaseClock:
    """The repository's clock, injected (:class:`DatabaseClock`)."""
    from brainsearch.storage import repository

    clock = DatabaseClock()
    monkeypatch.setattr(repository, "_now", clock)
    return clock


@dataclass(frozen=True)
class TrainedSearch:
    """A real search trained on the CPU: its SQLite database, its data folder (kept weights, checkpoints) and id."""

    database_url: str
    data_dir: Path
    search_id: int

    @property
    def repo(self) -> Repository:
        return Repository(make_engine(self.database_url))


def _train_search(folder: Path) -> int:
    """The shared search: GLaM over three seeds (the first before the trials, the others interleaved with the first
    trials), four trials trained to the end (no pruner, random sampler, two at a time), the best two re-evaluated
    with two more seeds, and the best one and GLaM trained again at one cpu-tiny rung."""
    from brainsearch.search.driver import SearchDriver
    from brainsearch.search.submission import RunOptions, create_search
    from tests.factories import fast_space, sqlite_repository

    repo, url = sqlite_repository(folder, "trained.db")
    space = fast_space(search={"baseline_seeds": 3, "top_k_seeds": 3, "reevaluate": 2})
    search, _ = create_search(
        repo,
        space,
        overrides={
            "trials": 4,
            "concurrency": 2,
            "sampler": "random",
            "top_k": 1,
            "pruner": "none",
            "scale_up": {"ladder": [{"preset": "cpu-tiny", "budget_tokens": 2048}], "target": "cpu-small"},
        },
        options=RunOptions(executor="local", threads_per_trial=1),
    )
    done = SearchDriver(repo, search.id, url, data_dir=folder / "data").run()
    assert done.status == "completed", done.error
    repo.engine.dispose()
    return search.id


@pytest.fixture(scope="session")
def trained_search(tmp_path_factory: pytest.TempPathFactory) -> TrainedSearch:
    """The one real tiny search of the session (:func:`_train_search`), trained by the first test process that needs
    it; the other xdist workers wait for it and read it. Read-only: a test that writes takes a copy
    (:func:`trained_copy`)."""
    root = tmp_path_factory.getbasetemp().parent  # shared by the xdist workers of this session
    folder = root / "trained-search"
    with (root / "trained-search.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "search-id").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / "search-id").write_text(str(_train_search(folder)))
    return TrainedSearch(f"sqlite:///{folder / 'trained.db'}", folder / "data", int((folder / "search-id").read_text()))


@pytest.fixture
def trained_copy(trained_search: TrainedSearch, tmp_path: Path) -> TrainedSearch:
    """A copy of the session's trained search for one test: its database and its files in the test's data folder
    (``BRAINSEARCH_DATA_DIR``), so reading, exporting, deleting or scaling it up touches nothing shared."""
    source = Path(trained_search.database_url.removeprefix("sqlite:///"))
    copy = tmp_path / "trained.db"
    # SQLite's backup copies what its write-ahead log holds too (a file copy would miss it).
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)
    data_dir = Path(os.environ["BRAINSEARCH_DATA_DIR"])
    shutil.copytree(trained_search.data_dir, data_dir, dirs_exist_ok=True)
    return TrainedSearch(f"sqlite:///{copy}", data_dir, trained_search.search_id)
