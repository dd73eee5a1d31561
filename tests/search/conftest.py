"""Fixtures of the search tests: an executor per kind (local worker processes and Ray actors, on one Ray started for
the package). Rows and spaces come from ``tests/factories.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brainsearch.search.executor import Executor
from brainsearch.search.jobs import Resources
from brainsearch.search.local import LocalExecutor


@pytest.fixture(scope="package")
def ray_session() -> Iterator[None]:
    """One local Ray for the search tests (executors find it running and leave it up), shut down after them so that
    no later test meets it (a test that runs ``ray stop`` would end this process with it); 4 logical CPUs so two
    one-thread workers and a replacement fit on a 2-core machine."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


# The executors run in pairs with the databases, not as a product of all four: local worker processes on SQLite (the
# embedded default) and Ray actors on PostgreSQL (what a cluster uses). A test that needs one executor on a database
# it names parametrizes both itself.
EXECUTOR_PAIRS = [("local", "sqlite"), pytest.param("ray", "postgresql", marks=pytest.mark.slow)]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """An end-to-end test that takes an executor and a database runs on each pair of :data:`EXECUTOR_PAIRS` (a
    parametrize mark added before pytest reads the marks, so the fixtures' own parameters give way to it)."""
    paired = ("executor_kind", "database_url")
    chosen = {
        name.strip()
        for marker in metafunc.definition.iter_markers("parametrize")
        for name in (marker.args[0].split(",") if isinstance(marker.args[0], str) else marker.args[0])
    }
    if all(name in metafunc.fixturenames for name in paired) and not chosen & set(paired):
        metafunc.definition.add_marker(pytest.mark.parametrize(paired, EXECUTOR_PAIRS, indirect=True))


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.slow)])
def executor_kind(request: pytest.FixtureRequest) -> str:
    """Which executor a test runs on (paired with its database by :func:`pytest_generate_tests`)."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


@pytest.fixture
def executor(executor_kind: str) -> Iterator[Executor]:
    """A live executor of ``executor_kind`` with two one-thread workers, closed after the test."""
    live: Executor
    if executor_kind == "ray":
        from brainsearch.search.ray_executor import RayExecutor

        live = RayExecutor(concurrency=2, resources=Resources(cpus=1))
    else:
        live = LocalExecutor(concurrency=2, threads_per_trial=1)
    yield live
    live.close()
