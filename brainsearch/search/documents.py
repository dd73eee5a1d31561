"""The documents a user reads about a search, built once from the repository: the search with its progress,
measured noise and verdict, a leaderboard row, a trial in full, a page of the leaderboard and the scale-up report.

The REST API answers with them, the CLI's ``--db`` path prints the same JSON (so ``leaderboard --db`` and
``leaderboard --server`` show one table), and the dashboard reads its search facts (:func:`search_facts`) from here.
The models are pydantic, so the API's OpenAPI schema is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from brainsearch.search.noise import Interval, NoiseView, SearchNoise, timing_fields
from brainsearch.search.scaleup_report import ScaleUpReport
from brainsearch.search.submission import (
    Progress,
    reference_baseline,
    search_noise_view,
    search_scale_up_report,
    search_verdict_of,
    stored_space,
)
from brainsearch.search.verdict import Verdict
from brainsearch.space.schema import SearchSpace
from brainsearch.storage import Repository, Search, Trial
from brainsearch.storage.domain import TrialState
from brainsearch.store import RunStore

__all__ = [
    "LeaderboardPage",
    "ProgressOut",
    "SearchFacts",
    "SearchOut",
    "TrialDetail",
    "TrialOut",
    "leaderboard_page",
    "scale_up_document",
    "search_document",
    "search_facts",
    "trial_detail",
    "trial_row",
]


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


class LeaderboardPage(BaseModel):
    """A page of a search's leaderboard."""

    items: list[TrialOut]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class SearchFacts:
    """What every view of a search shows about it, computed once: its space (None where a stored document can no
    longer be read: a reader shows what it can), its progress, its reference baseline, its measured noise with the
    ranking, and its verdict."""

    search: Search
    space: SearchSpace | None
    progress: Progress
    reference: str
    view: NoiseView | None
    verdict: Verdict | None

    @property
    def reference_loss(self) -> float | None:
        """The reference baseline's validation loss (its newest completed run)."""
        return self.view.reference.val_loss if self.view is not None and self.view.reference is not None else None


def search_facts(repo: Repository, search: Search, space: SearchSpace | None) -> SearchFacts:
    """The facts of ``search`` whose stored space is ``space`` (None: it could not be read)."""
    view = search_noise_view(repo, search, space) if space is not None else None
    if space is not None:
        progress = Progress.of(repo, search)
    else:  # its stage is read from the space: the counts alone
        progress = Progress.from_counts(search.trials_requested, repo.count_trials(search.id, is_baseline=False))
    return SearchFacts(
        search=search,
        space=space,
        progress=progress,
        reference=reference_baseline(search),  # read from the stored document: known even where the space is not
        view=view,
        verdict=search_verdict_of(repo, search, space, view) if space is not None and view is not None else None,
    )


def search_document(repo: Repository, search: Search) -> SearchOut:
    """The search with its progress (baselines apart), its measured noise and its verdict."""
    facts = search_facts(repo, search, stored_space(search))
    assert facts.view is not None and facts.verdict is not None
    p = facts.progress
    stored = ("id", "name", "space_name", "status", "error", "trials_requested", "settings")
    times = ("created_at", "started_at", "finished_at")
    return SearchOut.model_validate(
        {
            **{name: getattr(search, name) for name in (*stored, *times)},
            "noise": facts.view.noise,
            "verdict": facts.verdict,
            "progress": ProgressOut.model_validate({**vars(p), "done": p.done}),
            "reference_baseline": facts.reference,
        }
    )


def trial_row(trial: Trial, view: NoiseView) -> TrialOut:
    """A trial as a leaderboard row: the stored trial, the memory plan its run used (micro-batch, checkpointing),
    its runs over seeds and interval against the reference baseline, its rank (:mod:`brainsearch.search.standings`)
    and its timing probe's step-time ratio."""
    return TrialOut.model_validate(
        {
            **vars(trial),
            **timing_fields(trial.metrics),
            **view.of(trial).model_dump(),
            "rank": view.rank(trial),
            **_memory_plan(trial.metrics),
        }
    )


def _memory_plan(metrics: dict[str, Any]) -> dict[str, Any]:
    """The memory-plan fields of a row, read from the trial's stored metrics (absent when it did not train)."""
    return {k: metrics.get(k) for k in ("micro_batch", "activation_checkpointing")}


def leaderboard_page(
    repo: Repository,
    search: Search,
    *,
    sort: str = "val_loss",
    order: Literal["asc", "desc"] = "asc",
    state: TrialState | None = None,
    limit: int = 50,
    offset: int = 0,
) -> LeaderboardPage:
    """A page of the leaderboard: completed trials by ``sort``, then pruned, failed and running ones."""
    page = repo.list_trials(search.id, sort=sort, order=order, state=state, limit=limit, offset=offset)
    view = search_noise_view(repo, search)
    return LeaderboardPage(items=[trial_row(t, view) for t in page.items], total=page.total, limit=limit, offset=offset)


def trial_detail(repo: Repository, trial: Trial) -> TrialDetail:
    """A trial in full: its row, architecture, cost, metrics, seed runs and learning curve."""
    search = repo.get_search(trial.search_id)
    row = (
        trial_row(trial, search_noise_view(repo, search)).model_dump()
        if search is not None
        else {**vars(trial), **_memory_plan(trial.metrics)}
    )
    runs = [
        {
            "seed": r.seed,
            "state": r.state,
            "reason": r.reason,
            "val_loss": r.val_loss,
            "val_loss_stderr": r.val_loss_stderr,
        }
        for r in repo.list_seed_runs(trial.search_id, [trial.id])
    ]
    curve = [vars(p) for p in repo.trial_curve(trial.id)]
    return TrialDetail.model_validate(
        {
            **row,
            "arch": trial.arch,
            "params": trial.params,
            "cost": trial.cost,
            "metrics": trial.metrics,
            "seed_runs": runs,
            "curve": curve,
        }
    )


def scale_up_document(repo: Repository, search: Search, store: RunStore | None, **params: Any) -> ScaleUpReport:
    """The scale-up report (``params``: target, law, scale_by), with the checkpoints on disk in ``store``."""
    return search_scale_up_report(repo, search, store=store, **params)
