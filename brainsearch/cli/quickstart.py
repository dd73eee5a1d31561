"""The ``quickstart`` command: the main job on embedded defaults, start to end, through the service as a user
would use it (the REST API and the dashboard on 127.0.0.1, SQLite, the local executor)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brainsearch.cli.common import DbOption, err, fail, open_repository, out, run_store
from brainsearch.cli.progress import StageClock, follow_remote
from brainsearch.cli.render import print_leaderboard, print_scale_up, print_verdict
from brainsearch.cli.searches import remote_reference
from brainsearch.errors import Problem

if TYPE_CHECKING:
    import threading

    import uvicorn

    from brainsearch.client import Client

__all__ = ["QUICKSTART_SEEDS", "SMALL_RUNG_TOKENS", "quickstart_cmd"]

# The quickstart's cpu-small rung trains 100K tokens of GLaM's compute per run (the preset's default is 200K): the
# scale-up's cost halves, and the rung still trains 2.5x the proxies' model on 1.6x their tokens.
SMALL_RUNG_TOKENS = 100_000
QUICKSTART_SEEDS = 4


def quickstart_cmd(
    trials: Annotated[int, typer.Option(min=1, max=1000, help="Trials of the tiny space to run.")] = 8,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the local service (0: any free one).")] = 8000,
    keep_serving: Annotated[bool, typer.Option(help="Keep the dashboard up afterwards, until Ctrl-C.")] = False,
    scale_up: Annotated[bool, typer.Option(help="Run the scale-up stage (cpu-tiny -> cpu-small) after the trials.")] = (
        True
    ),
    db: DbOption = None,
) -> None:
    """The main job on embedded defaults: start the service on 127.0.0.1 (SQLite, local executor), submit the
    tiny space, show the dashboard URL and the progress, then print the leaderboard and export the winner."""
    from brainsearch.client import Client

    started = time.monotonic()
    repo, url = open_repository(db)
    server, thread, base = _start_service(url, port)
    clock = StageClock()
    clock.seen["service start"] = started
    try:
        client = Client(base)
        # Four seeds for GLaM and for each of the four best trials: three held-out seeds per re-evaluated trial.
        body: dict[str, Any] = {
            "space": "tiny",
            "trials": trials,
            "name": "quickstart",
            "baseline_seeds": QUICKSTART_SEEDS,
            "top_k_seeds": QUICKSTART_SEEDS,
        }
        if scale_up:  # the paper's second stage at CPU size: the top 2 and GLaM again at cpu-tiny and cpu-small
            body["scale_up"] = {"ladder": ["cpu-tiny", {"preset": "cpu-small", "budget_tokens": SMALL_RUNG_TOKENS}]}
        search = client.submit(body)
        err.print(f"dashboard (live while this runs): [bold]{base}/searches/{search['id']}[/]  (API: {base}/docs)")
        search = follow_remote(client, search["id"], interval=1.0, clock=clock)
        finished = time.monotonic()
        page = client.trials(search["id"], limit=50)
        print_leaderboard(page["items"], search["id"], page["total"], remote_reference(search), noise=search["noise"])
        if scale_up:
            print_scale_up(client.scale_up(search["id"]))
        # The winner is the verdict's: a block that beat GLaM at equal compute and held at the scale-up, or GLaM.
        verdict = search["verdict"]
        if verdict.get("winner_trial_id") is not None:
            store = run_store(repo)
            _export_winner(client, verdict, store.exports_dir(search["id"]))
        print_verdict(verdict)
        out.print(_stage_times(clock, finished, time.monotonic()), markup=False, highlight=False)
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


def _stage_times(clock: StageClock, finished: float, end: float) -> str:
    """``stages: service start 2 s, baselines 9 s, ...; report and export 3 s; total 2 min 41 s`` (as the
    quickstart's poll saw them, to the second)."""
    parts = [f"{name} {_secs(seconds)}" for name, seconds in clock.durations(finished)]
    parts.append(f"report and export {_secs(end - finished)}")
    return f"stages: {', '.join(parts)}; total {_secs(end - clock.started)}"


def _secs(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


def _export_winner(client: Client, verdict: dict[str, Any], exports: Path) -> None:
    """The verdict's winner (a trial, or the baseline) as its JSON spec, standalone PyTorch file and weights in
    ``exports``, and how to run it."""
    exports.mkdir(parents=True, exist_ok=True)
    baseline = verdict["winner"] == "baseline"
    stem = exports / (f"{verdict['baseline']}-baseline" if baseline else f"trial{verdict['winner_number']}")
    written = []
    for fmt, suffix in (("json", "json"), ("pytorch", "py"), ("safetensors", "safetensors")):
        stem.with_suffix(f".{suffix}").write_bytes(client.download(verdict["winner_trial_id"], fmt))
        written.append(stem.with_suffix(f".{suffix}").name)
    who = f"the {verdict['baseline']} baseline" if baseline else f"trial {verdict['winner_number']}"
    out.print(
        f"winner: {who} ({verdict['winner_pattern']}), exported to {exports}: "
        + ", ".join(written)
        + f"  (run it: python {stem.with_suffix('.py')} {stem.with_suffix('.safetensors')})",
        markup=False,
    )
