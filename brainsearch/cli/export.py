"""The ``export`` command: one trial, picked by id, number or rank (:func:`brainsearch.search.standings.pick_trial`,
or the service's ``GET /searches/{id}/trial``, through :mod:`brainsearch.cli.source`), written as a spec, a
standalone PyTorch file or its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brainsearch.cli.common import (
    DbOption,
    SearchIdArgument,
    ServerOption,
    TokenOption,
    check_writable,
    fail,
    out,
)
from brainsearch.cli.source import open_source
from brainsearch.errors import Problem

__all__ = ["export_cmd"]


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
    exported = open_source(db, server, token).export(search_id, fmt, (trial, number, rank))
    row = exported.row
    if output is None:  # in the search's folder of its database's run store: never another database's file
        output = exported.store.exports_dir(search_id) / f"trial{row['number']}.{EXPORT_FORMATS[fmt][0]}"
    _write(output, exported.body, exported.spec)
    beside = f" (spec beside it: {output.with_suffix('.json')})" if exported.spec is not None else ""
    out.print(
        f"trial #{row['number']} (id {row['id']}, {row['pattern']}) exported as {fmt} to {output}{beside}", markup=False
    )


def _write(output: Path, body: bytes, spec: bytes | None) -> None:
    """The export at ``output``, and a weights file's JSON spec beside it."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(body)
        if spec is not None:
            output.with_suffix(".json").write_bytes(spec)
    except OSError as exc:
        raise fail([Problem("--output", f"cannot write {output}: {exc.strerror or exc}")]) from None
