"""Request and response bodies of the REST API (separate from the storage's domain objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

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
    scale_up: dict[str, Any] | None = Field(
        default=None, description="the scale-up stage: {ladder: [preset | {preset, budget_tokens}], target, law}"
    )


class ProgressOut(BaseModel):
    """Where a search stands. ``done`` of ``requested`` trials have settled (completed + pruned + failed, baselines
    apart; crashed ones are retried and do not count); ``stage`` is ``queued``, ``baselines``, ``trials``,
    ``scale-up i/n`` while it runs, then its final status."""

    stage: str
    requested: int
    done: int
    completed: int
    pruned: int
    failed: int
    crashed: int
    running: int
    baselines: dict[str, float | None] = Field(description="validation loss of each finished baseline")
    best_val_loss: float | None
    best_number: int | None


class ScaleUpRequest(BaseModel):
    """``POST /searches/{id}/scale-up``: the stage to run for a finished search."""

    model_config = ConfigDict(extra="forbid")
    scale_up: dict[str, Any] = Field(
        description="{ladder: [preset | {preset, budget_tokens}], target?, law?, scale_by?}: as search.scale_up"
    )
    top_k: StrictInt | None = Field(default=None, description="candidates to scale up (default: the search's)")


class SearchOut(BaseModel):
    """A search and its progress."""

    id: int
    name: str
    space_name: str
    status: str
    error: str | None
    trials_requested: int
    progress: ProgressOut
    reference_baseline: str = Field(description="the baseline trials are compared with (constraints.baseline)")
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
    micro_batch: int | None = Field(default=None, description="sequences per forward (the global batch in chunks)")
    activation_checkpointing: bool | None = Field(default=None, description="activations recomputed per block")
    created_at: datetime
    finished_at: datetime | None

    @staticmethod
    def memory_plan(metrics: dict[str, Any]) -> dict[str, Any]:
        """The memory-plan fields of a row, read from the trial's stored metrics (absent when it did not train)."""
        return {k: metrics.get(k) for k in ("micro_batch", "activation_checkpointing")}


class TrialDetail(TrialOut):
    """A trial with its architecture, cost, metrics (incl. MoE statistics) and learning curve."""

    arch: dict[str, Any]
    params: dict[str, Any]
    cost: dict[str, Any]
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]


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
