"""The service commands: ``serve`` (the REST API and dashboard, with an embedded worker), ``worker`` (a standalone
one on a shared database), and the client side, ``submit`` and ``status``. The service package is imported inside
them: the spec commands start without FastAPI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from brainsearch.cli.common import (
    DbOption,
    SearchIdArgument,
    ServerOption,
    TokenOption,
    data_dir,
    err,
    fail,
    open_repository,
    read_space,
)
from brainsearch.cli.progress import follow_remote
from brainsearch.errors import Problem

__all__ = ["serve_cmd", "status_cmd", "submit_cmd", "worker_cmd"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# SIGTERM: requests in flight get this long to finish, then the server closes (the embedded worker requeues its
# search as it stops).
GRACEFUL_SHUTDOWN_S = 3


def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to bind (a non-loopback one needs a token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    token: Annotated[
        str | None, typer.Option(envvar="BRAINSEARCH_API_TOKEN", help="Bearer token required on writes.")
    ] = None,
    worker: Annotated[bool, typer.Option(help="Run an embedded worker for queued searches.")] = True,
    db: DbOption = None,
) -> None:
    """The REST API (OpenAPI at /docs) with an embedded worker running queued searches."""
    import uvicorn

    from brainsearch.settings import get_settings
    from service.app import create_app

    if host not in _LOOPBACK and not token:
        raise fail([Problem("--host", f"binding {host} needs a token (--token or BRAINSEARCH_API_TOKEN)")])
    repo, url = open_repository(db)  # a bad database is a clear error before the server starts
    settings = get_settings()
    hosts = ["*"] if host in ("0.0.0.0", "::") else list(dict.fromkeys([*settings.allowed_hosts, host]))
    settings = settings.model_copy(update={"database_url": url, "api_token": token, "allowed_hosts": hosts})
    err.print(f"brainsearch API on http://{host}:{port}/api/v1 (docs at /docs); database {repo.engine.url!r}")
    config = uvicorn.Config(
        create_app(settings, embedded_worker=worker),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    uvicorn.Server(config).run()
    _exit_if_threads_linger()


def _exit_if_threads_linger() -> None:
    """After the server stopped: a request handler still computing in a worker thread (threads cannot be
    cancelled) would keep the process alive, burning CPU, past SIGTERM. The state that matters is in the database,
    so the process ends here instead of waiting for it."""
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def worker_cmd(
    executor: Annotated[str | None, typer.Option(help="Run every search with this executor: local or ray.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="The Ray cluster for the ray executor.")] = None,
    lease: Annotated[float, typer.Option(min=1.0, max=3600.0, help="Lease seconds (renewed every third).")] = 30.0,
    once: Annotated[bool, typer.Option(help="Run the queued searches, then exit.")] = False,
    db: DbOption = None,
) -> None:
    """A standalone worker: claims queued searches from a shared database and runs them (SIGTERM requeues)."""
    import logging
    import signal

    from service.worker import Worker

    if executor not in (None, "local", "ray"):
        raise fail([Problem("--executor", f"must be local or ray, got {executor!r}")])
    repo, url = open_repository(db)
    options = {k: v for k, v in (("executor", executor), ("ray_address", ray_address)) if v is not None}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    w = Worker(repo, url, lease_seconds=lease, options=options or None, data_dir=data_dir())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: w.shutdown())
    err.print(f"worker {w.name} on {repo.engine.url!r}")
    if once:
        while w.run_once() is not None:
            pass
        return
    w.run_forever()


def submit_cmd(
    space_file: Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")],
    server: ServerOption = None,
    token: TokenOption = None,
    trials: Annotated[int | None, typer.Option(help="Trials to run.")] = None,
    sampler: Annotated[str | None, typer.Option(help="evolution, random, tpe or nsga2.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the search.")] = None,
) -> None:
    """Submit a search to a service; the space file is checked here first (the same messages as validate)."""
    from brainsearch.client import Client
    from brainsearch.space import bundled_space_names

    if not server:
        raise fail([Problem("--server", "give the service's URL (or BRAINSEARCH_SERVER)")])
    space: str | dict[str, Any] = space_file
    if not (space_file in bundled_space_names() and not Path(space_file).exists()):
        space = read_space(space_file).model_dump(mode="json")
    body = {"space": space, "trials": trials, "sampler": sampler, "name": name}
    search = Client(server, token).submit({k: v for k, v in body.items() if v is not None})
    sys.stdout.write(f"{search['id']}\n")
    err.print(f"search {search['id']} queued on {server}; follow it with `brainsearch status {search['id']}`")


def status_cmd(
    search_id: SearchIdArgument,
    server: ServerOption = None,
    token: TokenOption = None,
    follow: Annotated[bool, typer.Option(help="Follow the search with a progress bar until it ends.")] = True,
    interval: Annotated[float, typer.Option(min=0.2, max=600, help="Seconds between polls.")] = 2.0,
) -> None:
    """A search's status on a service (JSON on stdout, with its verdict so far); with --follow (default), a progress
    bar until it ends."""
    from brainsearch.client import Client

    if not server:
        raise fail([Problem("--server", "give the service's URL (or BRAINSEARCH_SERVER)")])
    search = follow_remote(Client(server, token), search_id, follow, interval)
    sys.stdout.write(json.dumps({k: search[k] for k in ("id", "status", "error", "progress", "verdict")}) + "\n")
    err.print(f"verdict: {search['verdict']['text']}", markup=False, highlight=False)
    if search["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)
