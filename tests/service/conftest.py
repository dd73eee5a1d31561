"""A live API server (uvicorn on a free loopback port, in a thread) on the test's database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from brainsearch.settings import Settings
from service.app import create_app


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
