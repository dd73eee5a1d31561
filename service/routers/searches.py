"""Searches: submit (queued for a worker), list, read, cancel, delete; a search's leaderboard, one trial picked by
number or rank, Pareto fronts, scale-up stage (run it for a finished search, read its report) and candidates."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status

from brainsearch.errors import ArchitectureError, ConflictError, InputError, Problem, SpaceError, TrialNotFound
from brainsearch.search import standings
from brainsearch.search.documents import leaderboard_page, scale_up_document, search_document, trial_row
from brainsearch.search.noise import NoiseView, timing_fields
from brainsearch.search.scaleup_report import ScaleUpReport, checkpoints_on_disk
from brainsearch.search.submission import (
    RunOptions,
    add_scale_up,
    create_search,
    delete_search,
    search_noise_view,
)
from brainsearch.settings import Settings
from brainsearch.space import bundled_space_names, load_space
from brainsearch.space.loader import parse_space, validate_document
from brainsearch.space.schema import SearchSpace
from brainsearch.storage import TRIAL_SORT_KEYS, Trial
from service.deps import (
    MAX_ID,
    FoundSearch,
    Limit,
    Offset,
    ReadAccess,
    Repo,
    SearchId,
    Store,
    WholeNumber,
    WriteAccess,
    search_or_404,
)
from service.schemas import CandidateOut, ErrorOut, Page, ScaleUpRequest, SearchCreate, SearchOut, TrialOut

router = APIRouter(prefix="/searches", tags=["searches"])

TrialStateName = Literal["running", "completed", "pruned", "diverged", "out_of_memory", "timed_out", "crashed"]


def space_of(given: str | dict[str, object], settings: Settings) -> SearchSpace:
    """The ``space`` field of a request: a bundled space's name, a space file's YAML text (problems with their
    lines) or an inline document (problems named ``space.<path>``), under the service's ceiling on a space's size."""
    if isinstance(given, str):
        if given in bundled_space_names():
            return load_space(given, max_params=settings.max_space_params)
        if "\n" in given or ":" in given:  # a name has neither: the text of a space file
            return parse_space(given, "space", max_params=settings.max_space_params)
        names = ", ".join(bundled_space_names())
        raise SpaceError([Problem("space", f"no bundled space {given!r} (bundled: {names}), nor a space file's text")])
    return validate_document(given, "space", max_params=settings.max_space_params)


# A space file's YAML is also taken as the body itself (service.app turns it into {"space": text}).
YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/yaml": {
                "schema": {"type": "string", "format": "binary", "description": "a space file, checked like one"}
            }
        }
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[WriteAccess],
    operation_id="create_search",
    openapi_extra=YAML_BODY,
)
def submit(
    body: SearchCreate,
    repo: Repo,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> SearchOut:
    """Validate the space (the CLI's messages, as ``detail``) and queue the search for a worker; ``Location``
    names the new search."""
    space = space_of(body.space, request.app.state.settings)
    overrides = body.model_dump(
        include={
            "trials",
            "sampler",
            "concurrency",
            "seed",
            "pruner",
            "top_k",
            "baseline_seeds",
            "top_k_seeds",
            "scale_up",
        },
        exclude_none=True,
    )
    options = RunOptions(executor=body.executor or request.app.state.settings.executor)
    request_hash = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    try:
        search, created = create_search(
            repo,
            space,
            name=body.name,
            overrides=overrides,
            options=options,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            problem_prefix=(),  # the request's own field names: trials, scale_up.ladder[0].preset, ...
        )
    except ConflictError as exc:
        raise InputError([Problem("idempotency-key", str(exc), "header")]) from None
    if not created:
        response.headers["Idempotent-Replay"] = "true"
    response.headers["Location"] = f"/api/v1/searches/{search.id}"
    return search_document(repo, search)


@router.get("", dependencies=[ReadAccess], operation_id="list_searches")
def list_searches(
    repo: Repo,
    status_: Annotated[
        Literal["queued", "running", "completed", "failed", "cancelled"] | None, Query(alias="status")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[SearchOut]:
    """Searches, newest first."""
    page = repo.list_searches(status=status_, limit=limit, offset=offset)
    return Page(items=[search_document(repo, s) for s in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/{search_id}", dependencies=[ReadAccess], operation_id="get_search")
def get_search(search: FoundSearch, repo: Repo) -> SearchOut:
    """One search and its progress."""
    return search_document(repo, search)


@router.post("/{search_id}/cancel", dependencies=[WriteAccess], operation_id="cancel_search")
def cancel(search: FoundSearch, repo: Repo) -> SearchOut:
    """Cancel a queued or running search (its worker stops the running trials at its next heartbeat)."""
    try:
        return search_document(repo, repo.cancel_search(search.id))
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.delete(
    "/{search_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WriteAccess],
    responses={409: {"model": ErrorOut, "description": "the search is queued or running: cancel it first"}},
    operation_id="delete_search",
)
def delete(search: FoundSearch, repo: Repo, store: Store) -> Response:
    """Delete a finished (completed, failed or cancelled) search: its trials, curves, candidates, Optuna study and
    files (kept weights, exports). Cancel a queued or running search first."""
    try:
        delete_search(repo, search.id, store)
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{search_id}/scale-up",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[WriteAccess],
    responses={409: {"model": ErrorOut, "description": "the search is queued or running"}},
    operation_id="start_scale_up",
)
def run_scale_up(search_id: SearchId, body: ScaleUpRequest, repo: Repo, response: Response) -> SearchOut:
    """Run the scale-up stage for a finished search: its settings gain ``scale_up`` (and ``top_k``), and it is
    queued again; a worker trains the candidates (the trials are kept, nothing is trained twice). Follow it with
    ``GET /searches/{id}``, read the result at ``GET /searches/{id}/scale-up``."""
    search = search_or_404(repo, search_id)  # after the body's checks: bad input is a 422 first
    try:
        queued = add_scale_up(repo, search, body.scale_up, top_k=body.top_k, prefix=())
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    response.headers["Location"] = f"/api/v1/searches/{search.id}"
    return search_document(repo, queued)


@router.get("/{search_id}/trials", dependencies=[ReadAccess], operation_id="list_trials")
def leaderboard(
    search_id: SearchId,
    repo: Repo,
    sort: Annotated[str, Query(description="a column or a trainer metric: " + ", ".join(TRIAL_SORT_KEYS))] = (
        "val_loss"
    ),
    order: Literal["asc", "desc"] = "asc",
    state: TrialStateName | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TrialOut]:
    """The leaderboard: completed trials by ``sort``, then pruned, failed and running ones."""
    search = search_or_404(repo, search_id)  # after the query's checks: bad input is a 422 first
    if sort not in TRIAL_SORT_KEYS:
        raise InputError([Problem("sort", f"must be one of {', '.join(TRIAL_SORT_KEYS)}, got {sort!r}", "query")])
    page = leaderboard_page(repo, search, sort=sort, order=order, state=state, limit=limit, offset=offset)
    return Page(items=page.items, total=page.total, limit=limit, offset=offset)


@router.get(
    "/{search_id}/trial",
    dependencies=[ReadAccess],
    operation_id="pick_trial",
    responses={
        404: {
            "model": ErrorOut,
            "description": "no such search, or no trial matches: the message says what was asked and how many "
            "completed trials the search has",
        }
    },
)
def pick_trial(
    search_id: SearchId,
    repo: Repo,
    number: Annotated[
        int | None,
        WholeNumber,
        Query(ge=0, le=MAX_ID, description="the trial's number in the search (the leaderboard's #)"),
    ] = None,
    rank: Annotated[
        int | None,
        WholeNumber,
        Query(
            ge=1,
            le=MAX_ID,
            description="the N-th best completed trial (baselines unranked): by the mean over held-out seeds where "
            "it has several, else by its validation loss",
        ),
    ] = None,
) -> TrialOut:
    """One trial of a search, picked by its ``number`` or by its ``rank`` on the leaderboard (exactly one of them):
    the leaderboard row of what ``brainsearch export --number N / --rank N`` exports, without paging through the
    leaderboard. Neither or both selectors is a 422."""
    search = search_or_404(repo, search_id)  # after the query's checks: bad input is a 422 first
    if (number is None) == (rank is None):
        raise InputError([Problem("", "give exactly one of number and rank", "query")])
    try:
        view = search_noise_view(repo, search)
        return trial_row(standings.pick_trial(repo, search.id, view.ranking, number=number, rank=rank), view)
    except TrialNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


ParetoAxis = Literal["compute_ratio", "params_activated", "step_time_ratio"]
PARETO_AXES: tuple[ParetoAxis, ...] = ("compute_ratio", "params_activated", "step_time_ratio")


def pareto_x(trial: Trial, axis: ParetoAxis, view: NoiseView) -> float | None:
    """A trial's x on a Pareto chart: its training compute over the reference baseline's, its activated
    parameters, or its step time over the baseline's from a timing probe (both models timed back to back, so load
    cannot fake it; a raw step time measured in the trial's own run is not a property of the block and is never
    used). The reference baseline sits at 1 on both ratios."""
    if axis == "params_activated":
        return float(trial.params_activated)
    if axis == "compute_ratio":
        return view.ratios(trial)[0]
    if trial.is_baseline and trial.baseline_name == view.noise.baseline:
        return 1.0
    ratio = timing_fields(trial.metrics).get("step_time_ratio")
    return float(ratio) if ratio else None


def pareto_front(trials: list[Trial], axis: ParetoAxis, view: NoiseView) -> list[Trial]:
    """The completed trials no other beats on both validation loss and ``axis`` (both minimised), by ``axis``."""
    placed = ((pareto_x(t, axis, view), t) for t in trials if t.state == "completed" and t.val_loss is not None)
    done = [(x, t) for x, t in placed if x is not None]
    done.sort(key=lambda p: (p[0], p[1].val_loss))
    front: list[Trial] = []
    for _, t in done:
        if not front or t.val_loss < front[-1].val_loss:  # type: ignore[operator]
            front.append(t)
    return front


@router.get("/{search_id}/pareto", dependencies=[ReadAccess], operation_id="get_pareto")
def pareto(search: FoundSearch, repo: Repo) -> dict[str, list[TrialOut]]:
    """Pareto fronts of validation loss against training compute (over the reference baseline's), against
    activated parameters, and against step time over the baseline's from timing probes (empty without probes: a
    wall-clock step time of a run is not a property of its block)."""
    trials = repo.list_trials(search.id, state="completed", limit=100_000).items
    noise = search_noise_view(repo, search)
    return {axis: [trial_row(t, noise) for t in pareto_front(trials, axis, noise)] for axis in PARETO_AXES}


@router.get("/{search_id}/scale-up", dependencies=[ReadAccess], operation_id="get_scale_up")
def scale_up(
    search_id: SearchId,
    repo: Repo,
    store: Store,
    target: Annotated[str | None, Query(max_length=32, description="scale preset to predict at")] = None,
    law: Literal["kaplan", "chinchilla"] | None = None,
    scale_by: Literal["params_activated", "compute"] | None = None,
) -> ScaleUpReport:
    """The scale-up stage: each candidate across the ladder (loss, steps/s and convergence speed-up over the
    baseline; devices, recipe, memory per device, throughput and MFU, checkpoints saved, resumes and those on disk,
    scratch or upcycled), proxy fidelity (Kendall tau per rung) and scaling-law predictions at ``target``."""
    search = search_or_404(repo, search_id)  # after the query's checks: bad input is a 422 first
    try:
        return scale_up_document(repo, search, store, target=target, law=law, scale_by=scale_by)
    except ArchitectureError as exc:
        raise InputError([Problem("target", p.message, "query") for p in exc.problems]) from None


@router.get("/{search_id}/candidates", dependencies=[ReadAccess], operation_id="list_candidates")
def candidates(search: FoundSearch, repo: Repo, store: Store) -> Page[CandidateOut]:
    """The scale-up candidates (empty until the scale-up stage has run): each run's metrics, its counts of
    checkpoints saved and resumes, and ``checkpoints``, the complete ones on disk now (step, saved_at as Unix time,
    bytes; the rows of one trial and rung, a crashed run and its retry, share one run folder)."""
    search_id = search.id
    items = [
        CandidateOut(
            id=c.id,
            trial_id=c.trial_id,
            rung=c.rung,
            state=c.state,
            reason=c.reason,
            val_loss=c.val_loss,
            arch_digest=c.arch_digest,
            metrics={k: v for k, v in c.metrics.items() if k != "val_curve"},
            val_curve=c.metrics.get("val_curve", []),
            checkpoint_count=c.metrics.get("checkpoint_count") or 0,
            resume_count=c.metrics.get("resume_count") or 0,
            checkpoints=checkpoints_on_disk(store, search_id, c.trial_id, c.rung),
        )
        for c in repo.list_candidates(search_id)
    ]
    return Page(items=items, total=len(items), limit=len(items), offset=0)
