"""Where a command reads and changes searches: a database (``--db``, through the repository) or a service
(``--server``, through the HTTP client). Both answer with the same JSON documents - the API's, built by
:mod:`brainsearch.search.documents` - so a command is written once, against :class:`Source`, and
:func:`open_source` is the one place that looks at which was given.

Bad input exits 2 the same way from both: a missing search names the search (and the database), a pick that finds
no trial names the option (``--trial``, ``--number``, ``--rank``) with what was asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from brainsearch.cli.common import fail, open_repository, run_store, search_or_fail
from brainsearch.errors import ArchitectureError, Problem

if TYPE_CHECKING:
    from brainsearch.client import Client
    from brainsearch.storage import Repository
    from brainsearch.store import RunStore

__all__ = ["Exported", "Pick", "Source", "open_source"]

Pick = tuple[int | None, int | None, int | None]  # (trial id, number, rank): exactly one is given

# The option naming each selector of a pick, for the problem when nothing matches.
_PICK_OPTIONS = {"trial_id": "--trial", "number": "--number", "rank": "--rank"}


@dataclass(frozen=True)
class Exported:
    """A picked trial's export: its row (the API's document), the file, the JSON spec that goes beside a weights
    file, and the run store of the trial's database (where exports go by default)."""

    row: dict[str, Any]
    body: bytes
    spec: bytes | None
    store: RunStore


class Source(Protocol):
    """The searches a command reads and changes."""

    def search(self, search_id: int) -> dict[str, Any]:
        """The search document: progress, noise, verdict, reference baseline."""
        ...

    def leaderboard(self, search_id: int, sort: str, limit: int) -> dict[str, Any]:
        """A page of the leaderboard: ``items`` (rows) and ``total``."""
        ...

    def scale_up(self, search_id: int, **params: Any) -> dict[str, Any]:
        """The scale-up report (``params``: target, law, scale_by)."""
        ...

    def run_scale_up(self, search_id: int, stage: dict[str, Any], top_k: int | None) -> None:
        """Add a scale-up stage to a finished search and follow it to its end."""
        ...

    def delete(self, search_id: int) -> None:
        """Delete a finished search with its trials and files."""
        ...

    def export(self, search_id: int, fmt: str, pick: Pick) -> Exported:
        """The picked trial's export as ``fmt`` (and, for weights, its JSON spec)."""
        ...


def open_source(db: str | None, server: str | None, token: str | None) -> Source:
    """The service at ``server`` when given, else the database ``db`` (default: the settings')."""
    if server:
        from brainsearch.client import Client

        return ServiceSource(Client(server, token))
    repo, url = open_repository(db)
    return RepositorySource(repo, url)


class RepositorySource:
    """A database, read through the repository and the documents module."""

    def __init__(self, repo: Repository, url: str) -> None:
        self.repo, self.url = repo, url

    def search(self, search_id: int) -> dict[str, Any]:
        from brainsearch.search.documents import search_document

        return search_document(self.repo, search_or_fail(self.repo, search_id)).model_dump(mode="json")

    def leaderboard(self, search_id: int, sort: str, limit: int) -> dict[str, Any]:
        from brainsearch.search.documents import leaderboard_page

        search = search_or_fail(self.repo, search_id)
        return leaderboard_page(self.repo, search, sort=sort, limit=limit).model_dump(mode="json")

    def scale_up(self, search_id: int, **params: Any) -> dict[str, Any]:
        """The report, with the checkpoints on disk under the data directory; a bad --target exits 2."""
        from brainsearch.search.documents import scale_up_document

        search = search_or_fail(self.repo, search_id)
        try:
            return scale_up_document(self.repo, search, run_store(self.repo), **params).model_dump(mode="json")
        except ArchitectureError as exc:
            raise fail([Problem("--target", p.message) for p in exc.problems]) from None

    def run_scale_up(self, search_id: int, stage: dict[str, Any], top_k: int | None) -> None:
        """In the foreground, with a progress bar."""
        from brainsearch.cli.progress import follow
        from brainsearch.search.submission import add_scale_up

        search = search_or_fail(self.repo, search_id)
        add_scale_up(self.repo, search, stage, top_k=top_k, prefix=("--ladder",))
        follow(self.repo, search_id, self.url)

    def delete(self, search_id: int) -> None:
        from brainsearch.errors import ConflictError
        from brainsearch.search.submission import delete_search

        search_or_fail(self.repo, search_id)
        try:
            delete_search(self.repo, search_id, run_store(self.repo))
        except ConflictError as exc:
            raise fail([Problem("SEARCH_ID", str(exc))]) from None

    def export(self, search_id: int, fmt: str, pick: Pick) -> Exported:
        from brainsearch.errors import TrialNotFound
        from brainsearch.export import WeightsNotKept, export_file
        from brainsearch.search.documents import trial_row
        from brainsearch.search.noise import export_comparison
        from brainsearch.search.standings import pick_trial
        from brainsearch.search.submission import search_noise_view

        search = search_or_fail(self.repo, search_id)
        trial_id, number, rank = pick
        view = search_noise_view(self.repo, search)
        try:
            picked = pick_trial(self.repo, search_id, view.ranking, trial_id=trial_id, number=number, rank=rank)
        except TrialNotFound as exc:
            raise fail([Problem(_PICK_OPTIONS[exc.selector], exc.message)]) from None
        store = run_store(self.repo)
        comparison = export_comparison(picked, view)
        try:
            body = export_file(picked, fmt, store, comparison).read()  # type: ignore[arg-type]
        except WeightsNotKept as exc:
            raise fail([Problem("--format", str(exc))]) from None
        spec = export_file(picked, "json", store, comparison).read() if fmt == "safetensors" else None
        return Exported(trial_row(picked, view).model_dump(mode="json"), body, spec, store)


class ServiceSource:
    """A service, read through its REST API."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def search(self, search_id: int) -> dict[str, Any]:
        return self.client.search(search_id)

    def leaderboard(self, search_id: int, sort: str, limit: int) -> dict[str, Any]:
        return self.client.trials(search_id, sort=sort, limit=limit)

    def scale_up(self, search_id: int, **params: Any) -> dict[str, Any]:
        return self.client.scale_up(search_id, **params)

    def run_scale_up(self, search_id: int, stage: dict[str, Any], top_k: int | None) -> None:
        """Queued on the service, followed with a progress bar."""
        from brainsearch.cli.progress import follow_remote

        self.client.add_scale_up(search_id, {"scale_up": stage, **({"top_k": top_k} if top_k is not None else {})})
        follow_remote(self.client, search_id, interval=1.0)

    def delete(self, search_id: int) -> None:
        self.client.delete(search_id)

    def export(self, search_id: int, fmt: str, pick: Pick) -> Exported:
        trial_id, number, rank = pick
        if trial_id is not None:
            row = self.client.get_trial(trial_id)
            if row["search_id"] != search_id:
                raise fail([Problem("--trial", f"search {search_id} has no trial with id {trial_id}")])
        else:
            self.client.search(search_id)  # a missing search is reported as such, not as a missing trial
            row = self.client.pick_trial(search_id, number=number, rank=rank)
        body = self.client.download(row["id"], fmt)
        spec = self.client.download(row["id"], "json") if fmt == "safetensors" else None
        return Exported(row, body, spec, run_store(self.client.health()["database_id"]))
