"""The progress of a running search, on stderr: driven in this process (``search``, ``resume``, ``scale-up
--ladder``) or polled from a service (``status``, ``quickstart``); both read the same progress document.

On a terminal it is a live bar with the time elapsed and an estimate of the time left. With stderr redirected (a
log file, CI) nothing redraws, so a plain line is printed whenever the stage or the count of settled runs changes,
stamped with the UTC time, with the elapsed time and the estimate: a long run's log shows where it stands and when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from brainsearch.cli.common import data_dir, err

if TYPE_CHECKING:
    from brainsearch.client import Client
    from brainsearch.storage import Repository, Search

__all__ = ["StageClock", "bar_state", "follow", "follow_remote"]


@dataclass
class StageClock:
    """When each stage of a search was first seen (``baselines``, ``trials``, ``re-evaluation``, ``scale-up``; the
    counts in ``scale-up 2/6`` dropped), to print how long each took."""

    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)

    def see(self, stage: str | None) -> None:
        name = (stage or "trials").split(" ")[0]
        self.seen.setdefault(name, time.monotonic())

    def durations(self, end: float | None = None) -> list[tuple[str, float]]:
        """Each stage seen and its seconds, up to the next one (the last up to ``end``, default now); the wait before
        the first (queued) is left out."""
        end = time.monotonic() if end is None else end
        marks = sorted(self.seen.items(), key=lambda kv: kv[1])
        return [(name, (marks[i + 1][1] if i + 1 < len(marks) else end) - t) for i, (name, t) in enumerate(marks)]


def _eta(done: int, total: int | None, since: float) -> str:
    """``"ETA 1 min 20 s"`` from the runs done in this stage so far and the time they took; empty before one."""
    if not total or done <= 0 or done >= total:
        return ""
    left = (time.monotonic() - since) / done * (total - done)
    return f"ETA {_seconds(left)}"


def _seconds(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


class _Lines:
    """The bar's stand-in where stderr is not a terminal: one plain line per change of stage or count, with the
    elapsed time and an estimate of the time left in the stage."""

    def __init__(self, title: str) -> None:
        self.title, self.last = title, ("", -1)
        self.started = self.stage_started = time.monotonic()
        self.fields: dict[str, Any] = {}
        self.console = err

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, _description: str, **fields: Any) -> int:
        self.fields = fields
        return 0

    def update(self, _task: int, *, total: int | None, completed: int, status: str, **_: Any) -> None:
        stage = status.split("[/]")[0].removeprefix("[bold]").split(" ")[0]
        if stage != self.last[0]:
            self.stage_started = time.monotonic()
        if (stage, completed) == self.last:
            return
        self.last = (stage, completed)
        plain = status.replace("[bold]", "").replace("[/]", "").replace("[dim]", "")
        counted = f"{completed}/{total}" if total else str(completed)
        eta = _eta(completed, total, self.stage_started)
        elapsed = _seconds(time.monotonic() - self.started)
        title = self.title.format(task=SimpleNamespace(fields=self.fields))
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{when} {title.replace('[bold]', '')}: {counted}  {plain}  [{elapsed}{', ' + eta if eta else ''}]"
        err.print(line, markup=False, highlight=False, soft_wrap=True)


def bar_state(p: dict[str, Any]) -> tuple[int, int | None, str]:
    """``(completed, total, text)`` for a progress bar from a search's progress (the API's ``progress`` or the
    driver's, as a dict): the stage leads ("baselines", "trials", "scale-up 2/6"), the states are counted apart
    ("3/3 done: 1 completed, 2 pruned", never "3/3 completed"), and the scale-up stage moves the bar on its own
    count (and so does the re-evaluation)."""
    stage = p.get("stage") or "trials"
    done, total = p["completed"] + p["pruned"] + p["failed"], p["requested"]
    for name in ("scale-up ", "re-evaluation "):
        if stage.startswith(name) and "/" in stage:
            ran, _, planned = stage.removeprefix(name).partition("/")
            done, total = int(ran), int(planned)
    counts = f"{p['completed']} completed, {p['pruned']} pruned, {p['failed'] + p['crashed']} failed"
    best = f"best {p['best_val_loss']:.4f} (#{p['best_number']})" if p.get("best_val_loss") is not None else "best -"
    base = "  ".join(f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in p.get("baselines", {}).items())
    return done, total, f"[bold]{stage}[/]  {counts}, {p['running']} running  {best}  [dim]baselines: {base or '-'}[/]"


def _bar(title: str, *, disable: bool = False) -> Any:
    """A live progress bar on a terminal (elapsed time and time left), else plain lines (:class:`_Lines`)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not err.is_terminal and not disable:
        return _Lines(title)
    return Progress(
        TextColumn(title),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
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
            repo,
            search_id,
            url,
            on_progress=on_progress,
            on_note=lambda text: bar.console.print(f"note: {text}"),
            data_dir=data_dir(),
        )
        return driver.run()


def follow_remote(
    client: Client,
    search_id: int,
    until_end: bool = True,
    interval: float = 2.0,
    clock: StageClock | None = None,
) -> dict[str, Any]:
    """Poll a search on a service with a progress bar until it ends (or read it once, without ``until_end``);
    ``clock`` notes when each stage was first seen."""
    search: dict[str, Any] = client.search(search_id)
    with _bar(f"[bold]search {search_id}", disable=not until_end) as bar:
        task = bar.add_task("trials", total=search["trials_requested"], status=search["status"])
        while True:
            if clock is not None and search["status"] in ("queued", "running"):
                clock.see(search["progress"].get("stage"))
            done, total, shown = bar_state(search["progress"])
            bar.update(task, total=total, completed=done, status=shown)
            if not until_end or search["status"] not in ("queued", "running"):
                return search
            time.sleep(interval)
            search = client.search(search_id)
