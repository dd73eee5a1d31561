"""The FastAPI application: REST API under ``/api/v1`` (OpenAPI at ``/docs``), with an optional embedded worker.

Domain errors become HTTP errors here, at the edge: an unknown id 404, a conflict 409, an unreachable database 503,
a body over ``max_body_bytes`` 413, a Host header that is not allowed 400. Bad input is 422 in ONE shape, whoever
found it (the space loader, the overrides, FastAPI's own parameter checks, the body scan)::

    {"detail": [{"loc": "space.block.moe.experts", "msg": "5000 is outside [1, 1024]", "in": "body", "line": 14}]}

one entry per problem: ``in`` the request part (body, query, path, header), ``loc`` the dotted path inside it
(``""`` for the part as a whole), ``line`` only where a YAML document had one. Every other error is
``{"detail": "message"}``.

Auth, one rule: when a token is configured, every non-GET route (API and dashboard forms, validation included)
needs ``Authorization: Bearer <token>`` (the forms: a ``token`` field), and GET routes need it too when
``api_read_auth`` is set.

Swagger UI (``/docs``) and ReDoc (``/redoc``) are served from the fastapi-offline package's files: nothing is
fetched from the internet.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi_offline
from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brainsearch import __version__
from brainsearch._validation import dotted, error_message
from brainsearch.errors import ConflictError, InputError, Problem, StorageError
from brainsearch.settings import Settings, get_settings
from brainsearch.storage import Repository, make_engine, migrate, schema_revision
from service import dashboard
from service.routers import searches, spaces, trials
from service.schemas import ERROR_RESPONSES, HealthOut

if TYPE_CHECKING:
    from service.worker import Worker

__all__ = ["AUTH_AND_ERRORS", "create_app", "problem_out", "request_problem_out", "unprocessable"]

log = logging.getLogger("brainsearch.service")

AUTH_AND_ERRORS = """
**Auth.** When the server has a token (`BRAINSEARCH_API_TOKEN`), every non-GET route (this API's and the
dashboard's forms, `POST /spaces/validate` included) needs `Authorization: Bearer <token>`, else 401; GET routes
need it too when `BRAINSEARCH_API_READ_AUTH=true`.

**Errors.** Bad input is always 422 with one entry per problem:
`{"detail": [{"loc": "space.block.moe.experts", "msg": "5000 is outside [1, 1024]", "in": "body"}]}`
(`in`: body, query, path or header; `loc`: the dotted path inside it, "" for the whole part; `line` where a YAML
document had one). Every other error is `{"detail": "message"}`.
"""


class _AllowedHosts:
    """Starlette's TrustedHostMiddleware rule (a host equal to an allowed one, or under a ``*.domain`` pattern; ``*``
    allows any), answering a refusal in the API's error shape, ``{"detail": ...}`` as JSON, where Starlette's answers
    plain text."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = [h.lower() for h in allowed_hosts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "*" in self.allowed or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("host", "")
        host = _host_name(given)
        if host and any(host == p or (p.startswith("*") and host.endswith(p[1:])) for p in self.allowed):
            await self.app(scope, receive, send)
            return
        detail = f"the Host header {given[:100]!r} is not one this service answers (BRAINSEARCH_ALLOWED_HOSTS)"
        await JSONResponse({"detail": detail}, status.HTTP_400_BAD_REQUEST)(scope, receive, send)


# Where a YAML body is a space file: ``POST /searches`` with one of these types.
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
_YAML_ROUTES = frozenset({"/api/v1/searches"})


class _YamlSpaceBody:
    """A YAML body sent to ``POST /searches`` is the space file itself: it reaches the route as
    ``{"space": "<the YAML text>"}``, which the route checks like a file (every problem with its line), after the
    token, as it checks any body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        media = (headers.get("content-type") or "").split(";")[0].strip().lower() if headers is not None else ""
        if media not in YAML_TYPES or scope["method"] != "POST" or scope["path"].rstrip("/") not in _YAML_ROUTES:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = {"loc": "", "msg": f"a YAML body must be UTF-8 text (byte {exc.start})", "in": "body"}
            await unprocessable([problem])(scope, receive, send)
            return
        payload = json.dumps({"space": text}).encode()
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        scope = {
            **scope,
            "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))],
        }
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        await self.app(scope, replay, send)


def _host_name(header: str) -> str:
    """The host of a Host header, without its port: ``[::1]:8000`` -> ``::1``, ``example.com:80`` -> ``example.com``."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


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
            await unprocessable([{"loc": "", "msg": problem, "in": "body"}])(scope, receive, send)
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
MAX_JSON_DIGITS = 4300  # sys.int_info.default_max_str_digits
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (MAX_JSON_DIGITS + 1))
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
    # Two linear passes (escapes out, then strings): one regex for both backtracks quadratically on '"\\"\\"...'.
    outside_strings = _JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", body))
    if _json_depth(outside_strings) > MAX_JSON_DEPTH:
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    if _LONG_NUMBER.search(outside_strings):  # Python's int() refuses them: the parser's answer would be a 400
        return f"a JSON number longer than {MAX_JSON_DIGITS} digits"
    return None


def _json_depth(outside_strings: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text whose strings were taken out (malformed text is the
    parser's to judge)."""
    depth = deepest = 0
    for c in outside_strings.translate(None, _NOT_BRACKETS):
        depth += 1 if c in (0x5B, 0x7B) else -1
        deepest = max(deepest, depth)
    return deepest


DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_REQUEST_PARTS = ("body", "query", "path", "header")
# Type tags pydantic appends to a location inside a union (``space: str | dict``): never a field the user wrote.
_UNION_TAG = re.compile(r"^(str|int|float|bool|list|dict|none)(\[.*\])?$")


def unprocessable(problems: Iterable[Mapping[str, Any]]) -> JSONResponse:
    """The one 422 answer: ``{"detail": [{"loc", "msg", "in", "line"?}, ...]}``."""
    unique = list({(p["in"], p["loc"], p["msg"]): dict(p) for p in problems}.values())
    return JSONResponse({"detail": unique}, status.HTTP_422_UNPROCESSABLE_CONTENT)


def problem_out(p: Problem) -> dict[str, Any]:
    """A domain :class:`Problem` as a 422 entry. Routes name the request part in ``source`` (``query``, ``path``,
    ``header``); any other source is the body field the problem lies in (an inline ``space``)."""
    where, loc = "body", p.path
    if p.source in _REQUEST_PARTS:
        where = p.source
    elif p.source:
        loc = p.source if not p.path else p.source + (p.path if p.path.startswith("[") else "." + p.path)
    return {"loc": loc, "msg": " ".join(p.message.split()), "in": where, **({"line": p.line} if p.line else {})}


def request_problem_out(err: Mapping[str, Any]) -> dict[str, Any]:
    """One of FastAPI's parameter errors (``{"type", "loc": ["body", ...], "msg", "input"}``) as a 422 entry."""
    part, *rest = err["loc"] or ("body",)
    loc = dotted([x for x in rest if not (isinstance(x, str) and _UNION_TAG.match(x))])
    where = part if part in _REQUEST_PARTS else "body"
    if isinstance(err.get("input"), bytes | bytearray):  # a body FastAPI did not read as JSON (text/plain, say)
        return {"loc": loc, "msg": "expected a JSON object (Content-Type: application/json)", "in": where}
    return {"loc": loc, "msg": error_message(err), "in": where}


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
            from service.worker import Worker  # the search driver (Optuna): only in a process that runs searches

            # The worker waits out outages for the default window, not the API's few seconds.
            worker = Worker(Repository(engine), database_url, data_dir=settings.data_dir)
            thread = threading.Thread(target=worker.run_forever, name="brainsearch-worker", daemon=True)
            thread.start()
        app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None and thread is not None:
                worker.shutdown()  # the running search goes back to the queue, its finished trials kept
                thread.join(30)  # its trial processes are stopped within seconds; never hang a shutdown
            engine.dispose()

    app = FastAPI(
        title="brainsearch",
        summary="Neural architecture search for Brainformer-style Mixture-of-Experts blocks",
        description=AUTH_AND_ERRORS,
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served below from local files, not a CDN
        redoc_url=None,
    )
    app.state.settings, app.state.repo, app.state.database_url = settings, repo, database_url
    app.add_middleware(_YamlSpaceBody)
    app.add_middleware(_AllowedHosts, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    def answer(
        request: Request,
        code: int,
        detail: str | None,
        problems: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Every error's one answer: the dashboard's error page to a browser, else the API's JSON (a 422's
        problems, one entry each; any other error's message)."""
        if dashboard.wants_html(request):
            text = detail or "; ".join(f"{p['loc'] or p['in']}: {p['msg']}" for p in problems or [])
            page = dashboard.error_page(request, code, text)
            page.headers.update(headers or {})
            return page
        if problems is not None:
            return unprocessable(problems)
        return JSONResponse({"detail": detail}, code, headers=headers)

    def input_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InputError)
        return answer(request, status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), [problem_out(p) for p in exc.problems])

    def request_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [request_problem_out(e) for e in exc.errors()]
        return answer(request, status.HTTP_422_UNPROCESSABLE_CONTENT, None, problems)

    def conflict(request: Request, exc: Exception) -> Response:
        return answer(request, status.HTTP_409_CONFLICT, str(exc))

    def storage_down(request: Request, exc: Exception) -> Response:
        log.warning("storage error on %s: %s", request.url.path, exc)
        return answer(request, status.HTTP_503_SERVICE_UNAVAILABLE, f"the database is unavailable: {exc}")

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette names the methods of the first route whose path matched; list every route's on that path.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
        problems: list[dict[str, Any]] | None = None
        if exc.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT:
            detail: Any = exc.detail
            problems = detail if isinstance(detail, list) else [{"loc": "", "msg": str(detail), "in": "body"}]
        return answer(request, exc.status_code, str(exc.detail), problems, headers)

    handlers = {
        InputError: input_error,
        RequestValidationError: request_invalid,
        ConflictError: conflict,
        StorageError: storage_down,
        StarletteHTTPException: http_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)

    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    # The bundles' own references to other hosts (ReDoc's footer logo) are refused by the browser itself.
    offline = {"Content-Security-Policy": "connect-src 'self'; img-src 'self' data:; font-src 'self' data:"}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="brainsearch API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )
        page.headers.update(offline)
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title="brainsearch API",
            redoc_js_url="/static/docs/redoc.standalone.js",
            redoc_favicon_url="/static/docs/favicon.png",
            with_google_fonts=False,
        )
        page.headers.update(offline)
        return page

    @app.get("/api/v1/healthz", tags=["health"], operation_id="get_health")
    def healthz() -> HealthOut:
        """Liveness, the database's backend and schema revision, and its id (which names its files on disk)."""
        return HealthOut(
            status="ok",
            database=engine.dialect.name,
            schema_revision=schema_revision(engine),
            database_id=repo.database_id(),
        )

    for router in (searches.router, trials.router, spaces.router):
        app.include_router(router, prefix="/api/v1", responses=ERROR_RESPONSES)
    app.include_router(dashboard.router)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """The schema with the auth this server applies: the bearer scheme is required where a token is (every
        non-GET route once one is configured; GET routes too with api_read_auth) and optional elsewhere, so a
        client knows which calls go without it."""
        if app.openapi_schema is None:
            schema = default_openapi()
            for methods in schema["paths"].values():
                for method, op in methods.items():
                    needed = settings.api_token and (method != "get" or settings.api_read_auth)
                    if "security" in op and not needed:
                        op["security"] = [*op["security"], {}]
        return app.openapi_schema or default_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return app
