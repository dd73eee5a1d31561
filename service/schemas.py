"""Request bodies and the envelope of the REST API (pages, errors); the documents it answers with (a search, its
progress, a leaderboard row, a trial) are built in :mod:`brainsearch.search.documents`, which the CLI reads too."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from brainsearch.search.documents import ProgressOut, SearchOut, TrialDetail, TrialOut

T = TypeVar("T")

__all__ = [
    "ERROR_RESPONSES",
    "ErrorOut",
    "Page",
    "ProblemOut",
    "ProblemsOut",
    "ProgressOut",
    "ScaleUpRequest",
    "SearchCreate",
    "SearchOut",
    "SpaceCheck",
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
        (401, "a valid bearer token is required (every non-GET route when a token is configured)"),
        (404, "no such search, trial or file"),
        (409, "the request conflicts with the state (cancelling a finished search)"),
        (413, "request body too large"),
        (422, "bad input: one entry per problem, {loc, msg, in, line?}"),
        (503, "the database is unavailable"),
    )
}
