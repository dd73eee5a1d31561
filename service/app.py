"""The FastAPI application: REST API under ``/api/v1`` (OpenAPI at ``/docs``), with an optional embedded worker.

Domain errors become HTTP errors here, at the edge: a bad space or override is 422 with one ``{"loc", "msg"}`` per
problem (the CLI's paths and messages), an unknown id 404, a conflict 409, an unreachable database 503. Requests
whose Host header is not allowed get 400, bodies over ``max_body_bytes`` 413, JSON bodies nested past 64 levels or
not UTF-8 422.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brainsearch.errors import ConflictError, InputError, StorageError
from brainsearch.settings import Settings, get_settings
from brainsearch.storage import Repository, make_engine, migrate, schema_revision
from service import dashboard
from service.routers import searches, spaces, trials
from service.schemas import ERROR_RESPONSES
from service.worker import Worker

__all__ = ["create_app"]

log = logging.getLogger("brainsearch.service")


class _BodyLimit:
    """Refuses request bodies larger than ``limit`` bytes (declared or streamed) with 413, and JSON bodies that are
    not UTF-8 or nest deeper than ``MAX_JSON_DEPTH`` with 422 (Python's parser would recurse into them)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen, more = 0, True
        while more:  # read the whole body (it is small: at most ``limit`` bytes)
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away mid-body: nothing to answer, nothing to run
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await _too_large(self.limit)(scope, receive, send)
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = _json_problem(body) if _is_json(headers.get(b"content-type", b"")) else None
        if problem is not None:
            detail = [{"loc": "body", "msg": problem}]
            await JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # a disconnect, after the body
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


MAX_JSON_DEPTH = 64
_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_JSON_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the routes on ``path`` accept: the API's (its OpenAPI paths) and the dashboard's."""
    templates: list[tuple[str, set[str]]] = [
        (template, {m.upper() for m in operations}) for template, operations in app.openapi()["paths"].items()
    ]
    templates += [(r.path, set(r.methods)) for r in dashboard.router.routes if isinstance(r, APIRoute) and r.methods]
    methods: set[str] = set()
    for template, accepted in templates:
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= accepted
    return sorted(methods)


def _is_json(content_type: bytes) -> bool:
    """Whether FastAPI would parse a body of this type as JSON (application/json, application/*+json)."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _json_problem(body: bytes) -> str | None:
    """Why a JSON body is refused before parsing: not UTF-8, or nested too deep; None when it may be parsed."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8 (byte {exc.start})"
    if _json_depth(body) > MAX_JSON_DEPTH:
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    return None


def _json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text (strings skipped; malformed text is the parser's to judge)."""
    depth = deepest = 0
    # Two linear passes (escapes out, then strings): one regex for both backtracks quadratically on '"\\"\\"...'.
    for c in _JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", body)).translate(None, _NOT_BRACKETS):
        depth += 1 if c in (0x5B, 0x7B) else -1
        deepest = max(deepest, depth)
    return deepest


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body larger than {limit} bytes"}, status.HTTP_413_CONTENT_TOO_LARGE)


def create_app(settings: Settings | None = None, *, embedded_worker: bool = False) -> FastAPI:
    """The app on ``settings``' database (schema migrated at start-up), with a worker thread when asked."""
    settings = settings or get_settings()
    engine = make_engine(settings.resolved_database_url)
    repo = Repository(engine, retry_seconds=5.0)  # a request waits out a short outage, then gets 503
    database_url = engine.url.render_as_string(hide_password=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        worker: Worker | None = None
        thread: threading.Thread | None = None
        if embedded_worker:
            # The worker waits out outages for the default window, not the API's few seconds.
            worker = Worker(Repository(engine), database_url, weights_dir=settings.data_dir / "weights")
            thread = threading.Thread(target=worker.run_forever, name="brainsearch-worker", daemon=True)
            thread.start()
        app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None and thread is not None:
                worker.shutdown()  # the running search goes back to the queue, its finished trials kept
                thread.join(60)
            engine.dispose()

    app = FastAPI(
        title="brainsearch",
        summary="Neural architecture search for Brainformer-style Mixture-of-Experts blocks",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings, app.state.repo, app.state.database_url = settings, repo, database_url
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        detail = [{"loc": p.path, "msg": p.message, **({"line": p.line} if p.line else {})} for p in exc.problems]
        return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_409_CONFLICT)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage error on %s: %s", request.url.path, exc)
        return JSONResponse({"detail": f"the database is unavailable: {exc}"}, status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette names the methods of the first route whose path matched; list every route's on that path.
            allowed = _allowed_methods(app, request.url.path)
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers={"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, exc)

    @app.get("/api/v1/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness and the database's schema revision."""
        return {"status": "ok", "database": engine.dialect.name, "schema": schema_revision(engine)}

    for router in (searches.router, trials.router, spaces.router):
        app.include_router(router, prefix="/api/v1", responses=ERROR_RESPONSES)
    app.include_router(dashboard.router)
    return app
