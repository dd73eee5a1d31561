"""Plain domain objects the repository returns (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

__all__ = ["Candidate", "MetricPoint", "Page", "Search", "SearchStatus", "SeedRun", "Trial", "TrialState"]

SearchStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
# Trial states: a ProxyResult status, "running" while it trains, "crashed" when its process died.
TrialState = Literal["running", "completed", "pruned", "diverged", "out_of_memory", "timed_out", "crashed"]
T = TypeVar("T")


@dataclass(frozen=True)
class Search:
    """A search as stored."""

    id: int
    name: str
    space_name: str
    space: dict[str, Any]
    settings: dict[str, Any]
    status: SearchStatus
    trials_requested: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Trial:
    """A trial as stored: architecture, cost, outcome."""

    id: int
    search_id: int
    number: int
    state: TrialState
    reason: str | None
    is_baseline: bool
    baseline_name: str | None
    arch: dict[str, Any]
    arch_digest: str
    pattern: str
    params: dict[str, Any]
    cost: dict[str, Any]
    metrics: dict[str, Any]
    val_loss: float | None
    step_time_s: float | None
    params_activated: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class MetricPoint:
    """One learning-curve point of a trial."""

    step: int
    tokens: int
    elapsed_s: float
    train_loss: float
    val_loss: float | None
    lr: float


@dataclass(frozen=True)
class Candidate:
    """A scale-up candidate at one rung."""

    id: int
    search_id: int
    trial_id: int | None
    rung: str
    state: str
    reason: str | None
    arch: dict[str, Any]
    arch_digest: str
    metrics: dict[str, Any]
    val_loss: float | None
    created_at: datetime


@dataclass(frozen=True)
class SeedRun:
    """A trial's architecture trained again with another ``seed`` (its first seed is the trial itself)."""

    id: int
    search_id: int
    trial_id: int
    seed: int
    state: TrialState
    reason: str | None
    val_loss: float | None
    val_loss_stderr: float | None
    step_time_s: float | None
    metrics: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: ``items`` and the ``total`` across pages."""

    items: list[T]
    total: int
    limit: int
    offset: int
    extra: dict[str, Any] = field(default_factory=dict)
