"""The progress bar of a running search, on stderr: driven in this process (``search``, ``resume``, ``scale-up
--ladder``) or polled from a service (``status``, ``quickstart``); both read the same progress document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainsearch.cli.common import err

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

    from brainsearch.client import Client
    from brainsearch.storage import Repository, Search

__all__ = ["bar_state", "follow", "follow_remote"]


def bar_state(p: dict[str, Any]) -> tuple[int, int | None, str]:
    """``(completed, total, text)`` for a progress bar from a search's progress (the API's ``progress`` or the
    driver's, as a dict): the stage leads ("baselines", "trials", "scale-up 2/6"), the states are counted apart
    ("3/3 done: 1 completed, 2 pruned", never "3/3 completed"), and the scale-up stage moves the bar on its own
    count."""
    stage = p.get("stage") or "trials"
    done, total = p["completed"] + p["pruned"] + p["failed"], p["requested"]
    if stage.startswith("scale-up ") and "/" in stage:
        ran, _, planned = stage.removeprefix("scale-up ").partition("/")
        done, total = int(ran), int(planned)
    counts = f"{p['completed']} completed, {p['pruned']} pruned, {p['failed'] + p['crashed']} failed"
    best = f"best {p['best_val_loss']:.4f} (#{p['best_number']})" if p.get("best_val_loss") is not None else "best -"
    base = "  ".join(f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in p.get("baselines", {}).items())
    return done, total, f"[bold]{stage}[/]  {counts}, {p['running']} running  {best}  [dim]baselines: {base or '-'}[/]"


def _bar(title: str, *, disable: bool = False) -> Bar:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        disable=disable,
    )


def follow(repo: Repository, search_id: int, url: str) -> Search:
    """Run (or resume) a stored search in the foreground with a live progress bar; returns the finished search.
    SIGTERM stops it as Ctrl-C does."""
    import signal

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _drive(repo, search_id, url)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drive(repo: Repository, search_id: int, url: str) -> Search:
    from brainsearch.search.driver import SearchDriver
    from brainsearch.search.submission import Progress as SearchProgress

    with _bar("[bold]search {task.fields[id]}") as bar:
        task = bar.add_task("trials", total=None, id=search_id, status="starting")

        def on_progress(p: SearchProgress) -> None:
            done, total, status = bar_state(vars(p))
            bar.update(task, total=total, completed=done, status=status)

        driver = SearchDriver(
            repo, search_id, url, on_progress=on_progress, on_note=lambda text: bar.console.print(f"note: {text}")
        )
        return driver.run()


def follow_remote(client: Client, search_id: int, until_end: bool = True, interval: float = 2.0) -> dict[str, Any]:
    """Poll a search on a service with a progress bar until it ends (or read it once, without ``until_end``)."""
    import time

    search: dict[str, Any] = client.search(search_id)
    with _bar(f"[bold]search {search_id}", disable=not until_end) as bar:
        task = bar.add_task("trials", total=search["trials_requested"], status=search["status"])
        while True:
            done, total, shown = bar_state(search["progress"])
            bar.update(task, total=total, completed=done, status=shown)
            if not until_end or search["status"] not in ("queued", "running"):
                return search
            time.sleep(interval)
            search = client.search(search_id)
