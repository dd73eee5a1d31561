"""The search commands: ``search`` and ``resume`` run a search in the foreground; ``leaderboard``, ``scale-up``
and ``delete`` read or change one, in a database (``--db``) or on a service (``--server``)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brainsearch.cli.common import (
    DbOption,
    SearchIdArgument,
    ServerOption,
    TokenOption,
    err,
    fail,
    open_repository,
    read_space,
    search_or_fail,
)
from brainsearch.cli.progress import follow
from brainsearch.cli.render import print_leaderboard, print_scale_up, print_verdict
from brainsearch.cli.source import RepositorySource, open_source
from brainsearch.errors import Problem

if TYPE_CHECKING:
    from brainsearch.space import SearchSpace
    from brainsearch.storage import Repository

__all__ = [
    "LEADERBOARD_ROWS",
    "delete_cmd",
    "leaderboard_cmd",
    "remote_reference",
    "resume_cmd",
    "scale_up_cmd",
    "search_cmd",
]

LEADERBOARD_ROWS = 20  # what `leaderboard` shows by default, and `search` / `resume` at the end


def search_cmd(
    space_file: Annotated[str, typer.Argument(metavar="SPACE.yaml", help="A space file or a bundled space name.")],
    trials: Annotated[int | None, typer.Option(help="Trials to run (default: the space's search.trials).")] = None,
    sampler: Annotated[str | None, typer.Option(help="evolution, random, tpe or nsga2.")] = None,
    executor: Annotated[str | None, typer.Option(help="local (processes) or ray.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Trials at once.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler and training seed.")] = None,
    pruner: Annotated[str | None, typer.Option(help="none, baseline, median or successive_halving.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads per trial (default: cores / concurrency).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    ray_address: Annotated[str | None, typer.Option(help="An existing Ray cluster (default: a local Ray).")] = None,
    gpus_per_trial: Annotated[float, typer.Option(help="GPUs each Ray trial reserves.")] = 0.0,
    memory_per_trial: Annotated[
        str | None, typer.Option(help="Memory a local trial may allocate, e.g. 4GiB (past it: out_of_memory).")
    ] = None,
    compile_runs: Annotated[
        bool | None,
        typer.Option("--compile/--no-compile", help="torch.compile every run (default: on CUDA); never charged."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the search (default: the space's).")] = None,
    top_k: Annotated[int | None, typer.Option(help="Candidates the scale-up stage trains again.")] = None,
    baseline_seeds: Annotated[
        int | None, typer.Option(help="Seeds the reference baseline trains with: the seed noise (default 3).")
    ] = None,
    top_k_seeds: Annotated[
        int | None, typer.Option(help="Seeds each of the best trials is re-evaluated with (default 3; 1: none).")
    ] = None,
    scale_up: Annotated[
        str | None,
        typer.Option(
            help="Scale-up ladder, e.g. cpu-tiny,cpu-small:100K (preset[:token budget], comma-separated); "
            "default: the space's search.scale_up"
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Scale preset the scaling law predicts at.")] = None,
    db: DbOption = None,
) -> None:
    """Run a search in the foreground: baselines, then trials, with a progress bar; print the leaderboard (and the
    scale-up stage's report when the search has one)."""
    from pydantic import ValidationError

    from brainsearch._validation import problems_from_validation_error
    from brainsearch.search.submission import RunOptions, create_search
    from brainsearch.settings import get_settings

    space = read_space(space_file)
    overrides: dict[str, Any] = {
        k: v
        for k, v in (
            ("trials", trials),
            ("sampler", sampler),
            ("concurrency", concurrency),
            ("seed", seed),
            ("pruner", pruner),
            ("top_k", top_k),
            ("baseline_seeds", baseline_seeds),
            ("top_k_seeds", top_k_seeds),
        )
        if v is not None
    }
    if scale_up is not None or target is not None:
        overrides["scale_up"] = _scale_up_option(space, scale_up, target)
    try:
        options = RunOptions(
            executor=executor or get_settings().executor,
            threads_per_trial=threads,
            device=device,
            ray_address=ray_address or get_settings().ray_address,
            gpus_per_trial=gpus_per_trial,
            memory_per_trial=memory_per_trial,
            compile=compile_runs,
        )
    except ValidationError as exc:
        raise fail(problems_from_validation_error(exc, "options")) from None
    repo, url = open_repository(db)
    search, _ = create_search(repo, space, name=name, overrides=overrides, options=options)
    err.print(
        f"search {search.id} of space {space.name}: stored in {repo.engine.url!r}; resume it with "
        f"`brainsearch resume {search.id}`" + (f" --db {db}" if db else "")
    )
    _finish(repo, search.id, url)


def resume_cmd(
    search_id: Annotated[int, typer.Argument(metavar="SEARCH_ID", help="The search to resume.")],
    db: DbOption = None,
) -> None:
    """Resume a stopped search from the database: finished trials are kept, interrupted ones retried."""
    repo, url = open_repository(db)
    search_or_fail(repo, search_id)
    _finish(repo, search_id, url)


def _scale_up_option(space: SearchSpace, ladder: str | None, target: str | None) -> dict[str, Any]:
    """``--scale-up`` / ``--target`` over the space's own ``search.scale_up``."""
    current = space.search.scale_up.model_dump(mode="json") if space.search.scale_up else {}
    if ladder is not None:
        current["ladder"] = _ladder_document(ladder, {})["ladder"]
    if target is not None:
        current["target"] = target
    if "ladder" not in current:
        raise fail([Problem("--target", "the space has no scale-up ladder: give --scale-up too")])
    return current


def _finish(repo: Repository, search_id: int, url: str) -> None:
    """Run the search to its end, then print its leaderboard (and scale-up report); exit 1 unless it completed."""

    follow(repo, search_id, url)
    source = RepositorySource(repo, url)
    document = source.search(search_id)
    page = source.leaderboard(search_id, "val_loss", LEADERBOARD_ROWS)
    print_leaderboard(page["items"], search_id, page["total"], remote_reference(document), noise=document["noise"])
    if document["settings"].get("search", {}).get("scale_up"):
        print_scale_up(source.scale_up(search_id))
    print_verdict(document["verdict"])
    if document["status"] != "completed":
        err.print(f"search {search_id} {document['status']}: {document['error']}", markup=False)
        raise typer.Exit(1)


def remote_reference(search: dict[str, Any]) -> tuple[str, float | None]:
    """The search's reference baseline and its validation loss, from the search document."""
    name = search["reference_baseline"]
    return name, search["progress"]["baselines"].get(name)


def leaderboard_cmd(
    search_id: SearchIdArgument,
    sort: Annotated[str, typer.Option(help="val_loss, step_time_s, params_activated, mfu, tokens_per_s, ...")] = (
        "val_loss"
    ),
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows to show.")] = LEADERBOARD_ROWS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials as JSON lines.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The ranked trials of a search (from a database, or a service with --server): completed by validation
    loss, then pruned and failed ones."""
    from brainsearch.storage import TRIAL_SORT_KEYS

    if sort not in TRIAL_SORT_KEYS:
        raise fail([Problem("--sort", f"must be one of {', '.join(TRIAL_SORT_KEYS)}, got {sort!r}")])
    source = open_source(db, server, token)
    document = source.search(search_id)
    page = source.leaderboard(search_id, sort, limit)
    if as_json:
        for row in page["items"]:
            sys.stdout.write(json.dumps(row) + "\n")
        return
    print_leaderboard(
        page["items"], search_id, page["total"], remote_reference(document), sort, noise=document["noise"]
    )
    print_verdict(document["verdict"])


def _ladder_document(ladder: str, params: dict[str, Any]) -> dict[str, Any]:
    """A ``search.scale_up`` document from ``--ladder`` (``preset[:tokens],...``) and --target / --law / --scale-by."""
    rungs: list[dict[str, Any]] = []
    for item in ladder.split(","):
        preset_name, _, tokens = item.strip().partition(":")
        rungs.append({"preset": preset_name, **({"budget_tokens": tokens} if tokens else {})})
    return {"ladder": rungs, **params}


def scale_up_cmd(
    search_id: SearchIdArgument,
    target: Annotated[str | None, typer.Option(help="Scale preset to predict at (default: the search's).")] = None,
    law: Annotated[str | None, typer.Option(help="kaplan | chinchilla (default: the search's).")] = None,
    scale_by: Annotated[str | None, typer.Option(help="params_activated | compute (default: the search's).")] = None,
    ladder: Annotated[
        str | None,
        typer.Option(
            help="Run the stage first, for a finished search: a ladder such as cpu-tiny,cpu-small:100K "
            "(preset[:token budget], comma-separated); trials are kept, recorded runs not trained again"
        ),
    ] = None,
    top_k: Annotated[int | None, typer.Option(min=0, max=100, help="With --ladder: candidates to scale up.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The scale-up stage of a search: candidates per rung with their speed-up over the baseline, how each run went
    (devices, recipe, memory per device, throughput, MFU, checkpoints and resumes, scratch or upcycled), proxy
    fidelity (Kendall tau) and the scaling-law prediction of each at the target scale. With --ladder, run the stage
    first (in the foreground on --db, or queued on --server and followed)."""
    if law not in (None, "kaplan", "chinchilla"):
        raise fail([Problem("--law", f"must be kaplan or chinchilla, got {law!r}")])
    if scale_by not in (None, "params_activated", "compute"):
        raise fail([Problem("--scale-by", f"must be params_activated or compute, got {scale_by!r}")])
    if top_k is not None and ladder is None:
        raise fail([Problem("--top-k", "only with --ladder (the stage it runs)")])
    params = {k: v for k, v in {"target": target, "law": law, "scale_by": scale_by}.items() if v is not None}
    source = open_source(db, server, token)
    if ladder is not None:
        source.run_scale_up(search_id, _ladder_document(ladder, params), top_k)
    report = source.scale_up(search_id, **params)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    print_scale_up(report)


def delete_cmd(
    search_id: SearchIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a finished search: its trials, curves, scale-up candidates, Optuna study and kept files (weights,
    exports). A queued or running search must be cancelled first."""
    if not yes:
        if not sys.stdin.isatty():
            raise fail([Problem("--yes", "deleting a search needs --yes when not run from a terminal")])
        typer.confirm(f"delete search {search_id} with its trials and files?", abort=True)
    open_source(db, server, token).delete(search_id)
    err.print(f"search {search_id} deleted")
