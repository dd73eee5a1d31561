"""The pruning rules: the step-time constraint, judged once before a trial trains, and the judge the trainer calls
back point by point while it trains.

Before training (:func:`speed_verdict`, applied by :mod:`brainsearch.search.runner`):

- the step-time constraint (``constraints.max_step_time_ratio``): a timing probe
  (:mod:`brainsearch.train.timing`) times the candidate and the reference baseline's architecture back to back in
  the trial's own process, right before the decision; a candidate whose step time is more than the limit times the
  baseline's is pruned without training. A probe whose ratio is uncertain (its spread over rounds exceeds the bound:
  the machine's load changed while it ran) prunes nothing: the trial trains and its metrics say why it was not
  judged. The step time the baseline's own run recorded, in another process at another time, is never compared with:
  load during either run would fake the ratio. A reference without an architecture (a driver that does
  not send one) leaves the constraint unchecked, with a note in the trial's metrics.

While training (:class:`PruningJudge`, the trainer's report callback):

- the paper's early stopping (pruner ``baseline``): when a quarter of the budget is spent, a candidate whose training
  loss (averaged over 20-25% of the budget) is worse than the baseline's over the same part of its budget is pruned;
- Optuna's pruners (``median``, ``successive_halving``): the validation loss at each evaluation is reported to the
  trial's Optuna study, whose pruner decides.
"""

from __future__ import annotations

import math
import statistics

import optuna

from brainsearch.search.jobs import PrunerName, TrialJob
from brainsearch.search.study import running_trial
from brainsearch.space.schema import Budget
from brainsearch.storage.optuna_storage import optuna_storage
from brainsearch.train.result import CurvePoint
from brainsearch.train.timing import TimingProbe

__all__ = ["QUARTER", "PruningJudge", "budget_fraction", "make_pruner", "speed_verdict"]

# The paper's early-stopping point, and the window of the budget whose losses are compared there.
QUARTER = 0.25
_WINDOW = (0.20, QUARTER)


def budget_fraction(budget: Budget, point: CurvePoint, flops_per_token: int) -> float:
    """How much of ``budget`` a run had spent at ``point``."""
    if budget.tokens is not None:
        return point.tokens / budget.tokens
    if budget.flops is not None:
        return point.tokens * flops_per_token / budget.flops
    assert budget.seconds is not None
    return point.elapsed_s / budget.seconds


def speed_verdict(probe: TimingProbe, limit: float) -> str | None:
    """The step-time constraint's verdict on a timing probe: why the candidate is pruned (its step time more than
    ``limit`` times the baseline's, measured with a spread within the probe's bound), or None (fast enough, or the
    probe uncertain: a ratio the machine's load may have made is no ground to prune)."""
    if probe.uncertain or probe.ratio <= limit:
        return None
    return f"{probe.describe()}; max_step_time_ratio {limit:g}"


def make_pruner(name: PrunerName) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a ``search.pruner`` name (``none`` and ``baseline`` use no Optuna pruner)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


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
    """The report callback: decides, point by point, whether the trial goes on (the quarter-budget rule, Optuna's
    pruners; the step-time constraint was judged before training, see :func:`speed_verdict`)."""

    def __init__(self, job: TrialJob, flops_per_token: int) -> None:
        self.job, self.flops_per_token = job, flops_per_token
        self.points: list[tuple[float, float]] = []
        self._quarter_checked = job.pruner != "baseline" or job.reference is None
        self._trial: optuna.Trial | None = None
        if job.pruner in ("median", "successive_halving") and job.study_name and job.optuna_number is not None:
            storage = optuna_storage(job.database_url)
            study = optuna.load_study(study_name=job.study_name, storage=storage, pruner=make_pruner(job.pruner))
            if len(study.directions) == 1:  # Optuna's pruners judge single-objective studies only
                self._trial = running_trial(study, storage, job.optuna_number)

    def __call__(self, point: CurvePoint) -> str | None:
        fraction = budget_fraction(self.job.settings.budget, point, self.flops_per_token)
        self.points.append((fraction, point.train_loss))
        return self._quarter(fraction) or self._optuna(point)

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
