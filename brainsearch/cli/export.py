"""The ``export`` command: one trial, picked by id, number or rank (:func:`brainsearch.search.standings.pick_trial`,
or the service's ``GET /searches/{id}/trial``), written as a spec, a standalone PyTorch file or its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brainsearch.cli.common import (
    DbOption,
    SearchIdArgument,
    ServerOption,
    TokenOption,
    check_writable,
    fail,
    open_repository,
    out,
    run_store,
    search_or_fail,
)
from brainsearch.errors import Problem

if TYPE_CHECKING:
    from brainsearch.client import Client
    from brainsearch.store import RunStore

__all__ = ["export_cmd"]

# The option naming each selector of a pick, for the problem when nothing matches.
_PICK_OPTIONS = {"trial_id": "--trial", "number": "--number", "rank": "--rank"}


def export_cmd(
    search_id: SearchIdArgument,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json | yaml (spec), pytorch (standalone .py), safetensors (weights)")
    ] = "json",
    trial: Annotated[int | None, typer.Option(help="The trial's id (as the API and dashboard show it).")] = None,
    number: Annotated[int | None, typer.Option(help="Or its number in the search (the leaderboard's #).")] = None,
    rank: Annotated[int | None, typer.Option(min=1, help="Or the N-th best completed trial (default: the best).")] = (
        None
    ),
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write (default: the data dir's search folder)."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Export a trial: its architecture spec (JSON / YAML, with the search, trial, cost and metrics), a standalone
    PyTorch file (only torch imports, a build() function), or the trained proxy's weights (safetensors, with the
    JSON spec written beside them)."""
    from brainsearch.export import EXPORT_FORMATS

    if fmt not in EXPORT_FORMATS:
        raise fail([Problem("--format", f"must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")])
    if sum(x is not None for x in (trial, number, rank)) > 1:
        raise fail([Problem("--trial", "give one of --trial, --number and --rank")])
    if trial is None and number is None:
        rank = rank or 1
    if output is not None and fmt == "safetensors":
        check_writable(output, ".safetensors")  # the spec goes beside it as .json
    if server:
        from brainsearch.client import Client

        exported = _remote_export(Client(server, token), search_id, fmt, (trial, number, rank))
    else:
        exported = _local_export(db, search_id, fmt, (trial, number, rank))
    row = exported.row
    if output is None:  # in the search's folder of its database's run store: never another database's file
        output = exported.store.exports_dir(search_id) / f"trial{row['number']}.{EXPORT_FORMATS[fmt][0]}"
    _write(output, exported.body, exported.spec)
    beside = f" (spec beside it: {output.with_suffix('.json')})" if exported.spec is not None else ""
    out.print(
        f"trial #{row['number']} (id {row['id']}, {row['pattern']}) exported as {fmt} to {output}{beside}", markup=False
    )


Pick = tuple[int | None, int | None, int | None]  # (trial id, number, rank): exactly one is given


@dataclass(frozen=True)
class _Exported:
    """A picked trial's export: its row (the API's, or the repository's as a dict), the file, the JSON spec that goes
    beside a weights file, and the run store of the trial's database (where exports go by default)."""

    row: dict[str, Any]
    body: bytes
    spec: bytes | None
    store: RunStore


def _local_export(db: str | None, search_id: int, fmt: str, pick: Pick) -> _Exported:
    """The picked trial of a search in a database, its export and (for weights) its JSON spec."""
    from dataclasses import asdict

    from brainsearch.errors import TrialNotFound
    from brainsearch.export import WeightsNotKept, export_file
    from brainsearch.search.noise import export_comparison
    from brainsearch.search.standings import pick_trial
    from brainsearch.search.submission import search_noise_view

    repo, _ = open_repository(db)
    search = search_or_fail(repo, search_id)
    trial_id, number, rank = pick
    view = search_noise_view(repo, search)
    try:
        picked = pick_trial(repo, search_id, view.ranking, trial_id=trial_id, number=number, rank=rank)
    except TrialNotFound as exc:
        raise fail([Problem(_PICK_OPTIONS[exc.selector], exc.message)]) from None
    store = run_store(repo)
    comparison = export_comparison(picked, view)
    try:
        body = export_file(picked, fmt, store, comparison).read()  # type: ignore[arg-type]
    except WeightsNotKept as exc:
        raise fail([Problem("--format", str(exc))]) from None
    spec = export_file(picked, "json", store, comparison).read() if fmt == "safetensors" else None
    return _Exported(asdict(picked), body, spec, store)


def _remote_export(client: Client, search_id: int, fmt: str, pick: Pick) -> _Exported:
    """The picked trial of a search on a service, its export and (for weights) its JSON spec."""

    trial_id, number, rank = pick
    if trial_id is not None:
        row = client.get_trial(trial_id)
        if row["search_id"] != search_id:
            raise fail([Problem("--trial", f"search {search_id} has no trial with id {trial_id}")])
    else:
        client.search(search_id)  # a missing search is reported as such, not as a missing trial
        row = client.pick_trial(search_id, number=number, rank=rank)
    body = client.download(row["id"], fmt)
    spec = client.download(row["id"], "json") if fmt == "safetensors" else None
    return _Exported(row, body, spec, run_store(client.health()["database_id"]))


def _write(output: Path, body: bytes, spec: bytes | None) -> None:
    """The export at ``output``, and a weights file's JSON spec beside it."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(body)
        if spec is not None:
            output.with_suffix(".json").write_bytes(spec)
    except OSError as exc:
        raise fail([Problem("--output", f"cannot write {output}: {exc.strerror or exc}")]) from None
