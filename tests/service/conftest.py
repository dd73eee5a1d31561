"""The app in process (FastAPI's test client) or a live API server (uvicorn on a free loopback port, in a thread) on
the test's database, and a headless Chromium
(Debian's, driven by Playwright) for the browser tests (screenshots: ``tests.factories.screenshot``); sharded, resumed
scale-up runs with checkpoints on disk for the scale-up views (here and in the CLI's tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, sync_playwright

from brainsearch.settings import Settings
from brainsearch.storage import Repository
from service.app import create_app

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every browser test of the session."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


class InProcessServer:
    """The app in this process through FastAPI's test client: no socket, no server thread, an exception inside a
    route raised in the test. For tests whose subject is what the API answers; :class:`LiveServer` (a real uvicorn)
    stays for the server itself, the client, signals, load and the browser."""

    url = "http://127.0.0.1"  # an allowed host

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._running = TestClient(self.app, base_url=self.url)
        self._running.__enter__()  # the app's start-up (the schema migrated), as a server's would run

    def stop(self) -> None:
        """The app's shut-down."""
        self._running.__exit__(None, None, None)

    def client(self, token: str | None = None) -> TestClient:
        """A client of the API (``/api/v1``), with the bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return TestClient(self.app, base_url=f"{self.url}/api/v1", headers=headers)

    def http(self) -> TestClient:
        """A client of the whole site (the dashboard, ``/openapi.json``)."""
        return TestClient(self.app, base_url=self.url)


@pytest.fixture
def in_process(database_url: str, tmp_path: Path) -> Iterator[Callable[..., InProcessServer]]:
    """``in_process(**settings)``: the app on the test's database and data folder, served in this process."""
    started: list[InProcessServer] = []

    def start(**settings: Any) -> InProcessServer:
        server = InProcessServer(Settings(database_url=database_url, data_dir=tmp_path / "data", **settings))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class LiveServer:
    def __init__(self, settings: Settings, embedded_worker: bool = False) -> None:
        config = uvicorn.Config(
            create_app(settings, embedded_worker=embedded_worker), host="127.0.0.1", port=0, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(embedded_worker: bool = False, **settings: Any) -> LiveServer:
        s = Settings(database_url=database_url, data_dir=tmp_path / "data", **settings)
        server = LiveServer(s, embedded_worker)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


SAVED_AT = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC: when the seeded checkpoints were saved


def add_sharded_runs(repo: Repository, search_id: int, trial_id: int, data_dir: Path) -> None:
    """Newer runs of the trial at cpu-small, scratch and upcycled (a recorded upcycled twin is shown even though the
    space trains from scratch), on two devices with FSDP2; two complete checkpoints of the scratch one on disk."""
    from brainsearch.store import RunStore, candidate_run_key
    from tests.factories import SHARDED_RUN, candidate_run, save_checkpoint

    for rung, init, loss in [("cpu-small", "scratch", 2.5), ("cpu-small+upcycle", "upcycle", 2.4)]:
        metrics = {**SHARDED_RUN, "init": init, "params_activated": 1e6, "val_curve": [[4, loss + 0.3], [8, loss]]}
        if init == "upcycle":
            metrics["upcycle_step"] = 16
        candidate_run(repo, search_id, trial_id, rung, loss, val_loss_stderr=None, **metrics, step_time_s=0.1)
    folder = RunStore(data_dir, repo.database_id()).checkpoints_dir(search_id, candidate_run_key(trial_id, "cpu-small"))
    save_checkpoint(folder, 8, SAVED_AT)
    save_checkpoint(folder, 16, SAVED_AT + 600)
