"""Request and response bodies of the REST API (separate from the storage's domain objects)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from brainsearch.search.noise import Interval, SearchNoise
from brainsearch.search.verdict import Verdict

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
    noise: SearchNoise = Field(
        description="the seed noise the search measured: the reference baseline's runs over its seeds and the seed "
        "standard deviation pooled over every architecture trained with several seeds"
    )
    verdict: Verdict = Field(
        description="what the search found, in one line (text) with the numbers behind it: the block that beats the "
        "reference baseline beyond noise at equal compute and held at the scale-up, or the baseline"
    )
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
    step_time_s: float | None = Field(
        description="wall-clock median step time of this run: the machine's load is in it (see step_time_ratio)"
    )
    params_activated: int
    micro_batch: int | None = Field(default=None, description="sequences per forward (the global batch in chunks)")
    activation_checkpointing: bool | None = Field(default=None, description="activations recomputed per block")
    rank: int | None = Field(
        default=None,
        description="its rank among the search's completed trials (1: the best; None for baselines and unfinished "
        "trials): by the mean over its held-out seeds where it was re-evaluated (those first), else by its validation "
        "loss, ties by number; what export --rank, GET /searches/{id}/trial?rank= and the dashboard count",
    )
    seeds: int = Field(default=0, description="completed runs of this architecture (its first seed and re-runs)")
    val_loss_mean: float | None = Field(default=None, description="validation loss averaged over those runs")
    val_loss_seed_sd: float | None = Field(default=None, description="their standard deviation (two runs or more)")
    val_loss_held_out: float | None = Field(
        default=None,
        description="the mean the row is ranked and compared on: over its seeds but the one it was selected on when "
        "it was re-evaluated (the winner's curse left out), else its one run",
    )
    vs_baseline: Interval | None = Field(
        default=None,
        description="held-out mean loss minus the reference baseline's, seed by seed, with its 95% interval from the "
        "measured seed noise, simultaneous over the search's comparisons (Bonferroni); beyond_noise: the whole "
        "interval is below zero",
    )
    compute_ratio: float | None = Field(
        default=None,
        description="training compute (FLOPs per token x tokens trained) over the reference baseline's",
    )
    flops_per_token_ratio: float | None = Field(
        default=None, description="training FLOPs per token over the reference baseline's (cost model)"
    )
    comparison: str | None = Field(
        default=None,
        description="the comparison in words: 'beyond noise' (a win at equal compute), 'beyond noise at 1.86x "
        "compute' (not a win), 'within noise', 'worse beyond noise' or 'seed noise not measured'",
    )
    beats_baseline: bool = Field(default=False, description="beyond noise at equal compute (within 1.05x)")
    step_time_ratio: float | None = Field(
        default=None, description="step time over the baseline's, from a timing probe of both back to back"
    )
    step_time_uncertain: bool | None = Field(
        default=None, description="the probe's rounds disagreed beyond its bound: the ratio is not a measurement"
    )
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
    seed_runs: list[dict[str, Any]] = Field(
        default_factory=list, description="the architecture trained again with other seeds: seed, state, val_loss"
    )
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
