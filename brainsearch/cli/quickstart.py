"""The ``quickstart`` command: the main job on embedded defaults, start to end, through the service as a user
would use it (the REST API and the dashboard on 127.0.0.1, SQLite, the local executor)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brainsearch.cli.common import DbOption, err, fail, open_repository, out
from brainsearch.cli.progress import follow_remote
from brainsearch.cli.render import print_leaderboard, print_scale_up
from brainsearch.cli.searches import remote_reference
from brainsearch.errors import Problem

if TYPE_CHECKING:
    import threading

    import uvicorn

    from brainsearch.client import Client

__all__ = ["quickstart_cmd"]


def quickstart_cmd(
    trials: Annotated[int, typer.Option(min=1, max=1000, help="Trials of the tiny space to run.")] = 6,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the local service (0: any free one).")] = 8000,
    keep_serving: Annotated[bool, typer.Option(help="Keep the dashboard up afterwards, until Ctrl-C.")] = False,
    scale_up: Annotated[bool, typer.Option(help="Run the scale-up stage (cpu-tiny -> cpu-small) after the trials.")] = (
        True
    ),
    db: DbOption = None,
) -> None:
    """The main job on embedded defaults: start the service on 127.0.0.1 (SQLite, local executor), submit the
    tiny space, show the dashboard URL and the progress, then print the leaderboard and export the winner."""
    import time

    from brainsearch.client import Client
    from brainsearch.settings import get_settings
    from brainsearch.store import RunStore

    repo, url = open_repository(db)
    server, thread, base = _start_service(url, port)
    try:
        client = Client(base)
        body: dict[str, Any] = {"space": "tiny", "trials": trials, "name": "quickstart"}
        if scale_up:  # the paper's second stage at CPU size: the top 2 and GLaM again at cpu-tiny and cpu-small
            body["scale_up"] = {"ladder": ["cpu-tiny", "cpu-small"]}  # the presets' budgets: 64K and 200K tokens
        search = client.submit(body)
        err.print(f"dashboard (live while this runs): [bold]{base}/searches/{search['id']}[/]  (API: {base}/docs)")
        search = follow_remote(client, search["id"], interval=1.0)
        page = client.trials(search["id"], limit=50)
        print_leaderboard(page["items"], search["id"], page["total"], remote_reference(search), noise=search["noise"])
        if scale_up:
            print_scale_up(client.scale_up(search["id"]))
        # The winner: the best mean over seeds among the re-evaluated trials (the best first run without them).
        completed = [t for t in page["items"] if t["state"] == "completed" and not t["is_baseline"]]
        reevaluated = sorted((t for t in completed if t["seeds"] >= 2), key=lambda t: t["val_loss_mean"])
        winner = (reevaluated or completed or [None])[0]
        if winner is not None:
            store = RunStore(get_settings().data_dir, repo.database_id())
            _export_winner(client, winner, store.exports_dir(search["id"]))
        if keep_serving:
            err.print(f"dashboard: {base}/searches/{search['id']}  (serving until Ctrl-C)", markup=False)
            while thread.is_alive():
                time.sleep(0.5)
    finally:
        server.should_exit = True
        thread.join(60)
    if not keep_serving:  # said after the service stopped, so the link is never shown dead
        port = port or 8000
        again = f"brainsearch serve --port {port}" + (f" --db {url}" if db else "")
        err.print(
            f"the quickstart's service has stopped; to browse this search: `{again}`, then open "
            f"http://127.0.0.1:{port}/searches/{search['id']} (or run `brainsearch quickstart --keep-serving`)",
            markup=False,
        )
    if search["status"] != "completed":
        err.print(f"search {search['id']} {search['status']}: {search.get('error')}", markup=False)
        raise typer.Exit(1)


def _start_service(url: str, port: int) -> tuple[uvicorn.Server, threading.Thread, str]:
    """The service with an embedded worker on 127.0.0.1:``port``, in a thread: the server, its thread and its base
    URL once it accepts connections. A port in use is bad input (``--port``)."""
    import socket
    import threading
    import time

    import uvicorn

    from brainsearch.settings import get_settings
    from service.app import create_app

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise fail([Problem("--port", f"port {port} on 127.0.0.1 is in use (try --port 0)")]) from None
    settings = get_settings().model_copy(update={"database_url": url, "executor": "local"})
    config = uvicorn.Config(
        create_app(settings, embedded_worker=True), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="brainsearch-service", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise fail([Problem("--port", f"the service could not start on 127.0.0.1:{port}")])
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def _export_winner(client: Client, winner: dict[str, Any], exports: Path) -> None:
    """The best trial as its JSON spec, standalone PyTorch file and weights in ``exports``, and how to run it."""
    exports.mkdir(parents=True, exist_ok=True)
    stem = exports / f"trial{winner['number']}"
    written = []
    for fmt, suffix in (("json", "json"), ("pytorch", "py"), ("safetensors", "safetensors")):
        stem.with_suffix(f".{suffix}").write_bytes(client.download(winner["id"], fmt))
        written.append(stem.with_suffix(f".{suffix}").name)
    out.print(
        f"winner: trial {winner['number']} ({winner['pattern']}), exported to {exports}: "
        + ", ".join(written)
        + f"  (run it: python {stem.with_suffix('.py')} {stem.with_suffix('.safetensors')})",
        markup=False,
    )
