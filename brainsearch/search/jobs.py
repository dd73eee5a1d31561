"""What the driver hands an executor and what comes back: jobs (a proxy trial, a scale-up candidate run), the
resources a job runs with, and its outcome.

Jobs are pydantic models (picklable for a local worker's pipe, JSON-able for a Ray worker or a queue) that carry
everything a worker needs: the database to record into, the architecture, the training settings and, for a trial,
its pruning rules. The worker records the result itself (:mod:`brainsearch.search.runner`), so a driver that dies
mid-run loses nothing already finished. This module imports neither torch nor Optuna.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from brainsearch.arch.plan import MemoryPlan
from brainsearch.storage.domain import TrialState
from brainsearch.train.settings import TrainSettings

if TYPE_CHECKING:
    from brainsearch.train.result import ProxyResult

__all__ = ["BaselineRef", "CandidateJob", "Job", "PrunerName", "Resources", "TrialJob", "TrialOutcome"]

PrunerName = Literal["none", "baseline", "median", "successive_halving"]


class Resources(BaseModel):
    """What one run holds while it trains: torch threads (CPUs) and GPUs per worker, and how many workers it spans
    (a sharded scale-up run: one process per GPU, or per CPU share on the CPU)."""

    model_config = ConfigDict(frozen=True)
    cpus: int = Field(default=1, ge=1)
    gpus: float = Field(default=0.0, ge=0)
    workers: int = Field(default=1, ge=1)

    @classmethod
    def sharing(cls, concurrency: int, cpus: int | None = None, gpus: float = 0.0) -> Resources:
        """One of ``concurrency`` runs sharing this machine: ``cpus`` threads, by default the cores split evenly."""
        return cls(cpus=cpus or max(1, (os.cpu_count() or 1) // concurrency), gpus=gpus)


class BaselineRef(BaseModel):
    """What a candidate is compared with: the reference baseline's step time, its training-loss curve, as
    (fraction of the budget spent, training loss) points, and its architecture (Architecture JSON), which the
    step-time constraint times against the candidate's in the trial's own process (None: the constraint is not
    checked). ``step_time_s``, measured in the baseline's own run, is for display only: load during either run would
    fake a ratio to it."""

    model_config = ConfigDict(frozen=True)
    name: str
    step_time_s: float | None
    curve: list[tuple[float, float]]
    arch: dict[str, object] | None = None


class TrialJob(BaseModel):
    """One proxy trial (or baseline) to train and record."""

    model_config = ConfigDict(frozen=True)
    search_id: int
    trial_id: int
    number: int
    database_url: str
    arch: dict[str, object]
    settings: TrainSettings
    resources: Resources = Resources()
    baseline_name: str | None = None  # set when this trial *is* a baseline
    study_name: str | None = None
    optuna_number: int | None = None  # the Optuna trial (its number in ``study_name``) Optuna's pruners judge
    pruner: PrunerName = "none"
    reference: BaselineRef | None = None
    max_step_time_ratio: float | None = None
    weights_path: str | None = None  # where a completed trial's trained weights go (None: not kept)
    weights_metadata: dict[str, str] = {}  # provenance written into the weights file (database, search, trial)
    # A seed run: the trial's architecture trained again with ``settings.seed``, recorded in this seed-run row
    # (brainsearch.search.noise) instead of the trial; no pruning, no sampler, no weights.
    seed_run_id: int | None = None

    @property
    def label(self) -> str:
        """How notes name the run."""
        name = f"baseline {self.baseline_name}" if self.baseline_name else f"trial #{self.number}"
        return f"{name} (seed {self.settings.seed})" if self.seed_run_id is not None else name


class CandidateJob(BaseModel):
    """One scale-up candidate (a trial or the reference baseline, scaled) at one rung of the ladder: ``rung`` is
    the rung's label (its preset, ``+upcycle`` for the upcycled run of a ``both`` stage). A run over several
    devices (``resources.workers`` > 1) carries the memory plan every rank follows and is launched by ``launcher``
    (:mod:`brainsearch.train.launch`); ``init`` says whether it starts from scratch or upcycles its dense twin
    trained on ``dense_fraction`` of the budget. ``baseline_arch`` (the reference baseline ``baseline_name`` scaled to
    the same rung; set for a candidate that is not the baseline, on one device) is timed against the candidate after
    its run, back to back in the same process: the rung's steps/s ratio that load cannot fake. ``reuse_proxy``: the
    run is the trial's own proxy run (same architecture, budget, batch, seed and recipe), recorded without training
    again."""

    model_config = ConfigDict(frozen=True)
    search_id: int
    trial_id: int  # the proxy trial (or baseline) this candidate scales up
    rung: str
    database_url: str
    arch: dict[str, object]
    settings: TrainSettings
    resources: Resources = Resources()
    plan: MemoryPlan | None = None
    init: Literal["scratch", "upcycle"] = "scratch"
    dense_fraction: float = 0.5
    launcher: Literal["torchrun", "ray"] = "torchrun"
    baseline_arch: dict[str, object] | None = None
    baseline_name: str | None = None
    # The rung is the proxy's own scale and training: the trial's proxy run is recorded as this run instead of
    # training the same model on the same batches again (it would reproduce the proxy's losses exactly).
    reuse_proxy: bool = False

    @property
    def label(self) -> str:
        """How notes name the run."""
        return f"trial {self.trial_id} at {self.rung}"


Job = TrialJob | CandidateJob


class TrialOutcome(BaseModel):
    """What the worker recorded, returned to the driver (which tells the sampler)."""

    model_config = ConfigDict(frozen=True)
    trial_id: int
    state: TrialState
    reason: str | None = None
    val_loss: float | None = None
    step_time_s: float | None = None
    train_seconds: float = 0.0  # time inside the trainer (steps and periodic validation)
    steps_seconds: float = 0.0  # of which inside training steps

    @classmethod
    def of(cls, trial_id: int, result: ProxyResult) -> TrialOutcome:
        """The outcome of a finished run (its validation loss counts only when it completed)."""
        return cls(
            trial_id=trial_id,
            state=result.status,
            reason=result.reason,
            val_loss=result.val_loss if result.status == "completed" else None,
            step_time_s=result.step_time_s,
            train_seconds=result.elapsed_s,
            steps_seconds=result.steps_seconds,
        )
