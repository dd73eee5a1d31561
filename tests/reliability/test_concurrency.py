"""Concurrent submissions and a cold start of several workers at once, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from brainsearch.storage import Repository, make_engine
from tests.reliability.conftest import Proc, queue_search, slow_space, wait_for
from tests.service.conftest import LiveServer

pytestmark = pytest.mark.slow  # the reliability suite starts processes and breaks them


def test_100_parallel_posts_50_keys_and_one_shared_make_51_searches(live: Any, database_url: str) -> None:
    """Pass: 50 POSTs with distinct keys and 50 with one shared key, all at once: exactly 51 searches, every shared
    key response names the same search with the same fields, no 5xx."""
    server: LiveServer = live()
    body = {"space": "tiny", "trials": 3}

    def post(key: str) -> httpx.Response:
        with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as client:
            return client.post("/searches", json=body, headers={"Idempotency-Key": key})

    keys = [f"distinct-{i}" for i in range(50)] + ["shared"] * 50
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(post, keys))
    assert [r.status_code for r in responses if r.status_code >= 500] == []
    assert all(r.status_code == 201 for r in responses), {r.status_code: r.text for r in responses}
    shared = [r.json() for key, r in zip(keys, responses, strict=True) if key == "shared"]
    assert len({s["id"] for s in shared}) == 1
    assert all(
        {k: s[k] for k in ("id", "created_at", "settings")}
        == {k: shared[0][k] for k in ("id", "created_at", "settings")}
        for s in shared
    )
    distinct = {r.json()["id"] for key, r in zip(keys, responses, strict=True) if key != "shared"}
    assert len(distinct) == 50 and shared[0]["id"] not in distinct
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        assert client.get("/searches", params={"limit": 500}).json()["total"] == 51


@pytest.mark.slow
def test_cold_start_of_four_workers_on_a_fresh_database(database_url: str, spawn: Callable[..., Proc]) -> None:
    """Pass: four workers started at the same moment on an empty database all come up (the schema migrated once,
    no race), run four searches at once between them (Optuna's tables created once), and stop cleanly on SIGTERM
    with no failure in their logs."""
    workers = [spawn("worker", "--lease", "5", "--db", database_url, name=f"w{i}") for i in range(4)]
    wait_for(lambda: all(" on " in w.output() for w in workers), 120, "every worker to start", *workers)
    assert all(w.alive() for w in workers)
    engine = make_engine(database_url)
    try:
        repo = Repository(engine)
        ids = [queue_search(repo, slow_space(1, 4096)) for _ in range(4)]  # one each: four drivers open Optuna at once
        wait_for(lambda: all(repo.get_search(i).status == "completed" for i in ids), 300, "the searches", *workers)  # type: ignore[union-attr]
        runners = {t.worker for i in ids for t in repo.list_trials(i).items}
        assert runners and None not in runners
        for w in workers:
            w.popen.terminate()
        for w in workers:
            assert w.popen.wait(60) == 0, w.output()
            assert "Traceback" not in w.output() and "failed" not in w.output(), w.output()
        with engine.connect() as conn:  # one schema version row each: ours and Optuna's
            assert conn.execute(text("SELECT count(*) FROM bs_alembic_version")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM version_info")).scalar_one() == 1
    finally:
        engine.dispose()
