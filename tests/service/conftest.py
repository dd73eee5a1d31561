"""A live API server (uvicorn on a free loopback port, in a thread) on the test's database, and a headless Chromium
(Debian's, driven by Playwright) for the browser tests, whose screenshots go to ``ARTIFACTS``; sharded, resumed
scale-up runs with checkpoints on disk for the scale-up views (here and in the CLI's tests)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, sync_playwright

from brainsearch.settings import Settings
from brainsearch.storage import Repository
from service.app import create_app

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("BRAINSEARCH_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every browser test of the session."""
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install -y chromium); .ci/run does"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


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
    from brainsearch.arch import preset, scale
    from brainsearch.store import RunStore, candidate_run_key
    from tests.search.test_scaleup import SHARDED_RUN, save_checkpoint

    arch = scale(preset("glam"), "cpu-tiny")
    for rung, init, loss in [("cpu-small", "scratch", 2.5), ("cpu-small+upcycle", "upcycle", 2.4)]:
        metrics = {**SHARDED_RUN, "init": init, "params_activated": 1e6, "val_curve": [[4, loss + 0.3], [8, loss]]}
        if init == "upcycle":
            metrics["upcycle_step"] = 16
        repo.add_candidate(
            search_id=search_id,
            trial_id=trial_id,
            rung=rung,
            state="completed",
            arch=arch.to_dict(),
            arch_digest=arch.digest,
            metrics={**metrics, "step_time_s": 0.1},
            val_loss=loss,
        )
    folder = RunStore(data_dir, repo.database_id()).checkpoints_dir(search_id, candidate_run_key(trial_id, "cpu-small"))
    save_checkpoint(folder, 8, SAVED_AT)
    save_checkpoint(folder, 16, SAVED_AT + 600)
