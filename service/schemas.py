"""Request bodies and the envelope of the REST API (pages, errors); the documents it answers with (a search, its
progress, a leaderboard row, a trial) are built in :mod:`brainsearch.search.documents`, which the CLI reads too."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from brainsearch.search.documents import ProgressOut, SearchOut, TrialDetail, TrialOut
from brainsearch.search.scaleup_report import CheckpointOnDisk

T = TypeVar("T")

__all__ = [
    "ERROR_RESPONSES",
    "CandidateOut",
    "ErrorOut",
    "HealthOut",
    "Page",
    "ProblemOut",
    "ProblemsOut",
    "ProgressOut",
    "ScaleUpRequest",
    "SearchCreate",
    "SearchOut",
    "SpaceCheck",
    "SpaceOut",
    "SpaceValidation",
    "TrialDetail",
    "TrialOut",
]


class SearchCreate(BaseModel):
    """``POST /searches``: a bundled space's name or an inline space document, and overrides of its settings."""

    model_config = ConfigDict(extra="forbid")
    space: str | dict[str, Any] = Field(description="a bundled space name, or a whole space document")
    name: str | None = Field(default=None, min_length=1, max_length=128)
    # Strict: JSON's true is not 1, and 2.0 is not a count. Ranges are the space's own (search.* settings).
    trials: StrictInt | None = None
    sampler: str | None = None
    executor: Literal["local", "ray"] | None = None
    concurrency: StrictInt | None = None
    seed: StrictInt | None = None
    pruner: str | None = None
    top_k: StrictInt | None = None
    baseline_seeds: StrictInt | None = Field(default=None, description="seeds the reference baseline trains with")
    top_k_seeds: StrictInt | None = Field(default=None, description="seeds each of the best trials trains with")
    scale_up: dict[str, Any] | None = Field(
        default=None, description="the scale-up stage: {ladder: [preset | {preset, budget_tokens}], target, law}"
    )


class ScaleUpRequest(BaseModel):
    """``POST /searches/{id}/scale-up``: the stage to run for a finished search."""

    model_config = ConfigDict(extra="forbid")
    scale_up: dict[str, Any] = Field(
        description="{ladder: [preset | {preset, budget_tokens}], target?, law?, scale_by?}: as search.scale_up"
    )
    top_k: StrictInt | None = Field(default=None, description="candidates to scale up (default: the search's)")


class SpaceCheck(BaseModel):
    """``POST /spaces/validate``: a bundled space's name or a space document to check."""

    model_config = ConfigDict(extra="forbid")
    space: str | dict[str, Any] = Field(description="a bundled space name, or a whole space document")


class SpaceOut(BaseModel):
    """A bundled space: its name (what ``POST /searches`` takes as ``space``), what it is for, its default trials."""

    id: str
    name: str
    description: str
    trials: int


class SpaceValidation(BaseModel):
    """A space that passed validation: its name, the parameters a sampler draws, and how many distinct blocks it
    holds before constraints (None for a continuous space)."""

    valid: Literal[True]
    name: str
    dimensions: list[str]
    size: int | None


class HealthOut(BaseModel):
    """The service is up: its database's backend and schema revision, and the database's id (which names its files
    on disk)."""

    status: Literal["ok"]
    database: str
    schema_revision: str | None = Field(alias="schema")
    database_id: str

    model_config = ConfigDict(populate_by_name=True)


class CandidateOut(BaseModel):
    """A scale-up candidate run: the trial it scales up, its rung, how it went, its metrics (the learning curve
    apart), its checkpoints saved and resumes, and the complete checkpoints on disk now."""

    id: int
    trial_id: int
    rung: str
    state: str
    reason: str | None
    val_loss: float | None
    arch_digest: str
    metrics: dict[str, Any]
    val_curve: list[Any]
    checkpoint_count: int
    resume_count: int
    checkpoints: list[CheckpointOnDisk]


class Page(BaseModel, Generic[T]):
    """A page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ProblemOut(BaseModel):
    """One problem with a request: the part it is in, the dotted path of the field inside that part (``""`` for the
    part as a whole), what is wrong, and the line where a YAML document had one."""

    model_config = ConfigDict(populate_by_name=True)
    loc: str = Field(description="dotted path inside the part, e.g. space.block.moe.experts or ladder[0]")
    msg: str
    in_: Literal["body", "query", "path", "header"] = Field(alias="in")
    line: int | None = None


class ProblemsOut(BaseModel):
    """Bad input (every 422): one entry per problem."""

    detail: list[ProblemOut]


class ErrorOut(BaseModel):
    """Any other error: a message."""

    detail: str


# The error responses every API route may give, documented once for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemsOut if code == 422 else ErrorOut, "description": text}
    for code, text in (
        (400, "the Host header is not one this service answers (BRAINSEARCH_ALLOWED_HOSTS)"),
        (401, "a valid bearer token is required (every non-GET route when a token is configured)"),
        (404, "no such search, trial or file"),
        (409, "the request conflicts with the state (cancelling a finished search)"),
        (413, "request body too large"),
        (422, "bad input: one entry per problem, {loc, msg, in, line?}"),
        (503, "the database is unavailable"),
    )
}
