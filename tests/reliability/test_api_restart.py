"""The API process killed with SIGKILL and restarted while a worker runs the searches it accepted."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.reliability.conftest import Proc, free_port, healthy, slow_space, wait_for

pytestmark = pytest.mark.slow  # the reliability suite starts processes and breaks them


@pytest.mark.slow
def test_api_killed_and_restarted_loses_nothing_and_replays_idempotent_posts(
    database_url: str, spawn: Callable[..., Proc]
) -> None:
    """Pass: searches accepted before the kill are all there after the restart and run to completion by the worker;
    a client retrying with the same Idempotency-Key gets the original search (same id and body fields), marked as
    a replay; nothing answers 5xx."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = ("serve", "--port", str(port), "--no-worker", "--db", database_url)
    api = spawn(*serve, name="api")
    wait_for(lambda: healthy(base), 60, "the API to start", api)
    worker = spawn("worker", "--lease", "5", "--db", database_url, name="worker")
    body = {"space": slow_space(trials=1, tokens=8 * 512).model_dump(mode="json"), "name": "survivor"}
    accepted = {}
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as client:
        for key in ("key-a", "key-b", "key-c"):
            r = client.post("/searches", json=body, headers={"Idempotency-Key": key})
            assert r.status_code == 201, r.text
            accepted[key] = r.json()
        wait_for(
            lambda: client.get(f"/searches/{accepted['key-a']['id']}").json()["status"] == "running",
            120,
            "the worker to start the first search",
            worker,
        )
    api.kill9()
    api = spawn(*serve, name="api-again")
    wait_for(lambda: healthy(base), 60, "the API to restart", api)
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as client:
        listed = client.get("/searches").json()
        assert listed["total"] == 3 and {s["id"] for s in listed["items"]} == {s["id"] for s in accepted.values()}
        for key, original in accepted.items():
            replay = client.post("/searches", json=body, headers={"Idempotency-Key": key})
            assert replay.status_code == 201 and replay.headers.get("Idempotent-Replay") == "true"
            fields = ("id", "name", "space_name", "trials_requested", "settings", "created_at")
            assert {f: replay.json()[f] for f in fields} == {f: original[f] for f in fields}
        assert client.get("/searches").json()["total"] == 3  # the replays created nothing

        def all_completed() -> bool:
            return all(client.get(f"/searches/{s['id']}").json()["status"] == "completed" for s in accepted.values())

        wait_for(all_completed, 300, "every accepted search to complete", worker, api, interval=0.5)
