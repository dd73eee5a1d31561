"""One trial as a worker runs it: train the job's architecture with the search's pruning rules and write the outcome
to the database itself.

The worker (a local process or a Ray actor) is the one that records the result, so a driver that dies mid-trial
loses nothing already finished; the driver only tells the sampler. Pruning rules applied while the model trains:

- the step-time constraint: after a few timed steps, a candidate slower than ``max_step_time_ratio`` times the
  reference baseline's step time (measured on the same hardware in the same search) is pruned;
- the paper's early stopping (pruner ``baseline``): when a quarter of the budget is spent, a candidate whose training
  loss (averaged over 20-25% of the budget) is worse than the baseline's over the same part of its budget is pruned;
- Optuna's pruners (``median``, ``successive_halving``): the validation loss at each evaluation is reported to the
  trial's Optuna study, whose pruner decides.
"""

from __future__ import annotations

import functools
import math
import statistics
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import optuna
from pydantic import BaseModel, ConfigDict

from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture
from brainsearch.space.schema import Budget
from brainsearch.storage import MetricPoint, Repository
from brainsearch.storage.domain import TrialState
from brainsearch.storage.repository import RETRY_SECONDS, retrying
from brainsearch.train.result import CurvePoint, ProxyResult
from brainsearch.train.settings import TrainSettings

if TYPE_CHECKING:
    from brainsearch.data import Corpus
    from brainsearch.model import LanguageModel

__all__ = [
    "QUARTER",
    "BaselineRef",
    "PruningJudge",
    "TrialJob",
    "TrialOutcome",
    "budget_fraction",
    "cached_corpus",
    "crash_reason",
    "make_pruner",
    "optuna_storage",
    "run_trial",
]

PrunerName = Literal["none", "baseline", "median", "successive_halving"]
# The paper's early-stopping point, and the window of the budget whose losses are compared there.
QUARTER = 0.25
_WINDOW = (0.20, QUARTER)
# Timed steps (after the trainer's warm-up) measured before the step-time constraint is checked.
STEP_TIME_PROBE_STEPS = 5


class BaselineRef(BaseModel):
    """What a candidate is compared with: the reference baseline's step time and its training-loss curve, as
    (fraction of the budget spent, training loss) points."""

    model_config = ConfigDict(frozen=True)
    name: str
    step_time_s: float | None
    curve: list[tuple[float, float]]


class TrialJob(BaseModel):
    """Everything a worker needs to run one trial (picklable, JSON-able)."""

    model_config = ConfigDict(frozen=True)
    search_id: int
    trial_id: int
    number: int
    database_url: str
    arch: dict[str, object]
    settings: TrainSettings
    baseline_name: str | None = None  # set when this trial *is* a baseline
    study_name: str | None = None
    optuna_trial_id: int | None = None
    pruner: PrunerName = "none"
    reference: BaselineRef | None = None
    max_step_time_ratio: float | None = None
    weights_path: str | None = None  # where a completed trial's trained weights go (None: not kept)
    weights_metadata: dict[str, str] = {}  # provenance written into the weights file (database, search, trial)


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


def budget_fraction(budget: Budget, point: CurvePoint, flops_per_token: int) -> float:
    """How much of ``budget`` a run had spent at ``point``."""
    if budget.tokens is not None:
        return point.tokens / budget.tokens
    if budget.flops is not None:
        return point.tokens * flops_per_token / budget.flops
    assert budget.seconds is not None
    return point.elapsed_s / budget.seconds


def make_pruner(name: PrunerName) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a ``search.pruner`` name (``none`` and ``baseline`` use no Optuna pruner)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


class _RetryingStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose calls wait out a briefly unreachable database, like the repository's do: its
    public methods and the private ones Optuna's cache layer calls (``study.ask`` goes through
    ``_create_new_trial``, ``suggest_*`` through ``_set_trial_param``). Only the outermost call of a thread retries,
    so nested calls do not multiply the wait."""


_RETRYING = threading.local()
# What Optuna's _CachedStorage calls on the storage it wraps, besides the public API.
_CACHE_LAYER_CALLS = (
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "_get_trials",
    "_set_trial_param",
)


def _retried(name: str) -> Callable[..., object]:
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self: _RetryingStorage, *args: object, **kwargs: object) -> object:
        if getattr(_RETRYING, "active", False):
            return method(self, *args, **kwargs)
        _RETRYING.active = True
        try:
            return retrying(lambda: method(self, *args, **kwargs), RETRY_SECONDS, f"optuna {name}")
        finally:
            _RETRYING.active = False

    return call


for _name in [*(n for n in vars(optuna.storages.BaseStorage) if not n.startswith("_")), *_CACHE_LAYER_CALLS]:
    if callable(getattr(optuna.storages.RDBStorage, _name, None)):
        setattr(_RetryingStorage, _name, _retried(_name))


@functools.cache
def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on brainsearch's database (one per process); SQLite waits for locks like ours do.
    Optuna creates its tables on first use: under the schema lock, so workers starting together do not race."""
    from brainsearch.storage import make_engine, schema_lock

    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    engine = make_engine(url)
    try:
        with schema_lock(engine):
            return _RetryingStorage(url, engine_kwargs=kwargs)
    finally:
        engine.dispose()


def _window_mean(curve: list[tuple[float, float]], low: float, high: float) -> float | None:
    inside = [loss for frac, loss in curve if low <= frac <= high]
    if inside:
        return statistics.fmean(inside)
    before = [(f, loss) for f, loss in curve if f <= high]
    after = [(f, loss) for f, loss in curve if f >= high]
    if not before or not after:
        return None
    (f0, l0), (f1, l1) = before[-1], after[0]
    return l0 if f1 == f0 else l0 + (l1 - l0) * (high - f0) / (f1 - f0)


class PruningJudge:
    """The report callback: decides, point by point, whether the trial goes on."""

    def __init__(self, job: TrialJob, flops_per_token: int) -> None:
        self.job, self.flops_per_token = job, flops_per_token
        self.points: list[tuple[float, float]] = []
        self.durations: list[float] = []
        self._last_elapsed = 0.0
        self._speed_checked = job.reference is None or job.max_step_time_ratio is None
        self._quarter_checked = job.pruner != "baseline" or job.reference is None
        self._trial: optuna.Trial | None = None
        if job.pruner in ("median", "successive_halving") and job.study_name and job.optuna_trial_id is not None:
            study = optuna.load_study(
                study_name=job.study_name, storage=optuna_storage(job.database_url), pruner=make_pruner(job.pruner)
            )
            if len(study.directions) == 1:  # Optuna's pruners judge single-objective studies only
                self._trial = optuna.Trial(study, job.optuna_trial_id)

    def __call__(self, point: CurvePoint) -> str | None:
        fraction = budget_fraction(self.job.settings.budget, point, self.flops_per_token)
        self.points.append((fraction, point.train_loss))
        if point.val_loss is None:  # evaluation steps are slower: keep them out of the step-time probe
            self.durations.append(point.elapsed_s - self._last_elapsed)
        self._last_elapsed = point.elapsed_s
        return self._speed() or self._quarter(fraction) or self._optuna(point)

    def _speed(self) -> str | None:
        warmup = self.job.settings.timing_warmup_steps
        if self._speed_checked or len(self.durations) < warmup + STEP_TIME_PROBE_STEPS:
            return None
        self._speed_checked = True
        ref, limit = self.job.reference, self.job.max_step_time_ratio
        assert ref is not None and limit is not None
        if not ref.step_time_s:
            return None
        measured = statistics.median(self.durations[warmup:])
        ratio = measured / ref.step_time_s
        if ratio <= limit:
            return None
        return (
            f"step time {measured * 1e3:.1f} ms is {ratio:.2f}x the {ref.name} baseline's "
            f"{ref.step_time_s * 1e3:.1f} ms (max_step_time_ratio {limit:g})"
        )

    def _quarter(self, fraction: float) -> str | None:
        if self._quarter_checked or fraction < QUARTER:
            return None
        self._quarter_checked = True
        assert self.job.reference is not None
        mine = _window_mean(self.points, *_WINDOW)
        theirs = _window_mean(self.job.reference.curve, *_WINDOW)
        if mine is None or theirs is None or mine <= theirs:
            return None
        return (
            f"training loss {mine:.4f} at a quarter of the budget is worse than the {self.job.reference.name} "
            f"baseline's {theirs:.4f} at the same point (early stopping at 1/4 of the budget)"
        )

    def _optuna(self, point: CurvePoint) -> str | None:
        if self._trial is None or point.val_loss is None or not math.isfinite(point.val_loss):
            return None
        self._trial.report(point.val_loss, point.step)
        if self._trial.should_prune():
            return f"{self.job.pruner} pruner stopped it at step {point.step} (validation loss {point.val_loss:.4f})"
        return None


@functools.cache
def cached_corpus(data: str, vocab_size: int) -> Corpus:
    """The corpus, loaded once per worker process."""
    from brainsearch.data import load_corpus

    return load_corpus(data, vocab_size)


def _keeper(job: TrialJob, arch: Architecture, saved: dict[str, str]) -> Callable[[LanguageModel], None] | None:
    """The trainer's ``on_completed``: write the trained weights where the job says. A failed write (a full disk, a
    folder this node cannot reach) does not fail the trial: the error is kept in its metrics instead."""
    if job.weights_path is None:
        return None
    path = Path(job.weights_path)

    def keep(model: LanguageModel) -> None:
        from brainsearch.export.weights import save_weights

        meta = {"search_id": str(job.search_id), "trial_id": str(job.trial_id), **job.weights_metadata}
        meta["data"] = job.settings.data
        try:
            save_weights(model.state_dict(), arch, path, meta)
        except OSError as exc:
            saved["weights_error"] = f"{path}: {exc.strerror or exc}"

    return keep


def _record(repo: Repository, job: TrialJob, result: ProxyResult, extra: dict[str, str] | None = None) -> TrialOutcome:
    metrics = {**result.model_dump(exclude={"curve"}, mode="json"), **(extra or {})}
    curve = [MetricPoint(p.step, p.tokens, p.elapsed_s, p.train_loss, p.val_loss, p.lr) for p in result.curve]
    outcome = TrialOutcome.of(job.trial_id, result)
    repo.finish_trial(
        job.trial_id,
        state=result.status,
        reason=result.reason,
        metrics=metrics,
        val_loss=outcome.val_loss,
        step_time_s=result.step_time_s,
        curve=curve,
    )
    return outcome


def crash_reason(exc: BaseException) -> str:
    """An unexpected exception as a one-line reason: its type, message and where it was raised."""
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}" if last else ""
    return f"{exc.__class__.__name__}: {str(exc)[:300]}{where}"


def run_trial(job: TrialJob, repo: Repository) -> TrialOutcome:
    """Train the job's architecture under its pruning rules and record the outcome (never raises for a failed run:
    an unexpected error is recorded as ``crashed`` with the exception as the reason)."""
    try:
        arch = Architecture.from_json(job.arch)
        corpus = cached_corpus(job.settings.data, arch.vocab_size)
        judge = PruningJudge(job, flops_per_token=cost(arch, batch_size=job.settings.batch_size).flops_per_token)
        from brainsearch.train.proxy import train  # torch: only in the processes that train

        saved: dict[str, str] = {}
        result = train(arch, job.settings, report=judge, corpus=corpus, on_completed=_keeper(job, arch, saved))
        return _record(repo, job, result, saved)
    except Exception as exc:  # a bug in one trial must not take the worker down
        reason = crash_reason(exc)
        repo.finish_trial(job.trial_id, state="crashed", reason=reason)
        return TrialOutcome(trial_id=job.trial_id, state="crashed", reason=reason)
