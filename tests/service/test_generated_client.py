"""The OpenAPI schema is client-ready: it declares bearer security, names every operation, documents each export
format's media type (binary) and a body for every 4xx; and a client generated from it with openapi-python-client
(offline, the ``dev`` extra) drives a live service end to end with a token."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from brainsearch.settings import Settings
from service.app import create_app
from tests.factories import fast_space

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
OPERATIONS = {
    "get_health",
    "create_search",
    "list_searches",
    "get_search",
    "cancel_search",
    "delete_search",
    "start_scale_up",
    "get_scale_up",
    "list_trials",
    "pick_trial",
    "get_pareto",
    "list_candidates",
    "get_trial",
    "export_trial",
    "list_spaces",
    "validate_space",
}


def _schema(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}", data_dir=tmp_path / "data", **settings))
    return app.openapi()


def test_the_schema_declares_security_operations_media_types_and_error_bodies(tmp_path: Path) -> None:
    """Pass: bearer security is declared, required where this server requires the token (writes; reads too with
    api_read_auth) and optional elsewhere; every operation has a short id; the export's 200 lists one binary media
    type per format; every 4xx a route can answer has a JSON body."""
    required, optional = [{"bearer": []}], [{"bearer": []}, {}]
    for settings, write, read in (
        ({}, optional, optional),
        ({"api_token": "tok"}, required, optional),
        ({"api_token": "tok", "api_read_auth": True}, required, required),
    ):
        paths = _schema(tmp_path, **settings)["paths"]
        declared = {(m, op["operationId"]): op.get("security") for ops in paths.values() for m, op in ops.items()}
        assert declared.pop(("get", "get_health")) is None, settings
        assert all(sec == (read if m == "get" else write) for (m, _), sec in declared.items()), (settings, declared)
    schema = _schema(tmp_path)
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    operations = {}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            operations[op["operationId"]] = op
            for code, response in op["responses"].items():
                if code.startswith("4"):
                    assert "application/json" in response.get("content", {}), (method, path, code)
    assert set(operations) == OPERATIONS
    exported = operations["export_trial"]["responses"]["200"]["content"]
    assert set(exported) == {"application/json", "application/yaml", "text/x-python", "application/octet-stream"}
    assert all(media["schema"] == {"type": "string", "format": "binary"} for media in exported.values())
    assert next(iter(exported)) == "application/octet-stream"  # what a generated client reads the answer as
    for name in ("get_health", "validate_space", "list_candidates", "list_spaces"):
        body = operations[name]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in body, (name, body)  # a named model, not a free-form object


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The package openapi-python-client generates from the app's schema, importable."""
    folder = tmp_path_factory.mktemp("client")
    (folder / "openapi.json").write_text(json.dumps(_schema(folder)))
    # A YAML body (a space file) is sent as a file: the generator knows no application/yaml of its own.
    (folder / "config.yaml").write_text(
        "post_hooks: []\npackage_name_override: brainsearch_client\n"
        "content_type_overrides:\n  application/yaml: application/octet-stream\n"
    )
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--config", "config.yaml", "--output-path", "out"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    sys.path.insert(0, str(folder / "out"))
    try:
        yield importlib.import_module("brainsearch_client")
    finally:
        sys.path.remove(str(folder / "out"))
        for name in [m for m in sys.modules if m.startswith("brainsearch_client")]:
            del sys.modules[name]


def _api(name: str) -> Any:
    group = {
        "get_health": "health",
        "list_spaces": "spaces",
        "validate_space": "spaces",
        "get_trial": "trials",
        "export_trial": "trials",
    }.get(name, "searches")
    return importlib.import_module(f"brainsearch_client.api.{group}.{name}")


@pytest.mark.slow
def test_a_generated_client_drives_the_service_with_a_token(generated: ModuleType, live: Any) -> None:
    """Pass: through the generated client, with a token: health and spaces, validation, submit, poll to the end,
    the leaderboard, a trial, its export in every format (bytes that parse as what they are), cancel and delete;
    without the token a write is refused with the error body typed."""
    server = live(embedded_worker=True, api_token="tok")
    with (
        generated.AuthenticatedClient(base_url=server.url, token="tok") as client,
        generated.Client(base_url=server.url) as anonymous,
    ):
        _drive(client, anonymous)


def _drive(client: Any, anonymous: Any) -> None:
    from brainsearch_client.models import ErrorOut, ExportTrialFormat, ProblemsOut, SearchCreate, SpaceCheck
    from brainsearch_client.types import File

    assert _api("get_health").sync(client=client).status == "ok"
    assert "tiny" in {s.name for s in _api("list_spaces").sync(client=client).items}
    assert _api("validate_space").sync(client=client, body=SpaceCheck(space="tiny")).valid
    space = fast_space().model_dump(mode="json")
    body = SearchCreate.from_dict({"space": space, "trials": 2, "sampler": "random", "pruner": "none"})
    refused = _api("create_search").sync(client=anonymous, body=body)
    assert isinstance(refused, ErrorOut) and "bearer token" in refused.detail

    search = _api("create_search").sync(client=client, body=body)
    deadline = time.monotonic() + 600
    while search.status not in ("completed", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        search = _api("get_search").sync(search.id, client=client)
    assert search.status == "completed", search.error
    page = _api("list_trials").sync(search.id, client=client)
    assert page.total == 4 and {t.state for t in page.items} >= {"completed"}
    best = _api("pick_trial").sync(search.id, client=client, rank=1)
    detail = _api("get_trial").sync(best.id, client=client)
    assert detail.id == best.id and detail.curve
    files = {}
    for fmt in ("json", "yaml", "pytorch", "safetensors"):
        exported = _api("export_trial").sync(best.id, client=client, format_=ExportTrialFormat(fmt))
        assert isinstance(exported, File), (fmt, exported)
        files[fmt] = exported.payload.read()
    assert json.loads(files["json"])["trial_id"] == best.id
    assert yaml.safe_load(files["yaml"])["trial_id"] == best.id
    compile(files["pytorch"], "model.py", "exec")  # a Python module
    header = int.from_bytes(files["safetensors"][:8], "little")
    assert "__metadata__" in json.loads(files["safetensors"][8 : 8 + header])

    # A space file as the body: checked like a file (a problem with its line), else queued like a document.
    bad = File(payload=io.BytesIO(b"version: 1\nname: x\nblock:\n  slots: 0\n"), mime_type="application/yaml")
    problems = _api("create_search").sync(client=client, body=bad)
    assert isinstance(problems, ProblemsOut) and problems.detail[0].line == 4, problems
    text = yaml.safe_dump(space).encode()
    queued = _api("create_search").sync(
        client=client, body=File(payload=io.BytesIO(text), mime_type="application/yaml")
    )
    assert queued.name == space["name"]
    assert _api("cancel_search").sync(queued.id, client=client).status == "cancelled"
    assert _api("delete_search").sync_detailed(search.id, client=client).status_code == 204
    missing = _api("get_search").sync(search.id, client=client)
    assert isinstance(missing, ErrorOut) and missing.detail == f"no search {search.id}"
