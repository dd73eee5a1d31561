"""Hostile input: writes without the token, path traversal on downloads, enormous models, oversized and deeply
nested bodies."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from brainsearch.settings import Settings
from brainsearch.storage import Repository
from service.app import create_app
from tests.factories import fast_space, seed_scaled_search
from tests.service.conftest import LiveServer

pytestmark = pytest.mark.slow  # the reliability suite starts servers and sends them hostile input

TOKEN = "s3cret-token"
READS_BY_POST = {"/api/v1/spaces/validate"}  # validates a document, stores nothing


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _write_routes() -> list[tuple[str, str]]:
    """Every route that is not a GET: the API's from its OpenAPI schema, the dashboard's from its router."""
    from service import dashboard

    app = create_app(Settings(database_url="sqlite://", data_dir=Path("/nonexistent")), embedded_worker=False)
    routes = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.upper() not in ("GET", "HEAD") and path not in READS_BY_POST
    ]
    for route in dashboard.router.routes:
        if isinstance(route, Route) and route.methods:
            routes += [(m, route.path) for m in sorted(route.methods - {"GET", "HEAD"})]
    return routes


def test_every_write_endpoint_refuses_a_missing_or_wrong_token(live: Any, repo: Repository) -> None:
    """Pass: with a token configured, every non-GET route of the app (API and dashboard form) answers 401 without
    the token and with a wrong one, stores nothing, and accepts the right one."""
    routes = _write_routes()
    assert ("POST", "/api/v1/searches") in routes and ("POST", "/ui/searches") in routes
    assert ("POST", "/api/v1/searches/{search_id}/cancel") in routes
    assert ("POST", "/ui/searches/{search_id}/cancel") in routes  # the dashboard's cancel button
    server: LiveServer = live(api_token=TOKEN)
    with server.client(TOKEN) as owner:
        sid = owner.post("/searches", json={"space": "tiny"}).json()["id"]
    form = {"space": "tiny", "trials": "2", "sampler": "random"}
    for method, path in routes:
        url = server.url + path.replace("{search_id}", str(sid))
        for headers, token_field in (({}, ""), ({"Authorization": "Bearer wrong"}, "wrong")):
            if path.startswith("/ui/"):
                r = httpx.request(method, url, data={**form, "token": token_field}, headers=headers)
            else:
                r = httpx.request(method, url, json={"space": "tiny"}, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
    # The token comes first on a form too: an empty form without it is a 401, not a 422 listing the fields.
    assert httpx.post(f"{server.url}/ui/searches", data={}).status_code == 401
    assert repo.list_searches().total == 1 and repo.get_search(sid).status == "queued"  # type: ignore[union-attr]
    with server.client(TOKEN) as owner:
        assert owner.post(f"/searches/{sid}/cancel").status_code == 200
        assert owner.post("/searches", json={"space": "tiny"}).status_code == 201
    ok = httpx.post(f"{server.url}/ui/searches", data={**form, "token": TOKEN}, follow_redirects=False)
    assert ok.status_code == 303 and repo.list_searches().total == 3


def test_downloads_cannot_read_outside_the_data_directory(live: Any, repo: Repository, tmp_path: Path) -> None:
    """Pass: a weights file that is a symlink out of the data directory is not served (404); traversal in URLs
    (encoded or not) reaches no file outside the app's own."""
    import torch

    from brainsearch.arch import preset
    from brainsearch.store import RunStore, save_weights, weights_metadata

    data_dir = tmp_path / "data"
    sid, ids = seed_scaled_search(repo, data_dir)
    # A well-formed file whose metadata names the right database, search and trial: only its place is wrong.
    secret = tmp_path / "secret.safetensors"
    meta = weights_metadata(repo.database_id(), sid, ids[2])
    save_weights({"outside the data directory": torch.zeros(1)}, preset("glam"), secret, meta)
    link = RunStore(data_dir, repo.database_id()).trial_weights(sid, ids[2])
    link.symlink_to(secret)
    server: LiveServer = live()
    with server.client() as api:
        assert api.get(f"/trials/{ids[1]}/export", params={"format": "safetensors"}).status_code == 200
        escaped = api.get(f"/trials/{ids[2]}/export", params={"format": "safetensors"})
        assert escaped.status_code == 404 and b"outside" not in escaped.content
    host, port = server.url.removeprefix("http://").split(":")
    for path in (
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/trials/..%2F..%2F..%2Fetc%2Fpasswd/export",
        "/api/v1/trials/1/export?format=../../etc/passwd",
        "/api/v1/trials/%2e%2e/export?format=safetensors",
        f"/api/v1/trials/{ids[1]}/export/../../../../../etc/passwd",
        "/static/plotly.min.js/../../../secret.safetensors",
        "/static/docs/../../../secret.safetensors",
        "/static/docs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ):
        # http.client sends the path as written (httpx would resolve the dot segments before sending).
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            status, content = response.status, response.read()
        finally:
            conn.close()
        assert status in (404, 422), (path, status)
        assert b"root:" not in content and b"outside the data directory" not in content


def test_an_enormous_model_is_refused_quickly_without_allocating(live: Any) -> None:
    """Pass: a space whose models would need petabytes is a 422 naming the limit, on validate and on submit, and the
    server's memory does not grow (nothing was built)."""
    doc = fast_space().model_dump(mode="json")
    doc["block"]["d_model"] = 16384  # each at its bound; together about 10^15 parameters
    doc["block"]["moe"] = {**doc["block"]["moe"], "hidden": 131072, "experts": 1024}
    doc["block"]["moe"]["gating"] = "top2"
    doc["proxy"]["num_blocks"] = 128
    doc["constraints"]["max_params_total"] = None
    server: LiveServer = live()
    before = _rss_bytes()
    with server.client() as api:
        for _ in range(5):
            validated = api.post("/spaces/validate", json={"space": doc})
            submitted = api.post("/searches", json={"space": doc})
            for r in (validated, submitted):
                assert r.status_code == 422 and "parameters" in r.text, r.text
    assert _rss_bytes() - before < 64 * 2**20


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"space": "' + b"x" * (2 * 2**20) + b'"}', id="oversized"),
        pytest.param(b"[" * 200_000 + b"]" * 200_000, id="nested-arrays"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="nested-objects"),
        pytest.param(b'{"space": "tiny", "name": "\xff\xfe"}', id="not-utf8"),
    ],
)
def test_oversized_and_deeply_nested_bodies_are_4xx_without_memory_growth(live: Any, body: bytes) -> None:
    """Pass: each hostile body gets 413 or 422 (never 5xx), on every JSON endpoint, repeatedly, and the server's
    memory stays flat."""
    server: LiveServer = live()
    headers = {"Content-Type": "application/json"}
    before = _rss_bytes()
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as api:
        for _ in range(10):
            for path in ("/searches", "/spaces/validate"):
                r = api.post(path, content=body, headers=headers)
                assert r.status_code in (413, 422), (path, r.status_code, r.text[:300])
        assert api.get("/healthz").status_code == 200
    assert _rss_bytes() - before < 64 * 2**20
