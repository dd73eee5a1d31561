"""Request and response bodies of the REST API (separate from the storage's domain objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

__all__ = [
    "ERROR_RESPONSES",
    "ErrorOut",
    "Page",
    "ProblemOut",
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
    trials: int | None = None
    sampler: str | None = None
    executor: Literal["local", "ray"] | None = None
    concurrency: int | None = None
    seed: int | None = None
    pruner: str | None = None
    top_k: int | None = None
    scale_up: dict[str, Any] | None = Field(
        default=None, description="the scale-up stage: {ladder: [preset | {preset, budget_tokens}], target, law}"
    )


class SearchOut(BaseModel):
    """A search and its progress."""

    id: int
    name: str
    space_name: str
    status: str
    error: str | None
    trials_requested: int
    progress: dict[str, int]
    settings: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TrialOut(BaseModel):
    """A leaderboard row."""

    id: int
    search_id: int
    number: int
    state: str
    reason: str | None
    is_baseline: bool
    baseline_name: str | None
    pattern: str
    arch_digest: str
    val_loss: float | None
    step_time_s: float | None
    params_activated: int
    created_at: datetime
    finished_at: datetime | None


class TrialDetail(TrialOut):
    """A trial with its architecture, cost, metrics (incl. MoE statistics) and learning curve."""

    arch: dict[str, Any]
    params: dict[str, Any]
    cost: dict[str, Any]
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]


class SpaceCheck(BaseModel):
    """``POST /spaces/validate``: a space document to check."""

    model_config = ConfigDict(extra="forbid")
    space: dict[str, Any]


class Page(BaseModel, Generic[T]):
    """A page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ProblemOut(BaseModel):
    """One problem with a request: where (a dotted field path, or FastAPI's location list) and what."""

    model_config = ConfigDict(extra="allow")  # FastAPI's own validation errors add type, input, ctx
    loc: str | list[str | int]
    msg: str
    line: int | None = None


class ErrorOut(BaseModel):
    """An error: a message, or one entry per problem (bad input)."""

    detail: str | list[ProblemOut]


# The error responses every API route may give, documented once for the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (401, "a valid bearer token is required"),
        (404, "no such search, trial or file"),
        (409, "the request conflicts with the state (cancelling a finished search)"),
        (413, "request body too large"),
        (422, "bad input: one entry per problem"),
        (503, "the database is unavailable"),
    )
}
