"""Helpers of the reliability suite: brainsearch processes started as a user would (the CLI, in their own process
groups, logs to files), killed with SIGKILL, and waited on with deadlines that fail with the logs. Every test of the
suite runs on SQLite and PostgreSQL unless it says otherwise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brainsearch.search.submission import create_search
from brainsearch.space import SearchSpace
from brainsearch.storage import Repository
from tests.conftest import BACKENDS, backend_url
from tests.factories import fast_space
from tests.service.conftest import live  # noqa: F401  (the live-server fixture, for this suite too)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The suite's database, on SQLite and on PostgreSQL: what breaks differs between them."""
    with backend_url(request.param, tmp_path) as url:
        yield url


class Proc:
    """A ``brainsearch`` command running in the background, its output in ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log = args, log
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "brainsearch", *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process itself (what the kernel's OOM killer does): its children are not signalled."""
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(30)

    def stop(self) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(*args: str, name: str = "proc", env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), tmp_path / f"{name}-{len(procs)}.log", env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, *logs: Proc, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; past ``timeout`` fail with the processes' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    tails = "\n".join(f"--- {p.args}:\n{p.output()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tails}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/v1/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def slow_space(trials: int = 4, tokens: int = 24 * 512) -> SearchSpace:
    """The tiny space with trials long enough (24 steps, a few seconds) to be caught mid-way, every one trained to
    the end (no pruner), randomly sampled."""
    return fast_space(tokens, search={"trials": trials, "pruner": "none", "sampler": "random"})


def queue_search(repo: Repository, space: SearchSpace) -> int:
    search, _ = create_search(repo, space)
    return search.id


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (this suite's PostgreSQL-only tests)."""
    from tests.conftest import fresh_postgres

    with fresh_postgres() as url:
        yield url
